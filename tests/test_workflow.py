"""``headstart.fit`` from Python: the same bundle as the CLI's, complete enough for ``report`` and
``export``; ``TransferClassifier.prove``; the task / unlabeled contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import headstart
from conftest import make_texts
from headstart import ConfigError, TransferClassifier
from headstart.cli.app import run

QUICK = {"compare": False, "learning_curve": False}
VERDICTS = ("transfer helps", "no significant difference", "negative transfer")


def _cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "headstart.json").read_text())


def test_python_bundle_equals_the_cli_bundle(text_table: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "fit", text_table, "--backbone", "tiny-bert", "--out", tmp_path / "cli", "--seed", "3",
                        "--no-compare", "--no-learning-curve", "-q")
    assert code == 0, err
    result = headstart.fit(text_table, backbone="tiny-bert", out=tmp_path / "py", seed=3, **QUICK)
    cli, py = _manifest(tmp_path / "cli"), _manifest(tmp_path / "py")
    assert set(py) == set(cli) and set(py["report"]) == set(cli["report"])
    assert py["metrics"]["test"] == cli["metrics"]["test"] and py["data"] == cli["data"]
    assert py["loader"] == cli["loader"] and py["audit"] == cli["audit"]
    assert py["command"].startswith("headstart.fit(") and cli["command"].startswith("headstart fit")
    assert result.bundle == tmp_path / "py" and result.evidence == py["report"]
    assert result.to_dict()["metrics"] == result.model.metrics_ == py["metrics"]
    assert result.verdict is None and result.tracking is None  # no comparison asked; tracking off in tests


def test_in_memory_fit_is_proved_reported_and_export_asks_for_data(text_table: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    texts, labels = make_texts(20)
    bundle = tmp_path / "memory"
    result = headstart.fit(texts, labels, backbone="tiny-bert", out=bundle, learning_curve=False, scratch_budget=0)
    assert result.verdict["label"] in VERDICTS
    assert [r["kind"] for r in result.comparison] == ["transfer", "trivial", "classic", "random-features"]
    assert _manifest(bundle)["loader"]["path"] is None  # the items were not copied anywhere
    assert headstart.load(bundle).predict(["good great item"]).shape == (1,)

    code, out, err = _cli(capsys, "report", bundle, "--json")
    assert code == 0, err
    assert json.loads(out)["verdict"] == result.verdict and (bundle / "report.html").is_file()

    code, out, err = _cli(capsys, "export", bundle, "-q")
    message = " ".join(err.split())
    assert code == 1 and out == ""
    assert "fitted on data given in memory" in message and "--data DATA" in message, message
    code, _, err = _cli(capsys, "export", bundle, "--data", text_table, "-q")  # as the message says
    assert code == 0, err


def test_prove_on_held_out_items() -> None:
    texts, labels = make_texts(20)
    train = (texts[:14] + texts[20:34], labels[:14] + labels[20:34])
    X_test, y_test = texts[14:20] + texts[34:], labels[14:20] + labels[34:]
    clf = TransferClassifier(backbone="tiny-bert", random_state=0).fit(*train)

    evidence = clf.prove(X_test, y_test, train=train, learning_curve=False, scratch_budget=0)
    assert evidence["verdict"]["label"] in VERDICTS
    assert evidence["task"]["n_train"] == 28 and evidence["task"]["n_test"] == 12
    assert evidence["metrics"]["n"] == 12

    own = clf.prove(X_test, y_test, compare=False, learning_curve=False)
    assert own["verdict"] is None and own["metrics"] == evidence["metrics"]
    with pytest.raises(ConfigError, match=r"train=\(X_train, y_train\)"):
        clf.prove(X_test, y_test)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"task": "regression"}, "task='regression' is not supported; supported: classification"),
    ({"unlabeled": ["more text"]}, "unlabeled= is not supported yet"),
    ({"epochz": 3}, "unknown parameter(s) epochz"),
    ({"random_state": 1}, "pass seed=N"),
])
def test_the_contract_refuses_what_does_not_exist_yet(text_table: Path, tmp_path: Path, kwargs: dict,
                                                      message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        headstart.fit(text_table, out=tmp_path / "x", backbone="tiny-bert", **kwargs)
    assert not (tmp_path / "x").exists()


def test_in_memory_data_with_table_options_is_refused(tmp_path: Path) -> None:
    texts, labels = make_texts(5)
    with pytest.raises(ConfigError, match="group_col= name table columns"):
        headstart.fit(texts, labels, group_col="user", backbone="tiny-bert")
    with pytest.raises(ConfigError, match="need their labels"):
        headstart.fit(texts, backbone="tiny-bert")

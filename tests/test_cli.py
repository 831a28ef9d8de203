"""The command line, driven for real: output, JSON, exit codes (0 ok, 1 error, 2 usage)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_texts
from headstart import load
from headstart.cli.app import run

# The baselines and learning curve are tested on their own; most CLI tests skip them for speed.
QUICK = ("--no-compare", "--no-learning-curve")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    if args and args[0] == "fit" and "--compare" not in args:
        args = (*args, *QUICK)
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def text_bundle(text_table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "runs" / "texts"
    code, _, err = _run(capsys, "fit", text_table, "--backbone", "tiny-bert", "--out", out, "--quiet",
                        "--slice-col", "source")
    assert code == 0, err
    return out


def test_backbones_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "backbones")
    assert code == 0 and "minilm" in out and "efficientnet_lite0" in out and "tiny-bert" not in out
    code, out, _ = _run(capsys, "backbones", "--json", "--all")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["minilm"]["offline"] is True and rows["efficientnet_lite0"]["feature_dim"] == 1280
    assert "tiny-bert" in rows


def test_fit_text_table_prints_metrics_and_writes_a_bundle(text_table: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "bundle"
    code, out, err = _run(capsys, "fit", text_table, "--backbone", "tiny-bert", "--out", out_dir, "--seed", "3")
    assert code == 0, err
    assert "held-out test split" in out and "accuracy" in out and "confusion matrix" in out
    assert (out_dir / "headstart.json").is_file()
    manifest = json.loads((out_dir / "headstart.json").read_text())
    assert manifest["seed"] == 3 and manifest["command"].startswith("headstart fit")
    assert manifest["data"]["split_counts"] == {"train": 28, "val": 4, "test": 8}
    assert "features ·" in err  # progress went to stderr, not stdout
    assert "features ·" not in out
    assert manifest["report"]["verdict"] is None and not (out_dir / "report.html").exists()


def test_fit_proves_itself_writes_the_report_and_tracks_the_run(text_table: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEADSTART_NO_TRACK")
    out_dir = tmp_path / "proved"
    code, out, err = _run(capsys, "fit", text_table, "--backbone", "tiny-bert", "--out", out_dir, "--compare",
                          "--scratch-budget", "5", "--report", "--slice-col", "source")
    assert code == 0, err
    assert "transfer vs baselines" in out and "verdict:" in out and "tracked" in out
    evidence = json.loads((out_dir / "headstart.json").read_text())["report"]
    assert [r["kind"] for r in evidence["comparison"]] == ["transfer", "trivial", "classic", "random-features",
                                                           "scratch"]
    assert evidence["verdict"]["label"] in ("transfer helps", "no significant difference", "negative transfer")
    html = (out_dir / "report.html").read_text()
    assert 'id="verdict"' in html and 'id="learning-curve"' in html
    assert load(out_dir).predict(["spam spam"]).shape == (1,)  # the attachment does not disturb the bundle
    code, out, _ = _run(capsys, "runs", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 1 and rows[0]["strategy"] == "linear-probe"
    assert rows[0]["verdict"] == evidence["verdict"]["label"]
    (out_dir / "report.html").unlink()
    code, out, _ = _run(capsys, "report", out_dir, "--json")
    assert code == 0 and json.loads(out)["report_html"] == str(out_dir / "report.html")
    assert (out_dir / "report.html").read_text() == html  # the same evidence renders the same page


def test_fit_json_output(text_table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "fit", text_table, "--backbone", "tiny-bert", "--out", tmp_path / "b", "--json", "-q")
    assert code == 0
    result = json.loads(out)
    assert result["metrics"]["test"]["n"] == 8 and result["strategy"]["name"] == "linear-probe"


def test_fit_image_folder_and_predict_images(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "shapes-model"
    code, _, err = _run(capsys, "fit", image_folder, "--backbone", "tiny-cnn", "--out", bundle, "-q")
    assert code == 0, err
    code, out, _ = _run(capsys, "predict", bundle, image_folder / "disc", image_folder / "square" / "square_00.png",
                        "--json", "-q")
    assert code == 0
    preds = json.loads(out)["predictions"]
    assert len(preds) == 16
    assert all(set(p["probabilities"]) == {"disc", "square"} for p in preds)
    accuracy = sum(p["label"] == Path(p["item"]).parent.name for p in preds) / len(preds)
    assert accuracy >= 0.75


def test_predict_from_table_text_file_and_stdin(text_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["good great lovely item 3", "awful terrible bad item 5"]
    table = tmp_path / "new.jsonl"
    pd.DataFrame({"text": texts}).to_json(table, orient="records", lines=True)
    code, out, _ = _run(capsys, "predict", text_bundle, table, "--json", "-q")
    assert code == 0 and [p["label"] for p in json.loads(out)["predictions"]] == ["pos", "neg"]

    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(texts) + "\n\n")
    code, out, _ = _run(capsys, "predict", text_bundle, lines, "--json", "-q")
    assert code == 0 and len(json.loads(out)["predictions"]) == 2

    monkeypatch.setattr(sys, "stdin", io.StringIO("good nice fine\n"))
    code, out, _ = _run(capsys, "predict", text_bundle, "-q")
    assert code == 0 and "pos" in out


def test_evaluate_prints_every_metric(text_bundle: Path, text_table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "evaluate", text_bundle, text_table, "--json", "-q")
    assert code == 0
    metrics = json.loads(out)["metrics"]
    assert metrics["n"] == 40 and metrics["accuracy"] > 0.8
    assert len(metrics["per_class"]) == 2 and metrics["roc_auc"] is not None
    # The slice column given at fit is reported again, without being asked for.
    assert {r["value"] for r in metrics["slices"]["source"]} == {"a", "b"}
    assert sum(r["n"] for r in metrics["slices"]["source"]) == 40
    code, out, _ = _run(capsys, "evaluate", text_bundle, text_table, "-q")
    assert code == 0 and "balanced accuracy" in out and "per class" in out


def test_evaluate_unknown_label_is_an_error(text_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "other.csv"
    pd.DataFrame({"text": ["some words", "other words"], "label": ["pos", "neutral"]}).to_csv(table, index=False)
    code, _, err = _run(capsys, "evaluate", text_bundle, table, "-q")
    assert code == 1 and "neutral" in err and "trained on" in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--text-col", "body"], "no column 'body' (columns present: text, label, source)"),
        (["--label-col", "y"], "Pass --label-col NAME"),
        (["--backbone", "minlm"], "Did you mean 'minilm'"),
        (["--backbone", "tiny-cnn"], "takes image but the data is text"),
        (["--strategy", "linear"], "unknown strategy"),
    ],
)
def test_fit_errors_are_clear_with_exit_code_1(text_table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               args: list[str], message: str) -> None:
    code, out, err = _run(capsys, "fit", text_table, "--out", tmp_path / "x", "--backbone", "tiny-bert", *args, "-q")
    assert code == 1
    assert message in " ".join(err.split()), err
    assert out == "" and not (tmp_path / "x").exists()


def test_missing_data_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "fit", tmp_path / "nothing.csv", "-q")
    assert code == 1 and "does not exist" in err
    code, _, _ = _run(capsys, "fit")
    assert code == 2
    code, _, _ = _run(capsys, "fit", tmp_path, "--batch-size", "0")
    assert code == 2
    code, _, err = _run(capsys, "predict", tmp_path, "x")
    assert code == 1 and "not a headstart bundle" in err


def test_too_small_class_error_names_the_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts, labels = make_texts(5)
    table = tmp_path / "t.csv"
    pd.DataFrame({"text": [*texts, "lonely"], "label": [*labels, "rare"]}).to_csv(table, index=False)
    code, _, err = _run(capsys, "fit", table, "--backbone", "tiny-bert", "--out", tmp_path / "o", "-q")
    assert code == 1 and "'rare' (1)" in err


def test_cache_info_and_clear(text_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "cache", "info", "--json")
    assert code == 0
    rows = json.loads(out)["backbones"]
    assert rows and rows[0]["backbone"] == "tiny-bert" and rows[0]["items"] == 40
    code, out, _ = _run(capsys, "cache", "clear")
    assert code == 0 and "removed 1" in out
    code, out, _ = _run(capsys, "cache", "info", "--json")
    assert json.loads(out)["backbones"] == []


def test_the_installed_command_runs_as_a_process(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "headstart", "backbones", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and json.loads(done.stdout)
    failed = subprocess.run([sys.executable, "-m", "headstart", "predict", str(tmp_path), "x"],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "not a headstart bundle" in failed.stderr and failed.stdout == ""


def test_fit_with_a_fine_tuning_strategy_shows_epochs_and_writes_its_weights(
    text_table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "partial"
    code, stdout, err = _run(capsys, "fit", text_table, "--backbone", "tiny-bert", "--strategy", "partial",
                             "--epochs", "2", "--unfreeze", "1", "--lr", "0.01", "--out", out)
    assert code == 0, err
    assert "epoch 1/2" in err and "val loss" in err  # per-epoch progress on stderr
    assert "phase partial" in stdout
    manifest = json.loads((out / "headstart.json").read_text())
    # The 4 validation items cannot show a gain over the probe (issue 15): the probe is the result,
    # the bundle says why and holds no weights. Without validation the fine-tuned weights are written.
    assert manifest["strategy"]["leave_probe"]["left_probe"] is False
    assert manifest["backbone"]["weights_in_bundle"] is False
    assert manifest["strategy"]["params"]["unfreeze"] == 1 and manifest["strategy"]["params"]["epochs"] == 2
    assert not (out / "checkpoint").exists()  # the finished bundle replaced the run's checkpoint
    unvalidated = tmp_path / "unvalidated"
    code, _, err = _run(capsys, "fit", text_table, "--backbone", "tiny-bert", "--strategy", "partial",
                        "--epochs", "1", "--unfreeze", "1", "--lr", "0.01", "--val-fraction", "0",
                        "--set", "val_fraction=0", "--out", unvalidated)
    assert code == 0, err
    assert "no validation split" in err
    assert json.loads((unvalidated / "headstart.json").read_text())["backbone"]["weights_in_bundle"] is True


def test_resume_flags_are_checked(text_table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from headstart.training.checkpoint import save_checkpoint

    code, _, err = _run(capsys, "fit", text_table, "--backbone", "tiny-bert", "--resume", tmp_path / "none", "-q")
    assert code == 1 and "no interrupted fit" in err
    half = tmp_path / "half"
    save_checkpoint(half, model_state={}, best_state=None, optimizer_state={}, state={"phase": {}})
    code, _, err = _run(capsys, "fit", text_table, "--backbone", "tiny-bert", "--out", half, "-q")
    assert code == 1 and f"--resume {half}" in " ".join(err.split())
    code, _, _ = _run(capsys, "fit", text_table, "--resume", half, "--out", tmp_path / "elsewhere", "-q")
    assert code == 2


def test_auto_prints_its_decisions(text_table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "fit", text_table, "--backbone", "tiny-bert", "--strategy", "auto", "--budget", "0.01s",
                          "--out", tmp_path / "auto", "-q")
    assert code == 0, err
    assert "auto: chose linear-probe" in out and "estimated time exceeds the budget left" in out
    code, _, err = _run(capsys, "fit", text_table, "--backbone", "tiny-bert", "--strategy", "auto", "--budget", "soon",
                        "--out", tmp_path / "x", "-q")
    assert code == 1 and "'budget' setting of strategy 'auto'" in err and "Got 'soon'" in err

"""MLflow tracking: a fit's manifest becomes a run with the right params, metrics, tags and files.

No model is trained: a hand-built manifest and a two-file bundle folder stand in for a fit.
Creating a SQLite store runs MLflow's migrations (~3-5 s on 2 busy cores), so the module shares
one store.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from headstart.errors import ConfigError
from headstart.tracking import list_runs, resolve_tracking_uri, track_fit

COMMAND = "headstart fit texts.csv --out runs/texts " + "--slice source " * 1000  # > any tag limit


def fake_manifest(accuracy: float = 0.875) -> dict[str, Any]:
    return {
        "format": "headstart-bundle",
        "modality": "text",
        "backbone": {"name": "tiny-bert", "feature_dim": 32},
        "strategy": {
            "name": "linear-probe",
            "params": {"C": None, "Cs": [0.1, 1.0], "cv": 5, "class_weight": {"neg": 2.0}, "note": "x" * 2000},
        },
        "seed": 7,
        "metrics": {"test": {"n": 8, "accuracy": accuracy, "balanced_accuracy": 0.85, "macro_f1": 0.86,
                             "roc_auc": None, "log_loss": 0.31, "ece": 0.05, "per_class": []}},
        "data": {"fingerprint": "abc123", "split_counts": {"train": 28, "val": 4, "test": 8}},
        "fit": {"seed": 7, "versions": {"headstart": "0.1.0"}},
        "command": COMMAND,
        "report": {
            "task": {"modality": "text", "n_train": 28, "n_val": 4, "n_test": 8},
            "verdict": {"label": "transfer helps", "difference": 0.375, "ci": [0.125, 0.625]},
            "comparison": [
                {"name": "transfer", "kind": "transfer", "accuracy": accuracy},
                {"name": "majority class", "kind": "trivial", "accuracy": 0.5},
                {"name": "tf-idf + logistic regression", "kind": "classic", "accuracy": 0.75},
                {"name": "random init", "kind": "random-features", "accuracy": None},
            ],
            "reproduce": {"seed": 7, "data_fingerprint": "sha256:abc123", "versions": {"headstart": "0.1.0"}},
        },
    }


def make_bundle(root: Path) -> tuple[Path, Path]:
    bundle = root / "bundle"
    bundle.mkdir(parents=True)
    (bundle / "headstart.json").write_text(json.dumps({"format": "headstart-bundle"}))
    (bundle / "model.safetensors").write_bytes(bytes(range(64)))
    report = root / "report.html"
    report.write_text("<html>report</html>")
    return bundle, report


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One fit recorded in a new store, with whatever MLflow logged or warned meanwhile."""
    import mlflow  # noqa: F401 - first: importing it resets the handlers of its loggers

    root = tmp_path_factory.mktemp("tracked")
    bundle, report = make_bundle(root)
    uri = f"sqlite:///{root / 'store' / 'mlruns.db'}"
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.NOTSET)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic", "sqlalchemy")]
    for log in loggers:
        log.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            run_id = track_fit(fake_manifest(), bundle_dir=bundle, report_path=report, tracking_uri=uri)
    finally:
        for log in loggers:
            log.removeHandler(handler)
    noise = [r.getMessage() for r in records] + [str(w.message) for w in warned]
    return {"uri": uri, "run_id": run_id, "bundle": bundle, "root": root, "noise": noise}


def get_run(store: dict[str, Any]) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store["uri"]).get_run(store["run_id"])


def test_params_are_flattened_and_truncated(store: dict[str, Any]) -> None:
    params = get_run(store).data.params
    assert params["backbone"] == "tiny-bert"
    assert params["strategy"] == "linear-probe"
    assert params["strategy.cv"] == "5"
    assert params["strategy.C"] == "None"
    assert params["strategy.Cs"] == "[0.1,1.0]"
    assert params["strategy.class_weight.neg"] == "2.0"
    assert params["strategy.note"] == "x" * 497 + "..."
    assert (params["seed"], params["n_train"], params["n_val"], params["n_test"]) == ("7", "28", "4", "8")


def test_metrics_hold_test_verdict_and_baseline_values(store: dict[str, Any]) -> None:
    assert get_run(store).data.metrics == pytest.approx({
        "test_accuracy": 0.875, "test_balanced_accuracy": 0.85, "test_macro_f1": 0.86,
        "test_log_loss": 0.31, "test_ece": 0.05,  # roc_auc None, n and per_class are not metrics
        "verdict_difference": 0.375, "verdict_ci_low": 0.125, "verdict_ci_high": 0.625,
        "baseline_trivial_accuracy": 0.5, "baseline_classic_accuracy": 0.75,  # no accuracy, no metric
    })


def test_tags_and_run_state(store: dict[str, Any]) -> None:
    run = get_run(store)
    tags = run.data.tags
    assert tags["verdict"] == "transfer helps"
    assert tags["data_fingerprint"] == "sha256:abc123"
    assert tags["headstart_version"] == "0.1.0"
    assert tags["modality"] == "text"
    assert tags["bundle_dir"] == str(store["bundle"].resolve())
    assert tags["command"].startswith("headstart fit texts.csv --out runs/texts")
    assert len(tags["command"]) == 5000 and tags["command"].endswith("...")
    assert run.info.status == "FINISHED"


def test_report_and_whole_bundle_are_artifacts_beside_the_store(store: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store["uri"])
    run_id = store["run_id"]
    assert {a.path for a in client.list_artifacts(run_id)} == {"report.html", "bundle"}
    assert {a.path for a in client.list_artifacts(run_id, "bundle")} == {"bundle/headstart.json", "bundle/model.safetensors"}
    artifacts = Path(urlparse(client.get_run(run_id).info.artifact_uri).path)
    assert artifacts == store["root"] / "store" / "mlruns-artifacts" / "headstart" / run_id / "artifacts"
    assert (artifacts / "bundle" / "model.safetensors").read_bytes() == bytes(range(64))
    assert (artifacts / "report.html").read_text() == "<html>report</html>"


def test_list_runs_reports_the_run(store: dict[str, Any]) -> None:
    (row,) = list_runs(store["uri"])
    assert row == {
        "run_id": store["run_id"], "start_time": row["start_time"], "status": "FINISHED",
        "backbone": "tiny-bert", "strategy": "linear-probe", "test_accuracy": 0.875, "test_macro_f1": 0.86,
        "verdict": "transfer helps", "bundle": str(store["bundle"].resolve()), "command": row["command"],
    }
    assert row["start_time"].endswith("+00:00") and row["command"].startswith("headstart fit")
    assert list_runs(store["uri"], experiment="no-such-experiment") == []


def test_store_creation_logs_and_warns_nothing(store: dict[str, Any]) -> None:
    # A new SQLite store makes MLflow log "Creating initial MLflow database tables..." at INFO.
    assert store["noise"] == []


def test_runs_come_back_newest_first(store: dict[str, Any], capfd: pytest.CaptureFixture[str]) -> None:
    uri = store["uri"]
    first = track_fit(fake_manifest(0.5), bundle_dir=None, report_path=None, tracking_uri=uri, experiment="order")
    second = track_fit(fake_manifest(0.625), bundle_dir=None, report_path=None, tracking_uri=uri, experiment="order")
    rows = list_runs(uri, experiment="order")
    assert [r["run_id"] for r in rows] == [second, first]
    assert [r["test_accuracy"] for r in rows] == [0.625, 0.5]
    assert [r["bundle"] for r in rows] == [None, None]
    assert [r["run_id"] for r in list_runs(uri, experiment="order", limit=1)] == [second]
    assert capfd.readouterr().err == ""


def test_listing_a_missing_store_returns_nothing_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert list_runs(f"sqlite:///{tmp_path / 'missing' / 'mlruns.db'}") == []
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HEADSTART_TRACKING_URI", raising=False)
    assert list_runs() == []  # the default store, ./mlruns.db
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("uri", ["nosuchscheme://store", "not a uri", "sqlite:///{tmp}/a-file/mlruns.db"])
def test_a_bad_uri_is_a_config_error(tmp_path: Path, uri: str) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    uri = uri.format(tmp=tmp_path)
    with pytest.raises(ConfigError, match="--no-track"):
        track_fit(fake_manifest(), bundle_dir=None, report_path=None, tracking_uri=uri)
    if "a-file" not in uri:
        with pytest.raises(ConfigError, match="--tracking-uri"):
            list_runs(uri)


def test_resolve_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HEADSTART_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert resolve_tracking_uri("sqlite:///sub/runs.db") == f"sqlite:///{tmp_path / 'sub' / 'runs.db'}"
    monkeypatch.setenv("HEADSTART_TRACKING_URI", "http://tracking.example:5000")
    assert resolve_tracking_uri(None) == "http://tracking.example:5000"
    assert resolve_tracking_uri("sqlite:////abs/runs.db") == "sqlite:////abs/runs.db"

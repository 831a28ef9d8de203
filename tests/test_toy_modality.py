"""The modality seam is real: a third modality defined only in the tests (``toy_modality.py``:
fixed-length numeric vectors, a tiny MLP backbone) runs fit -> predict -> evaluate -> audit ->
export (ONNX parity) -> serve, from Python and from the command line, and a separate process
finds it the way a user's plugin is found (``HEADSTART_MODALITIES``)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import headstart
from headstart.bundle import read_manifest
from headstart.cli.app import run
from headstart.errors import ConfigError
from headstart.modalities import ENV_VAR, get_modality
from toy_modality import BACKBONE, DIM, NAME

TESTS = Path(__file__).resolve().parent
QUICK = ("--no-compare", "--no-learning-curve", "-q")


def _vectors(n_per_class: int = 24, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """Three clusters, the same for every seed (the seed draws the points around them)."""
    centers = np.random.default_rng(0).normal(0, 2.5, (3, DIM))
    rng = np.random.default_rng(seed + 1000)
    X = [(centers[c] + rng.normal(0, 1, DIM)).astype(np.float32) for c in range(3) for _ in range(n_per_class)]
    y = [f"c{c}" for c in range(3) for _ in range(n_per_class)]
    return X, y


@pytest.fixture(scope="module")
def table(plugin: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    X, y = _vectors()
    path = tmp_path_factory.mktemp("vectors") / "readings.csv"
    pd.DataFrame({"vector": [" ".join(f"{v:.5f}" for v in x) for x in X], "label": y}).to_csv(path, index=False)
    return path


def test_the_plugin_is_found_by_the_environment_variable(plugin: object) -> None:
    assert plugin.name == NAME and plugin.default_backbone == BACKBONE
    with pytest.raises(ConfigError, match=r"unknown modality 'sonar'.*vectors"):
        get_modality("sonar")
    assert headstart.data.infer_modality(_vectors(2)[0]) == NAME


def test_python_fit_writes_a_complete_bundle_that_predicts_and_proves(plugin: object, tmp_path: Path,
                                                                      table: Path) -> None:
    X, y = _vectors()
    result = headstart.fit(X, y, out=tmp_path / "py", report=True, track=False, scratch_budget=5,
                           learning_curve=False)
    manifest = read_manifest(tmp_path / "py")
    assert manifest["modality"] == NAME and manifest["backbone"]["name"] == BACKBONE
    kinds = {row["kind"] for row in result.evidence["comparison"]}
    assert {"classic", "random-features", "scratch"} <= kinds
    assert (tmp_path / "py" / "report.html").is_file()
    clf = headstart.load(tmp_path / "py")
    test_X, test_y = _vectors(8, seed=1)
    assert list(clf.predict(test_X)) == list(result.model.predict(test_X))
    proof = clf.prove(test_X, test_y, compare=False, learning_curve=False)
    assert proof["metrics"]["accuracy"] > 0.5  # separable clusters; chance is 1/3
    # the report regenerates from the bundle alone
    assert run(["report", str(tmp_path / "py"), "--out", str(tmp_path / "again.html")]) == 0
    assert (tmp_path / "again.html").stat().st_size > 1000


def test_cli_fit_predict_evaluate_audit_export_serve(plugin: object, table: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "cli"
    assert run(["fit", str(table), "--out", str(bundle), "--strategy", "full", "--set", "epochs=2", *QUICK]) == 0
    capsys.readouterr()
    assert read_manifest(bundle)["strategy"]["name"] == "full"

    assert run(["predict", str(bundle), str(table), "--json", "-q"]) == 0
    rows = json.loads(capsys.readouterr().out)["predictions"]
    assert len(rows) == 72 and rows[0]["item"].startswith(f"{table} row 1: [")

    assert run(["evaluate", str(bundle), str(table), "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["accuracy"] > 0.5

    assert run(["audit", str(table), "--json", "-q"]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["empty-texts"]["severity"] == "skipped" and checks["image-properties"]["severity"] == "skipped"
    assert checks["exact-duplicates"]["severity"] == "ok" and checks["near-duplicates"]["severity"] in ("ok", "warning")

    assert run(["export", str(bundle), "--quantize", "int8", "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parity"]["max_abs_diff"] <= 1e-4 and summary["int8"]["method"]
    assert read_manifest(bundle)["onnx"]["preprocessing"]["kind"] == NAME

    from fastapi.testclient import TestClient

    from headstart.serving.engine import load_engine
    from headstart.serving.service import create_app

    engine = load_engine(bundle, "onnx")
    X, _ = _vectors(2, seed=2)
    expected = engine.predict_proba(X)
    with TestClient(create_app(engine)) as client:
        answer = client.post("/predict", json={"vectors": [x.tolist() for x in X]})
        assert answer.status_code == 200, answer.text
        got = [[p["probabilities"][str(c)] for c in engine.classes] for p in answer.json()["predictions"]]
        assert np.allclose(got, expected, atol=1e-6)
        bad = client.post("/predict", json={"vectors": [[1.0, 2.0]]})
        assert bad.status_code == 422 and "6 finite numbers" in bad.json()["error"]["message"]
        wrong = client.post("/predict", json={"texts": ["hello"]})
        assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "wrong_field"
        schema = client.get("/openapi.json").json()
        body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["vectors"]["items"]["maxItems"] == DIM
        assert client.get("/metadata").json()["modality"] == NAME


def test_a_separate_process_finds_the_plugin_and_predicts_without_torch(plugin: object, table: Path,
                                                                         tmp_path: Path) -> None:
    bundle = tmp_path / "sub"
    assert run(["fit", str(table), "--out", str(bundle), *QUICK]) == 0
    assert run(["export", str(bundle), "-q"]) == 0
    X, _ = _vectors(1, seed=3)
    payload = base64.b64encode(json.dumps([x.tolist() for x in X]).encode()).decode()
    code = ("import sys, json, base64\n"
            "from headstart.serving.engine import load_engine\n"
            f"engine = load_engine({str(bundle)!r}, 'onnx')\n"
            f"items = json.loads(base64.b64decode({payload!r}))\n"
            "print(json.dumps({'proba': engine.predict_proba(items).tolist(), 'torch': 'torch' in sys.modules}))\n")
    env = {**os.environ, ENV_VAR: "toy_modality",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["torch"] is False
    here = headstart.load(bundle).predict_proba(X)
    assert np.allclose(answer["proba"], here, atol=1e-4)

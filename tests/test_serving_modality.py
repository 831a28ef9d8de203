"""Serving asks the modality: the engine's checks, order and decoding, the ONNX preprocessing, the
service's JSON field, batches and OpenAPI schema, and the export's files, for any registered
modality (a test-only one here, and the toy plugin of ``toy_modality.py``), with the built-in
modalities' answers unchanged."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

import headstart.modalities as modalities_module
from headstart.bundle import read_manifest
from headstart.cli.app import run
from headstart.errors import BundleError, ConfigError, DataError, RequestError
from headstart.manifest import write_manifest
from headstart.modalities import ENV_VAR, get_modality, load_plugins
from headstart.modalities.base import Modality
from headstart.modalities.image import IMAGE_TYPES
from headstart.serving import engine as engine_module
from headstart.serving.engine import Engine
from headstart.serving.export import export_onnx
from headstart.serving.limits import Limits
from headstart.serving.openapi import predict_request_body
from headstart.serving.service import create_app
from serve_fakes import FakeEngine


class ScoredModality(Modality):
    """Numbers: negative ones are refused, bigger ones batch first, each is doubled when decoded,
    and the service serves them in reversed pairs (99 is too big for it)."""

    name = "scored"
    plural = "scores"

    def check_items(self, items: list[Any]) -> None:
        bad = [i for i, v in enumerate(items) if v < 0]
        if bad:
            raise DataError(f"item {bad[0]}: a score must not be negative.")

    def sort_key(self, item: Any) -> float:
        return -float(item)

    def decode(self, item: Any, index: int) -> Any:
        return 2 * item

    def read_json_item(self, value: Any, where: str, limits: Any) -> Any:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise RequestError(422, "invalid_item", f"{where} must be a number.")
        return value

    def serve_batches(self, items: list[Any], field: str, limits: Any, most: int) -> Iterator[tuple[list[int], list[Any]]]:
        if 99 in items:
            raise RequestError(413, "too_many_pixels", f"{field}[{items.index(99)}] is too big to decode.")
        for start in reversed(range(0, len(items), 2)):
            idx = list(range(start, min(start + 2, len(items))))
            yield idx, [self.decode(items[i], i) for i in idx]


@pytest.fixture
def scored(monkeypatch: pytest.MonkeyPatch) -> Modality:
    """Registered for one test only."""
    load_plugins()
    modality = ScoredModality()
    monkeypatch.setitem(modalities_module._REGISTRY, modality.name, modality)
    return modality


@pytest.fixture(scope="module")
def toy() -> Iterator[Modality]:
    """The toy plugin, found the way a user's plugin is (``HEADSTART_MODALITIES``)."""
    saved = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = "toy_modality"
    load_plugins()
    yield get_modality("vectors")
    if saved is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = saved


class RecordingEngine(Engine):
    """The engine's shared predict_proba over a batch function that records what it was given."""

    name = "recording"

    def __init__(self, modality: str, batch_size: int = 2) -> None:
        super().__init__(Path("nowhere"), {"modality": modality, "labels": ["low", "high"]}, batch_size=batch_size)
        self.batches: list[list[Any]] = []

    def _predict_batch(self, batch: list[Any]) -> np.ndarray:
        self.batches.append(list(batch))
        p = np.asarray(batch, dtype=np.float64) / 1000
        return np.column_stack([1 - p, p])


class NumberEngine:
    """The service's engine interface for a modality of numbers: P(high) = value / 1000."""

    def __init__(self, modality: str) -> None:
        self.name, self.modality, self.classes = "numbers", modality, ["low", "high"]
        self.metadata = {"labels": self.classes, "backbone": {"name": "none"}}
        self.batch_size = 8
        self.calls: list[list[Any]] = []

    def predict_proba(self, items: list[Any]) -> np.ndarray:
        self.calls.append(list(items))
        p = np.asarray([np.asarray(v, dtype=np.float64).mean() for v in items]) / 1000
        return np.column_stack([1 - p, p])


# ------------------------------------------------------------------ engine
def test_the_engine_checks_orders_and_decodes_as_the_modality_says(scored: Modality) -> None:
    engine = RecordingEngine("scored", batch_size=2)
    proba = engine.predict_proba([1, 30, 2, 40, 5])
    assert engine.batches == [[80, 60], [10, 4], [2]]  # biggest first, doubled
    assert proba[:, 1].tolist() == [0.002, 0.06, 0.004, 0.08, 0.01]  # rows in input order
    engine.batches.clear()
    with pytest.raises(DataError, match="item 1: a score must not be negative"):
        engine.predict_proba([3, -1])
    assert engine.batches == []  # refused before any batch ran


def test_an_engine_of_an_unknown_modality_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown modality 'sonar' \(known: .*text"):
        RecordingEngine("sonar")


def test_the_onnx_preprocessing_is_the_modality_s(scored: Modality, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    monkeypatch.setattr(ScoredModality, "preprocessor",
                        lambda self, description, folder: made.append((description, folder)) or "replayer",
                        raising=False)
    assert engine_module._preprocessor({"kind": "scored", "scale": 2}, tmp_path) == "replayer"
    assert made == [({"kind": "scored", "scale": 2}, tmp_path)]
    with pytest.raises(BundleError, match=r"unknown preprocessing kind 'sonar'.*install the plugin"):
        engine_module._preprocessor({"kind": "sonar"}, tmp_path)
    with pytest.raises(BundleError, match="unknown preprocessing kind None"):
        engine_module._preprocessor({}, tmp_path)


# ------------------------------------------------------------------ service
def test_the_service_reads_the_modality_s_field_and_batches(scored: Modality) -> None:
    engine = NumberEngine("scored")
    with TestClient(create_app(engine, max_batch=8)) as client:
        answer = client.post("/predict", json={"scores": [100, 200 - 150, 10, 0, 20]})
        assert answer.status_code == 200, answer.text
        high = [row["probabilities"]["high"] for row in answer.json()["predictions"]]
        assert high == [0.2, 0.1, 0.02, 0.0, 0.04]  # decoded (doubled), in input order
        assert engine.calls == [[40], [20, 0], [200, 100]]  # the modality's batches, as it made them
        refused = client.post("/predict", json={"scores": [1, "two"]})
        assert refused.status_code == 422 and refused.json()["error"] == {
            "code": "invalid_item", "message": "scores[1] must be a number."}
        too_big = client.post("/predict", json={"scores": [1, 99]})
        assert too_big.status_code == 413 and too_big.json()["error"] == {
            "code": "too_many_pixels", "message": "scores[1] is too big to decode."}
        # multipart is for modalities that take uploads; the 415 says what this one takes
        form = client.post("/predict", files={"files": ("a.bin", b"1")})
        assert form.status_code == 415 and form.json()["error"]["message"].endswith(
            'send application/json with {"scores": [...]}.')
        meta = client.get("/metadata").json()
        assert meta["modality"] == "scored"
        spec = client.get("/openapi.json").json()
        enum = spec["paths"]["/metadata"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert {"text", "image", "scored"} <= set(enum["properties"]["modality"]["enum"])


def test_another_modality_s_field_is_named_for_any_pair(toy: Modality) -> None:
    cases = [(FakeEngine("text"), {"vectors": [[0.0] * 6]}, "this model classifies texts, so it takes 'texts', "
              "not 'vectors'"),
             (NumberEngine("vectors"), {"images": ["aGk="]}, "this model classifies vectors, so it takes "
              "'vectors', not 'images'"),
             (FakeEngine("image"), {"texts": ["hi"]}, "this model classifies images, so it takes 'images', "
              "not 'texts'")]
    for engine, body, message in cases:
        with TestClient(create_app(engine)) as client:
            answer = client.post("/predict", json=body)
            assert answer.status_code == 422 and answer.json()["error"]["code"] == "wrong_field", answer.text
            assert answer.json()["error"]["message"].startswith(message)


def test_the_service_refuses_a_modality_it_cannot_read(scored: Modality,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"modality 'sonar', which the service cannot read: unknown modality"):
        create_app(NumberEngine("sonar"))
    monkeypatch.setattr(scored, "plural", "", raising=False)
    with pytest.raises(ConfigError, match="names no request field"):
        create_app(NumberEngine("scored"))


def test_built_in_answers_are_unchanged() -> None:
    with TestClient(create_app(FakeEngine("text"))) as client:
        message = client.post("/predict", content=b"{", headers={"content-type": "application/json"}).json()
        assert message["error"]["message"].endswith('send e.g. {"texts": ["first text", "second text"]}.')
        form = client.post("/predict", files={"files": ("a.txt", b"hi")}).json()["error"]["message"]
        assert form.endswith('send application/json with {"texts": [...]}.')
    with TestClient(create_app(FakeEngine("image"))) as client:
        message = client.post("/predict", json=[]).json()["error"]["message"]
        assert message == 'the body must be a JSON object like {"images": ["<base64 PNG/JPEG>"]}, not an array.'
        form = client.post("/predict", content=b"x", headers={"content-type": "text/plain"}).json()
        assert form["error"]["message"].endswith("send application/json, or multipart/form-data with one `files` "
                                                 "part per image.")
    image = predict_request_body("image", Limits())["content"]
    assert "example" not in image["application/json"]  # "<base64 PNG/JPEG>" is not an image
    assert image["multipart/form-data"]["encoding"]["files"]["contentType"] == IMAGE_TYPES
    text = predict_request_body(get_modality("text"), Limits(max_text_chars=50))["content"]
    assert text["application/json"]["example"] == {"texts": ["first text", "second text"]}
    assert text["application/json"]["schema"]["properties"]["texts"]["items"]["maxLength"] == 50
    assert "multipart/form-data" not in text


# ------------------------------------------------------------------ export
def test_reexport_forgets_the_files_an_earlier_export_s_preprocessing_read(toy: Modality, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 2.5, (2, 6))
    rows = [(" ".join(f"{v:.4f}" for v in centers[c] + rng.normal(0, 1, 6)), f"c{c}") for c in range(2) for _ in range(12)]
    table = tmp_path / "readings.csv"
    pd.DataFrame(rows, columns=["vector", "label"]).to_csv(table, index=False)
    bundle = tmp_path / "bundle"
    assert run(["fit", str(table), "--out", str(bundle), "--no-compare", "--no-learning-curve", "-q"]) == 0
    export_onnx(bundle, parity_items=4)
    manifest = read_manifest(bundle)
    assert manifest["onnx"]["preprocessing_files"] == []
    # As if an earlier version of the plugin had written a vocabulary beside the graph.
    (bundle / "vocabulary.json").write_bytes(b"old")
    manifest["onnx"]["preprocessing_files"] = ["vocabulary.json"]
    write_manifest(bundle, manifest, files=[*manifest["files"], "vocabulary.json"])
    assert "vocabulary.json" in read_manifest(bundle)["files"]
    export_onnx(bundle, parity_items=4)
    again = read_manifest(bundle)
    assert "vocabulary.json" not in again["files"] and not (bundle / "vocabulary.json").exists()
    assert again["onnx"]["preprocessing"]["kind"] == "vectors"

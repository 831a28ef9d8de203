"""Bundles: round trip, atomic writes, and refusing anything damaged, tampered or foreign."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import headstart
from conftest import make_texts
from headstart import BundleError, TransferClassifier
from headstart.backbones.text import DEFAULT_WINDOW_POOLING, DEFAULT_WINDOWS
from headstart.bundle import FORMAT_VERSION, MANIFEST, WEIGHTS, manifest_digest


@pytest.fixture(scope="module")
def fitted() -> TransferClassifier:
    texts, labels = make_texts(15)
    return TransferClassifier(backbone="tiny-bert", random_state=0, cache=False).fit(texts, labels)


def _rewrite_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    change(manifest)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_round_trip_gives_identical_probabilities(fitted: TransferClassifier, tmp_path: Path) -> None:
    texts = make_texts(8, seed=3)[0]
    fitted.save(tmp_path / "b")
    loaded = headstart.load(tmp_path / "b")
    np.testing.assert_array_equal(loaded.predict_proba(texts), fitted.predict_proba(texts))
    assert list(loaded.classes_) == list(fitted.classes_)
    assert loaded.get_params() == fitted.get_params()
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    for key in ("task", "labels", "backbone", "strategy", "preprocessing", "metrics", "seed", "data", "files"):
        assert key in manifest, key
    assert manifest["backbone"]["build"] == {"name": "tiny-bert", "kwargs": {"seed": 0, "max_length": 64, "pooling": "mean",
                                                                      "windows": DEFAULT_WINDOWS,
                                                                      "window_pooling": DEFAULT_WINDOW_POOLING}}
    assert manifest["fit"]["versions"]["safetensors"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [MANIFEST, WEIGHTS]


def test_saving_over_a_bundle_replaces_it_and_other_folders_are_refused(fitted: TransferClassifier, tmp_path: Path) -> None:
    fitted.save(tmp_path / "b")
    fitted.save(tmp_path / "b")  # replacing a bundle is fine
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"...")
    with pytest.raises(BundleError, match="not a headstart bundle"):
        fitted.save(other)
    assert (other / "cat.jpg").read_bytes() == b"..."
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_failed_save_leaves_no_half_bundle_and_keeps_the_old_one(
    fitted: TransferClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch

    fitted.save(tmp_path / "b")
    before = (tmp_path / "b" / WEIGHTS).read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        fitted.save(tmp_path / "b")
    with pytest.raises(OSError):
        fitted.save(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "b" / WEIGHTS).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_tampered_weights_are_refused(fitted: TransferClassifier, tmp_path: Path) -> None:
    fitted.save(tmp_path / "b")
    weights = tmp_path / "b" / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the sha256"):
        headstart.load(tmp_path / "b")


def test_edited_manifest_is_refused(fitted: TransferClassifier, tmp_path: Path) -> None:
    fitted.save(tmp_path / "b")
    path = tmp_path / "b" / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["labels"] = list(reversed(manifest["labels"]))  # would silently swap every prediction
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="edited or damaged"):
        headstart.load(tmp_path / "b")


def test_newer_format_missing_file_and_foreign_files(fitted: TransferClassifier, tmp_path: Path) -> None:
    fitted.save(tmp_path / "b")
    _rewrite_manifest(tmp_path / "b", lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(BundleError, match="upgrade headstart"):
        headstart.load(tmp_path / "b")

    fitted.save(tmp_path / "c")
    (tmp_path / "c" / "extra.pkl").write_bytes(b"\x80\x04.")
    _rewrite_manifest(tmp_path / "c", lambda m: m["files"].update({"extra.pkl": {"sha256": "0"}}))
    with pytest.raises(BundleError, match="may not hold"):
        headstart.load(tmp_path / "c")

    fitted.save(tmp_path / "d")
    (tmp_path / "d" / WEIGHTS).unlink()
    with pytest.raises(BundleError, match="missing"):
        headstart.load(tmp_path / "d")

    with pytest.raises(BundleError, match="not a headstart bundle"):
        headstart.load(tmp_path)
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        headstart.load(tmp_path / "e")


def test_changed_backbone_weights_are_detected(fitted: TransferClassifier, tmp_path: Path) -> None:
    fitted.save(tmp_path / "b")
    _rewrite_manifest(tmp_path / "b", lambda m: m["backbone"].update(weights_sha256="0" * 64))
    with pytest.raises(BundleError, match="differ from those"):
        headstart.load(tmp_path / "b")


def test_saving_an_unfitted_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(headstart.NotFittedError):
        TransferClassifier().save(tmp_path / "x")

"""ONNX export and the inference engines: parity with PyTorch (probe and fine-tuned bundles, text
and images), dynamic batch, int8 with its accuracy change, the lean import path, atomic bundle
updates, preprocessing replayed exactly, and the CLI (`export`, `predict --engine`)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import headstart
from conftest import make_image, make_texts
from headstart import BundleError, ConfigError, DataError, TransferClassifier
from headstart import atomic as atomic_module
from headstart.bundle import MANIFEST, manifest_digest
from headstart.cli.app import run
from headstart.data import assign_splits, load_data
from headstart.modalities.pixels import ImagePreprocessor, describe_image
from headstart.modalities.text import TextPreprocessor, describe_text
from headstart.serving.engine import OnnxEngine, load_engine
from headstart.serving.export import PARITY_TOLERANCE, export_onnx

QUICK = ("--no-compare", "--no-learning-curve")
HEAVY = ("torch", "timm", "transformers", "sklearn")
LINEAR = ("text-linear", "image-linear")


# ------------------------------------------------------------------ shared bundles (built once)
@pytest.fixture(scope="module")
def _module_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The conftest isolation (own cache, no hub, no tracking) for module-scoped fixtures."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADSTART_CACHE", str(tmp_path_factory.mktemp("export-cache")))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HEADSTART_NO_TRACK", "1")
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Texts (some longer than tiny-bert's 64 tokens) and images of several sizes and modes."""
    root = tmp_path_factory.mktemp("export-data")
    texts, labels = make_texts(20)
    texts += ["good great lovely superb " * 6, "bad awful poor terrible " * 6]
    labels += ["pos", "neg"]
    pd.DataFrame({"text": texts, "label": labels}).to_csv(root / "texts.csv", index=False)
    rng = np.random.default_rng(0)
    for kind in ("disc", "square"):
        (root / "shapes" / kind).mkdir(parents=True)
        for i in range(15):
            img = make_image(kind, rng, size=48 if i % 3 else 32)
            if i % 3 == 1:
                img = img.resize((48, 36))  # not square: resize then centre crop
            if i % 5 == 2:
                img = img.convert("RGBA") if kind == "disc" else img.convert("L")
            img.save(root / "shapes" / kind / f"{kind}_{i:02d}.png")
    return {"text": root / "texts.csv", "image": root / "shapes"}


def _fit_cli(source: Path, out: Path, backbone: str, *extra: str) -> Path:
    code = run(["fit", str(source), "--backbone", backbone, "--out", str(out), "-q", *QUICK, *extra])
    assert code == 0
    return out


def _fit_finetuned(source: Path, out: Path, backbone: str, strategy: str, **params: Any) -> Path:
    """One epoch with no validation split, so the fine-tuned backbone (not a kept probe) is saved."""
    dataset = assign_splits(load_data(source), val_fraction=0.0, test_fraction=0.2, seed=0)
    if strategy != "contrastive":
        params.update(strategy_params={"val_fraction": 0.0}, epochs=1)
    clf = TransferClassifier(backbone=backbone, strategy=strategy, random_state=0, cache=False, **params).fit(dataset)
    loader = {"path": str(source), "label_col": "label", "val_fraction": 0.0, "test_fraction": 0.2}
    return clf.save(out, extra={"loader": loader})


@pytest.fixture(scope="module")
def bundles(_module_env: None, data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export-bundles")
    return {
        "text-linear": _fit_cli(data["text"], root / "text-linear", "tiny-bert"),
        "image-linear": _fit_cli(data["image"], root / "image-linear", "tiny-cnn"),
        "text-lora": _fit_finetuned(data["text"], root / "text-lora", "tiny-bert", "lora"),
        "image-lora": _fit_finetuned(data["image"], root / "image-lora", "tiny-cnn", "lora"),
    }


@pytest.fixture(scope="module")
def exported(bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """Each bundle copied and exported (the linear-probe ones with int8 as well)."""
    root = tmp_path_factory.mktemp("exported")
    out = {}
    for key, bundle in bundles.items():
        copy = Path(shutil.copytree(bundle, root / key))
        out[key] = copy, export_onnx(copy, quantize="int8" if key in LINEAR else None)
    return out


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _copy(bundle: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(bundle, tmp_path / name))


def _awkward_items(modality: str, folder: Path) -> list[Any]:
    """Items unlike the training data: long/unicode texts; odd sizes, modes and item types."""
    if modality == "text":
        return ["Good GREAT lovely!", "café naïve résumé — déjà vu ☃", "x", "bad " * 80, "awful, poor; broken?",
                "nice item 7 " * 3]
    rng = np.random.default_rng(1)
    rgba = io.BytesIO()
    make_image("disc", rng, size=40).convert("RGBA").save(rgba, format="PNG")
    deep = Image.fromarray(np.asarray(make_image("square", rng).convert("L"), np.uint16) * 257)
    assert deep.mode.startswith("I")
    return [
        rgba.getvalue(),                                            # encoded bytes with alpha
        deep,                                                       # 16-bit greyscale
        make_image("disc", rng, size=40).convert("P"),              # palette
        make_image("square", rng, size=64).resize((120, 50)),       # wide
        make_image("disc", rng).resize((5, 9)),                     # smaller than the input size
        np.asarray(make_image("square", rng)),                      # H×W×3 uint8 array
        np.asarray(make_image("disc", rng).convert("L"), np.float32) / 255.0,  # float greyscale array
        str(next((folder).rglob("*.png"))),                         # a path as str
    ]


# ------------------------------------------------------------------ parity
@pytest.mark.parametrize("key", ["text-linear", "image-linear", "text-lora", "image-lora"])
def test_export_passes_parity_and_the_bundle_still_loads(key: str, bundles: dict[str, Path], data: dict[str, Path],
                                                         exported: dict[str, tuple[Path, dict]]) -> None:
    folder, summary = exported[key]
    assert summary["parity"]["max_abs_diff"] <= PARITY_TOLERANCE
    assert summary["parity"]["items"] >= 30 and summary["parity"]["labels_agree"] == 1.0
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["backbone"]["weights_in_bundle"] is key.endswith("lora")  # fine-tuned weights are exported
    assert {"model.onnx", "model.safetensors"} <= set(manifest["files"])
    assert ("tokenizer.json" in manifest["files"]) is key.startswith("text")
    entry = manifest["onnx"]
    # A text graph takes windows of tokens (one per short text) and their weights per text.
    first = "windows" if key.startswith("text") else "batch"
    assert entry["inputs"][0]["shape"][0] == first and entry["output"]["shape"] == ["batch", 2]
    assert entry["sha256"] == manifest["files"]["model.onnx"]["sha256"]
    # headstart.load still verifies the updated bundle and predicts exactly as before the export.
    items = _awkward_items(manifest["modality"], data["image"])
    np.testing.assert_array_equal(headstart.load(bundles[key]).predict_proba(items[1:4]),
                                  headstart.load(folder).predict_proba(items[1:4]))


@pytest.mark.parametrize("key", ["text-linear", "image-linear", "text-lora", "image-lora"])
def test_engines_agree_on_unseen_and_awkward_items(key: str, exported: dict[str, tuple[Path, dict]],
                                                   data: dict[str, Path]) -> None:
    folder, _ = exported[key]
    torch_engine, onnx_engine = load_engine(folder, "torch"), load_engine(folder, "onnx")
    items = _awkward_items(torch_engine.modality, data["image"])
    p_torch, p_onnx = torch_engine.predict_proba(items), onnx_engine.predict_proba(items)
    assert p_onnx.shape == (len(items), 2)
    np.testing.assert_allclose(p_onnx.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(p_torch - p_onnx).max() <= PARITY_TOLERANCE


@pytest.mark.parametrize("key", LINEAR)
def test_dynamic_batch_and_sequence_axes(key: str, exported: dict[str, tuple[Path, dict]],
                                         data: dict[str, Path]) -> None:
    folder, _ = exported[key]
    dataset = load_data(data["text"] if key.startswith("text") else data["image"])
    items = dataset.items[::4][:10]
    reference = load_engine(folder, "torch").predict_proba(items)
    for batch_size in (1, 3, 5, 10):  # the graph was traced at batch 2
        engine = load_engine(folder, "onnx", batch_size=batch_size)
        # Text: windows of tokens (tests/test_long_documents.py), then the windows' weights per text.
        axes = [("windows", "sequence")] * (len(engine.input_names) - 1) + [("batch", "windows")]
        expected = axes if key.startswith("text") else [("batch",)] * len(engine.input_names)
        assert [tuple(i.shape[:len(e)]) for i, e in zip(engine.session.get_inputs(), expected)] == expected
        assert np.abs(engine.predict_proba(items) - reference).max() <= PARITY_TOLERANCE
    if key.startswith("text"):
        lengths = {engine.preprocess([t])["input_ids"].shape[1] for t in items}
        assert len(lengths) > 1  # batches of one text each ran at several sequence lengths


# ------------------------------------------------------------------ engines
def test_engine_choice(bundles: dict[str, Path], exported: dict[str, tuple[Path, dict]]) -> None:
    folder, _ = exported["text-linear"]
    auto = load_engine(folder)
    assert auto.name == "onnx" and isinstance(auto, OnnxEngine)
    assert load_engine(bundles["text-linear"]).name == "torch"  # not exported: torch
    assert load_engine(folder, "onnx-int8").name == "onnx-int8"
    with pytest.raises(BundleError, match="headstart export"):
        load_engine(bundles["text-linear"], "onnx")
    with pytest.raises(BundleError, match="--quantize int8"):
        load_engine(exported["text-lora"][0], "onnx-int8")
    with pytest.raises(ConfigError, match="engine='tensorrt'"):
        load_engine(folder, "tensorrt")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert auto.classes == manifest["labels"] and auto.modality == "text"
    meta = json.loads(json.dumps(auto.metadata))  # JSON-plain
    assert meta["engine"] == "onnx" and meta["backbone"]["name"] == "tiny-bert" and meta["strategy"] == "linear-probe"
    assert meta["labels"] == manifest["labels"] and meta["metrics"]["accuracy"] == manifest["metrics"]["test"]["accuracy"]
    assert meta["bundle"] == str(folder) and meta["created"] and meta["onnx"]["int8"] is True
    assert auto.predict(["good great lovely item 3"]) == ["pos"]
    assert load_engine(folder, "onnx", threads=1).predict(["good great lovely item 3"]) == ["pos"]
    auto.close()


def test_bad_items_raise_data_errors_naming_the_item(exported: dict[str, tuple[Path, dict]], tmp_path: Path) -> None:
    for name in ("torch", "onnx"):
        text = load_engine(exported["text-linear"][0], name)
        with pytest.raises(DataError, match="item 1: the text is empty"):
            text.predict_proba(["fine", "  ", "good"])
        with pytest.raises(DataError, match="item 2: expected a text"):
            text.predict_proba(["fine", "good", 3])
        with pytest.raises(DataError, match="list"):
            text.predict_proba("just one string")
        image = load_engine(exported["image-linear"][0], name)
        with pytest.raises(DataError, match="item 1: cannot decode the bytes"):
            image.predict_proba([np.zeros((8, 8, 3), np.uint8), b"not an image"])
        with pytest.raises(DataError, match=r"item 0: image not found: .*missing\.png"):
            image.predict_proba([str(tmp_path / "missing.png")])
        with pytest.raises(DataError, match="item 0: expected an image"):
            image.predict_proba([3.5])
        assert image.predict_proba([]).shape == (0, 2)


def test_the_onnx_engine_imports_no_torch(exported: dict[str, tuple[Path, dict]], data: dict[str, Path]) -> None:
    png = next(data["image"].rglob("*.png"))
    code = f"""
import sys
import headstart.serving.engine as e
text = e.load_engine({str(exported['text-linear'][0])!r})
image = e.load_engine({str(exported['image-linear'][0])!r}, "onnx-int8")
assert text.predict(["good great lovely item 3"]) == ["pos"]
p = image.predict_proba([{str(png)!r}, open({str(png)!r}, "rb").read()])
assert p.shape == (2, 2)
heavy = [m for m in {HEAVY!r} if m in sys.modules]
assert not heavy, heavy
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_public_api_still_imports() -> None:
    done = subprocess.run([sys.executable, "-c", (
        "import sys, headstart\n"
        f"assert not [m for m in {HEAVY!r} if m in sys.modules]\n"
        "from headstart import TransferClassifier, load, audit, Dataset, load_data, create_backbone, list_backbones\n"
        "from headstart import BundleError, DataError, HeadstartError\n"
        "import headstart.audit.base\n"
        "assert callable(headstart.audit) and all(hasattr(headstart, n) for n in headstart.__all__)\n"
        "assert TransferClassifier.__module__ == 'headstart.classifier' and 'TransferClassifier' in dir(headstart)\n"
    )], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        headstart.nothing  # noqa: B018


# ------------------------------------------------------------------ int8
@pytest.mark.parametrize("key", LINEAR)
def test_int8_is_written_with_its_size_speed_and_accuracy_change(key: str, exported: dict[str, tuple[Path, dict]]) -> None:
    folder, summary = exported[key]
    int8 = summary["int8"]
    manifest = json.loads((folder / MANIFEST).read_text())
    assert int8["file"] == "model.int8.onnx" and "model.int8.onnx" in manifest["files"]
    assert 0 < int8["size_ratio"] < 1 and int8["speedup_vs_onnx"] > 0
    assert ("quantize_static" if key.startswith("image") else "quantize_dynamic") in int8["method"]
    acc = int8["accuracy"]
    assert acc["available"] and "fingerprint matches" in acc["evaluated_on"]
    assert acc["items"] == manifest["data"]["split_counts"]["test"]  # the fit's held-out split, re-created
    assert acc["onnx"] == pytest.approx(manifest["metrics"]["test"]["accuracy"])  # fp32 ONNX = the fit's torch score
    assert acc["delta"] >= -0.13  # tiny random backbones, 8 test items: at most one changes
    assert set(summary["speed"]["batch1_ms"]) == {"torch", "onnx", "onnx-int8"}
    assert load_engine(folder, "onnx-int8").predict_proba(
        load_data(Path(manifest["loader"]["path"])).items[:3]).shape == (3, 2)


def test_split_fractions_are_recorded_and_the_held_out_split_recreated(_module_env: None, data: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    bundle = _fit_cli(data["text"], tmp_path / "b", "tiny-bert", "--val-fraction", "0.15", "--test-fraction", "0.3",
                      "--seed", "4")
    manifest = json.loads((bundle / MANIFEST).read_text())
    loader = manifest["loader"]
    assert loader["val_fraction"] == 0.15 and loader["test_fraction"] == 0.3
    assert loader["path"] == str(data["text"].resolve())
    summary = export_onnx(bundle, quantize="int8")
    acc = summary["int8"]["accuracy"]
    assert acc["items"] == manifest["data"]["split_counts"]["test"] == 12
    assert "seed 4, val 0.15, test 0.3; fingerprint matches" in acc["evaluated_on"]


def test_export_without_the_fit_data_asks_for_it(exported: dict[str, tuple[Path, dict]], data: dict[str, Path],
                                                 tmp_path: Path) -> None:
    bundle = _copy(exported["text-linear"][0], tmp_path)
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["loader"]["path"] = manifest["data"]["source"] = str(tmp_path / "gone.csv")
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    before = _snapshot(bundle)
    with pytest.raises(BundleError, match="--data DATA"):
        export_onnx(bundle)
    assert _snapshot(bundle) == before
    unlabeled = tmp_path / "unlabeled.csv"
    pd.DataFrame({"text": make_texts(10, seed=5)[0]}).to_csv(unlabeled, index=False)
    summary = export_onnx(bundle, data=unlabeled, quantize="int8")
    assert summary["parity"]["max_abs_diff"] <= PARITY_TOLERANCE and "unlabeled.csv" in summary["parity"]["data"]
    assert summary["int8"]["accuracy"] == {"available": False, "reason": summary["int8"]["accuracy"]["reason"]}
    assert "has no labels" in summary["int8"]["accuracy"]["reason"]
    # Other labeled data: its accuracy is measured on all of it, and said so.
    summary = export_onnx(bundle, data=data["text"], quantize="int8")
    assert "fingerprint matches" in summary["int8"]["accuracy"]["evaluated_on"]  # the same data as the fit's


def test_reexport_without_quantize_drops_the_stale_int8(exported: dict[str, tuple[Path, dict]], tmp_path: Path) -> None:
    bundle = _copy(exported["image-linear"][0], tmp_path)
    summary = export_onnx(bundle)
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert summary["int8"] is None and "int8" not in manifest["onnx"]
    assert not (bundle / "model.int8.onnx").exists() and "model.int8.onnx" not in manifest["files"]
    with pytest.raises(BundleError, match="--quantize int8"):
        load_engine(bundle, "onnx-int8")


# ------------------------------------------------------------------ atomic updates
def _perturbed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the ONNX side disagree with PyTorch by 1e-3, as a broken export would."""
    original = OnnxEngine._predict_batch
    monkeypatch.setattr(OnnxEngine, "_predict_batch", lambda self, batch: original(self, batch) + 1e-3)


def _interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupt the export after the new files are written, before the bundle is swapped."""
    def stop(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(atomic_module, "swap_into_place", stop)  # the shared folder writer's last step


@pytest.mark.parametrize("failure,error", [(_perturbed, BundleError), (_interrupted, KeyboardInterrupt)])
def test_a_failed_export_leaves_the_bundle_unchanged(failure: Any, error: type[BaseException],
                                                     exported: dict[str, tuple[Path, dict]], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = _copy(exported["text-linear"][0], tmp_path)  # already exported: its ONNX files must survive
    before = _snapshot(bundle)
    failure(monkeypatch)
    with pytest.raises(error) as caught:
        export_onnx(bundle, quantize="int8")
    if error is BundleError:
        assert "parity" in str(caught.value) and "unchanged" in str(caught.value)
    monkeypatch.undo()
    assert _snapshot(bundle) == before
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # no temporary folder left behind
    headstart.load(bundle)  # still verifies
    assert load_engine(bundle, "onnx").predict(["good great lovely item 3"]) == ["pos"]


def test_a_tampered_onnx_file_is_refused(exported: dict[str, tuple[Path, dict]], tmp_path: Path) -> None:
    bundle = _copy(exported["image-linear"][0], tmp_path)
    with open(bundle / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"model\.onnx does not match the sha256"):
        load_engine(bundle, "onnx")


# ------------------------------------------------------------------ preprocessing replayed exactly
@pytest.mark.parametrize("crop_pct,interpolation", [(0.875, "bicubic"), (1.0, "bilinear"), (1.25, "bicubic")])
def test_image_preprocessing_replays_the_timm_transform(crop_pct: float, interpolation: str) -> None:
    from timm.data import create_transform

    transform = create_transform(input_size=(3, 40, 40), crop_pct=crop_pct, interpolation=interpolation,
                                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), is_training=False)
    replay = ImagePreprocessor(describe_image(transform))
    rng = np.random.default_rng(0)
    for w, h in ((61, 37), (17, 90), (7, 5), (300, 200), (40, 40), (45, 45)):
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        np.testing.assert_array_equal(replay.one(img), transform(img).numpy())


def test_unsupported_image_preprocessing_is_refused() -> None:
    from timm.data import create_transform

    transform = create_transform(input_size=(3, 40, 48), crop_pct=0.9, is_training=False)  # ResizeKeepRatio
    with pytest.raises(BundleError, match="replays only"):
        describe_image(transform)


def test_tokenisation_replays_the_hugging_face_tokenizer(tmp_path: Path) -> None:
    from headstart.backbones import create_backbone

    backbone = create_backbone("tiny-bert", max_length=16, windows=1)  # windows: tests/test_long_documents.py
    texts = ["Hello, World!", "café naïve ☃", "a much longer text that runs well past sixteen tokens", "x"]
    expected = backbone.preprocess(texts)
    description = describe_text(backbone.tokenizer, list(expected), file="tokenizer.json")
    backbone.tokenizer.backend_tokenizer.save(str(tmp_path / "tokenizer.json"))
    replayed = TextPreprocessor(description, tmp_path)(texts)
    assert set(replayed) == set(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(replayed[name], values.numpy())
    assert replayed["input_ids"].shape == (4, 16)


# ------------------------------------------------------------------ CLI
def _cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("key", LINEAR)
def test_predict_engine_onnx_matches_torch(key: str, exported: dict[str, tuple[Path, dict]], data: dict[str, Path],
                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = exported[key]
    if key.startswith("text"):
        inputs = tmp_path / "lines.txt"
        inputs.write_text("good great lovely item 3\nawful terrible bad item 5\nnice item 3\n")
    else:
        inputs = data["image"] / "disc"
    results = {}
    for engine in ("torch", "onnx", "onnx-int8", "auto"):
        code, out, err = _cli(capsys, "predict", folder, inputs, "--engine", engine, "--json", "-q")
        assert code == 0, err
        results[engine] = json.loads(out)
    assert results["auto"]["engine"] == "onnx" and results["torch"]["engine"] == "torch"
    torch_rows, onnx_rows = results["torch"]["predictions"], results["onnx"]["predictions"]
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows]
    assert [r["item"] for r in onnx_rows] == [r["item"] for r in torch_rows]
    for a, b in zip(torch_rows, onnx_rows):
        assert all(abs(a["probabilities"][c] - b["probabilities"][c]) <= PARITY_TOLERANCE for c in a["probabilities"])
    code, out, _ = _cli(capsys, "predict", folder, inputs, "--engine", "onnx", "-q")
    assert code == 0 and "confidence" in out
    code, _, _ = _cli(capsys, "predict", folder, inputs, "--engine", "tensorrt")
    assert code == 2


def test_export_command(exported: dict[str, tuple[Path, dict]], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = _copy(exported["image-linear"][0], tmp_path)
    code, out, err = _cli(capsys, "export", bundle, "--quantize", "int8")
    assert code == 0, err
    for words in ("parity", "max |Δp|", "int8", "the size", "accuracy", "latency"):
        assert words in out, words
    code, out, _ = _cli(capsys, "export", bundle, "--json", "-q")
    summary = json.loads(out)
    assert code == 0 and summary["parity"]["max_abs_diff"] <= PARITY_TOLERANCE and summary["int8"] is None
    before = _snapshot(bundle)
    _perturbed(monkeypatch)
    code, out, err = _cli(capsys, "export", bundle, "-q")
    assert code == 1 and out == ""
    assert "failed the parity check" in " ".join(err.split()) and "unchanged" in err
    assert _snapshot(bundle) == before
    code, _, err = _cli(capsys, "export", tmp_path / "nothing")
    assert code == 1 and "not a headstart bundle" in err
    code, _, _ = _cli(capsys, "export", bundle, "--quantize", "int4")
    assert code == 2


# ------------------------------------------------------------------ slow: every strategy, real backbones
@pytest.mark.slow
@pytest.mark.parametrize("modality,strategy", [
    ("text", "partial"), ("text", "full"), ("text", "progressive"), ("text", "contrastive"),
    ("image", "partial"), ("image", "full"), ("image", "progressive"),
])
def test_parity_for_every_fine_tuning_strategy(modality: str, strategy: str, _module_env: None,
                                               data: dict[str, Path], tmp_path: Path) -> None:
    backbone = "tiny-bert" if modality == "text" else "tiny-cnn"
    bundle = _fit_finetuned(data[modality], tmp_path / strategy, backbone, strategy)
    summary = export_onnx(bundle)
    assert summary["parity"]["max_abs_diff"] <= PARITY_TOLERANCE
    items = _awkward_items(modality, data["image"])
    assert np.abs(load_engine(bundle, "torch").predict_proba(items)
                  - load_engine(bundle, "onnx").predict_proba(items)).max() <= PARITY_TOLERANCE


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# int8 may cost at most 2 points of held-out accuracy on the real backbones.
INT8_ACCURACY_TOLERANCE = 0.02


@pytest.mark.slow
@pytest.mark.parametrize("backbone,source", [("minilm", "spam-sample.jsonl"), ("efficientnet_lite0", "animal-silhouettes")])
def test_real_backbones_parity_and_int8_accuracy(backbone: str, source: str, _module_env: None, tmp_path: Path) -> None:
    # The sample's e-mails average ~1,500 tokens: 4 windows each (not 16) keep this test to a minute or two.
    extra = ("--windows", "4") if backbone == "minilm" else ()
    bundle = _fit_cli(EXAMPLES / source, tmp_path / backbone, backbone, *extra)
    summary = export_onnx(bundle, quantize="int8")
    assert summary["parity"]["max_abs_diff"] <= PARITY_TOLERANCE and summary["parity"]["labels_agree"] == 1.0
    acc = summary["int8"]["accuracy"]
    assert acc["available"] and "fingerprint matches" in acc["evaluated_on"]
    assert acc["delta"] >= -INT8_ACCURACY_TOLERANCE, acc
    assert summary["int8"]["size_ratio"] < 0.35
    engine = load_engine(bundle)
    assert engine.name == "onnx" and engine.metadata["backbone"]["name"] == backbone


@pytest.mark.slow
# One real LoRA bundle (text LoRA parity runs on tiny-bert above): CI stays under 20 minutes.
@pytest.mark.parametrize("backbone,source", [("efficientnet_lite0", "animal-silhouettes")])
def test_real_backbones_lora_parity(backbone: str, source: str, _module_env: None, tmp_path: Path) -> None:
    params = {"max_length": 128} if backbone == "minilm" else {}
    bundle = _fit_finetuned(EXAMPLES / source, tmp_path / backbone, backbone, "lora", **params)
    summary = export_onnx(bundle)
    assert summary["parity"]["max_abs_diff"] <= PARITY_TOLERANCE and summary["parity"]["labels_agree"] == 1.0

"""Long documents (issue 15): a text longer than the backbone's window is read as overlapping windows
whose features are pooled (max by default, or mean). Short texts are unchanged bit for bit; long
texts get windows (at most the cap, spread over the text's span); the embedding cache keys on the
windows; gradients flow through the windows, in fine-tuning and pair training; the ONNX engine
replays the windows without torch, with parity; a bundle records the setting and rebuilds it (one
window for bundles saved before windows existed); the estimator and `fit --windows` set it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_texts
from headstart import ConfigError, TransferClassifier, load
from headstart.backbones import create_backbone, rebuild_backbone
from headstart.backbones.text import DEFAULT_WINDOW_POOLING, DEFAULT_WINDOWS, HFTextBackbone
from headstart.cli.app import run
from headstart.data import from_memory
from headstart.data.long_texts import select_windows
from headstart.embedding_cache import EmbeddingCache
from headstart.features import embed_batches, extract_features
from headstart.modalities.text import TEXT, TextPreprocessor

CPU = torch.device("cpu")
SHORT = ["good day", "bad news here", "café naïve ☃", "x"]
# tiny-bert's tokenizer reads one character per token: these run to hundreds of tokens.
LONG = ["the quick brown fox jumps over the lazy dog " * 6, "pack my box with five dozen liquor jugs " * 12 + " END"]


def _tiny(windows: int, max_length: int = 32, pooling: str = DEFAULT_WINDOW_POOLING) -> torch.nn.Module:
    return create_backbone("tiny-bert", max_length=max_length, windows=windows, window_pooling=pooling)


def _normalising(windows: int, pooling: str) -> HFTextBackbone:
    """tiny-bert's weights and tokenizer, L2-normalising like MiniLM."""
    tiny = _tiny(windows)
    return HFTextBackbone(tiny.model, tiny.tokenizer, name="tiny-bert", max_length=32, normalize=True,
                          windows=windows, window_pooling=pooling, source="", license="", offline=True, build={})


def _long_texts(n_per_class: int = 12, seed: int = 0) -> tuple[list[str], list[str]]:
    """Two classes whose telling words come only after the first window (after a shared preamble)."""
    texts, labels = make_texts(n_per_class, seed)
    preamble = "received from mail server by relay host with id " * 2
    return [f"{preamble} {t} {t}" for t in texts], labels


# ------------------------------------------------------------------ features
@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_texts_that_fit_the_window_are_unchanged_bit_for_bit(pooling: str) -> None:
    one, many = _tiny(1), _tiny(8, pooling=pooling)
    assert set(many.preprocess(SHORT)) == set(one.preprocess(SHORT))  # no window weights: the one-window path
    np.testing.assert_array_equal(embed_batches(many, SHORT, device=CPU), embed_batches(one, SHORT, device=CPU))
    assert one.spec.preprocessing == {k: v for k, v in many.spec.preprocessing.items() if not k.startswith("window")}
    # Beside a long text, a short one is still its one window (only the padding differs).
    for backbone, alone in ((many, one), (_normalising(8, pooling), _normalising(1, pooling))):
        with torch.inference_mode():
            mixed = backbone.forward_features(backbone.preprocess(LONG + SHORT))[2:]
            torch.testing.assert_close(mixed, alone.forward_features(alone.preprocess(SHORT)), rtol=0, atol=1e-6)


def test_long_texts_are_read_as_windows_and_pooled() -> None:
    backbone = _tiny(64, pooling="mean")
    batch = backbone.preprocess(LONG + SHORT[:1])
    weights = batch["window_weights"]
    ids = batch["input_ids"]
    assert weights.shape == (3, ids.shape[0]) and ids.shape[1] == 32
    assert torch.allclose(weights.sum(1), torch.ones(3))
    counts = (weights > 0).sum(1).tolist()
    assert counts[0] > 4 and counts[1] > counts[0] and counts[2] == 1
    # The first window is exactly the truncated text; the last ends the text.
    first_only = _tiny(1).preprocess(LONG[1:])["input_ids"][0]
    rows = weights[1].nonzero().flatten()
    assert torch.equal(ids[rows[0]], first_only)
    assert "e n d".replace(" ", "") in backbone.tokenizer.decode(ids[rows[-1]]).replace(" ", "")
    # Consecutive windows overlap by a quarter of their content.
    overlap = backbone.window_overlap
    assert overlap == (32 - 2) // 4
    assert torch.equal(ids[rows[0]][-1 - overlap:-1], ids[rows[1]][1:1 + overlap])
    with torch.inference_mode():
        windows = backbone.window_vectors(batch)
        torch.testing.assert_close(backbone.forward_features(batch), weights @ windows)
        for maximum in (_tiny(64, pooling="max"), _normalising(64, "max")):
            own = windows if not maximum.normalize else torch.nn.functional.normalize(windows, dim=1)
            expected = torch.stack([own[weights[i] > 0].amax(0) for i in range(3)])
            torch.testing.assert_close(maximum.forward_features(batch), expected)
        mean = _normalising(64, "mean")
        torch.testing.assert_close(mean.forward_features(batch), torch.nn.functional.normalize(weights @ windows))


def test_the_cap_spreads_windows_over_the_text_and_the_span_bounds_the_work() -> None:
    rows, weights = select_windows([0] * 10 + [1] * 2, 2, 4, span=10)
    assert rows == [0, 3, 6, 9, 10, 11]  # first and last window of the long text are both read
    np.testing.assert_allclose(weights, [[0.25] * 4 + [0, 0], [0] * 4 + [0.5, 0.5]])
    assert select_windows([0] * 10, 1, 4, span=8)[0] == [0, 2, 5, 7]  # only the first 8 are considered
    capped = _tiny(8).preprocess(LONG[1:])
    assert capped["input_ids"].shape[0] == 8
    assert "end" in _tiny(8).tokenizer.decode(capped["input_ids"][-1]).replace(" ", "")
    # A text far longer than its span: windows come from its first `span` windows, and the
    # tokenizer is handed only a prefix of it.
    backbone = _tiny(2)
    huge = LONG[1] * 50
    every = backbone.tokenizer([huge], truncation=True, max_length=32, stride=backbone.window_overlap,
                               return_overflowing_tokens=True, padding=True, return_tensors="pt")["input_ids"]
    assert every.shape[0] > 4 * backbone.window_span
    backbone.tokenizer = spy = Spy(backbone.tokenizer)
    got = backbone.encode_windows([huge])["input_ids"]
    assert backbone.window_span == 8
    assert torch.equal(got, every[[0, 7]])
    assert max(spy.lengths) < len(huge) / 4


class Spy:
    """Records the lengths of the texts a tokenizer is handed; delegates everything else."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.lengths = tokenizer, []

    def __call__(self, texts: list[str], **kwargs: Any) -> Any:
        self.lengths += [len(t) for t in texts]
        return self.tokenizer(texts, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)


def test_windows_are_validated() -> None:
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ConfigError, match="windows="):
            _tiny(bad)
    with pytest.raises(ConfigError, match="window_pooling="):
        _tiny(4, pooling="sum")


def test_windows_change_what_a_long_text_gives() -> None:
    data = from_memory(LONG + SHORT, ["a", "b", "a", "b", "a", "b"])
    one = extract_features(_tiny(1), data, device="cpu")
    many = extract_features(_tiny(8), data, device="cpu")
    assert not np.allclose(one[:2], many[:2])
    np.testing.assert_array_equal(one[2:], many[2:])


def test_the_embedding_cache_keys_on_the_windows(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    data = from_memory(LONG, ["a", "b"])
    one, many, other = _tiny(1), _tiny(8), _tiny(4)
    assert len({one.identity(), many.identity(), other.identity(), _tiny(8, pooling="mean").identity()}) == 4
    first = extract_features(one, data, cache=cache, device="cpu")
    windowed = extract_features(many, data, cache=cache, device="cpu")  # not the one-window vectors again
    np.testing.assert_array_equal(windowed, extract_features(many, data, cache=None, device="cpu"))
    assert not np.allclose(first, windowed)
    assert len(cache.info()) == 2


# ------------------------------------------------------------------ training
@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_gradients_flow_through_the_windows(pooling: str) -> None:
    backbone = _tiny(6, pooling=pooling).train()
    seen: list[torch.Tensor] = []

    def keep(_module: torch.nn.Module, _inputs: object, out: torch.Tensor) -> None:
        out.retain_grad()
        seen.append(out)

    handle = backbone.model.embeddings.word_embeddings.register_forward_hook(keep)
    try:
        batch = backbone.preprocess(LONG)
        backbone.forward_features(batch).pow(2).sum().backward()
    finally:
        handle.remove()
    per_window = seen[0].grad.abs().sum(dim=(1, 2))
    assert per_window.shape[0] == batch["input_ids"].shape[0] == 12  # 6 windows each: the cap bounds memory
    if pooling == "mean":
        assert bool((per_window > 0).all())
    else:  # the max sends each feature's gradient to the window that holds it: most windows hold some
        assert int((per_window[:6] > 0).sum()) >= 3 and int((per_window[6:] > 0).sum()) >= 3
    assert all(p.grad is not None for p in backbone.parameters() if p.requires_grad)


def test_fine_tuning_trains_on_the_windows() -> None:
    texts, labels = _long_texts(8)
    assert len(_tiny(1).tokenizer(texts[0])["input_ids"]) > 3 * 32  # the telling words are past window 1
    clf = TransferClassifier(backbone="tiny-bert", strategy="full", max_length=32, epochs=1, cache=False,
                             strategy_params={"val_fraction": 0.0}, random_state=0).fit(texts, labels)
    assert clf.backbone_.windows == DEFAULT_WINDOWS
    assert clf.strategy_details_["phases"][0]["epochs_run"] >= 1
    assert clf.predict_proba(texts).shape == (len(texts), 2)


def test_contrastive_pair_training_reads_windows() -> None:
    texts, labels = _long_texts(4)
    losses: dict[int, list[float]] = {}
    for windows in (1, 4):
        seen: list[float] = []
        TransferClassifier(backbone="tiny-bert", strategy="contrastive", max_length=32, windows=windows, cache=False,
                           random_state=0, strategy_params={"steps": 2, "pair_max_length": 16}).fit(
            texts, labels, callbacks={"on_batch_end": [lambda e, seen=seen: seen.append(e["loss"])]})
        losses[windows] = seen
    assert len(losses[4]) == 2 and losses[4] != losses[1]  # the same pairs, read as windows of 16 tokens


def test_contrastive_pair_training_reads_at_most_pair_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long text costs pair training at most ``pair_windows`` windows; the probe reads them all."""
    from headstart.backbones.text import HFTextBackbone

    texts, labels = _long_texts(4)
    read: list[tuple[int, int, int]] = []  # (windows cap, texts, windows read) per call
    original = HFTextBackbone.encode_windows

    def counting(self: HFTextBackbone, items: list[str]) -> dict:
        batch = original(self, items)
        read.append((self.windows, len(items), int(batch["input_ids"].shape[0])))
        return batch

    monkeypatch.setattr(HFTextBackbone, "encode_windows", counting)
    clf = TransferClassifier(backbone="tiny-bert", strategy="contrastive", max_length=32, windows=8, cache=False,
                             random_state=0, strategy_params={"steps": 2, "pair_max_length": 16,
                                                              "pair_windows": 2}).fit(texts, labels)
    training = [(texts, n) for cap, texts, n in read if cap == 2]
    assert len(training) == 2 and all(texts < n <= 2 * texts for texts, n in training)  # 2 windows of each
    assert any(n > 2 * texts for cap, texts, n in read if cap == 8)  # the probe reads more of them
    assert clf.backbone_.windows == 8 and clf.backbone_.max_length == 32  # restored for the probe and inference


# ------------------------------------------------------------------ bundles and ONNX
@pytest.fixture(scope="module")
def long_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-bert (32-token windows) probe bundle on long texts, exported to ONNX."""
    from headstart.serving.export import export_onnx

    root = tmp_path_factory.mktemp("long-bundle")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADSTART_CACHE", str(root / "cache"))
        mp.setenv("HEADSTART_NO_TRACK", "1")
        texts, labels = _long_texts(10)
        texts += LONG + SHORT
        labels += ["pos", "neg"] * 3
        pd.DataFrame({"text": texts, "label": labels}).to_csv(root / "long.csv", index=False)
        clf = TransferClassifier(backbone="tiny-bert", max_length=32, C=1.0, hybrid="off", random_state=0).fit(
            texts, labels)
        bundle = clf.save(root / "bundle", extra={"loader": {"path": str(root / "long.csv"), "label_col": "label"}})
        summary = export_onnx(bundle, parity_items=40)
    assert summary["parity"]["max_abs_diff"] <= 1e-4
    return bundle


def test_a_bundle_records_and_rebuilds_its_windows(long_bundle: Path) -> None:
    manifest = json.loads((long_bundle / "headstart.json").read_text())
    assert manifest["backbone"]["build"]["kwargs"]["windows"] == DEFAULT_WINDOWS
    assert manifest["preprocessing"]["windows"] == DEFAULT_WINDOWS
    assert manifest["onnx"]["preprocessing"]["windows"]["max"] == DEFAULT_WINDOWS
    assert load(long_bundle).backbone_.windows == DEFAULT_WINDOWS


def test_the_estimator_sets_validates_and_saves_its_windows(tmp_path: Path) -> None:
    texts, labels = _long_texts(4)
    clf = TransferClassifier(backbone="tiny-bert", max_length=32, windows=3, C=1.0, hybrid="off", cache=False,
                             random_state=0).fit(texts, labels)
    assert clf.backbone_.windows == 3 and clf.get_params()["windows"] == 3
    loaded = load(clf.save(tmp_path / "b"))
    assert loaded.backbone_.windows == 3
    np.testing.assert_allclose(loaded.predict_proba(texts), clf.predict_proba(texts), atol=1e-6)
    for bad in (0, "3", True):
        with pytest.raises(ConfigError, match="windows="):
            TransferClassifier(backbone="tiny-bert", windows=bad).fit(texts, labels)


def test_the_fit_command_passes_windows_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import headstart.workflow

    given: dict[str, Any] = {}

    def fake_fit(data: Any, **kwargs: Any) -> Any:
        given.update(kwargs)
        return SimpleNamespace(bundle=None)  # as under `accelerate launch`: nothing to print

    monkeypatch.setattr(headstart.workflow, "fit", fake_fit)
    (tmp_path / "t.csv").write_text("text,label\na,x\nb,y\n")
    assert run(["fit", str(tmp_path / "t.csv"), "--windows", "2", "-q"]) == 0
    assert given["windows"] == 2  # headstart.fit hands it to TransferClassifier(windows=2)
    assert run(["fit", str(tmp_path / "t.csv"), "--windows", "0", "-q"]) != 0


def test_a_bundle_saved_before_windows_rebuilds_with_one_window() -> None:
    old = {"name": "tiny-bert", "kwargs": {"seed": 0, "max_length": 32, "pooling": "mean"}}
    assert rebuild_backbone(old, {"kind": "hf-tokenizer", "max_length": 32}).windows == 1
    new = {"name": "tiny-bert", "kwargs": {**old["kwargs"], "windows": 5}}
    assert rebuild_backbone(new, {"kind": "hf-tokenizer", "windows": 5}).windows == 5


def test_onnx_replays_the_windows_token_for_token(tmp_path: Path) -> None:
    backbone = _tiny(3)
    texts = LONG + SHORT + [LONG[1] * 50]  # the last runs far past its span: cut in both engines
    expected = backbone.encode_windows(texts)
    description = TEXT.export_inputs(backbone, SHORT[:2], tmp_path).preprocessing
    assert description["windows"]["span"] == 12 and description["truncation"]["stride"] == backbone.window_overlap
    replayed = TextPreprocessor(description, tmp_path)(texts)
    assert set(replayed) == set(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(replayed[name], values.numpy())


def test_onnx_engine_matches_torch_on_long_texts_without_torch(long_bundle: Path) -> None:
    texts = LONG + ["x", "the lazy dog " * 40] + _long_texts(3, seed=5)[0]
    reference = load(long_bundle).predict_proba(texts)
    code = f"""
import json, sys
import headstart.serving.engine as e
engine = e.load_engine({str(long_bundle)!r}, "onnx", batch_size=3)
print(json.dumps(engine.predict_proba({texts!r}).tolist()))
wide = e.load_engine({str(long_bundle)!r}, "onnx", batch_size=64)  # over 64 windows: run in parts
print(json.dumps(wide.predict_proba({texts!r}).tolist()))
assert "torch" not in sys.modules and "transformers" not in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    small, wide = (np.array(json.loads(line)) for line in done.stdout.splitlines())
    np.testing.assert_allclose(small, reference, atol=1e-4)
    np.testing.assert_allclose(wide, reference, atol=1e-4)
    windows = load(long_bundle).backbone_.preprocess(texts)["input_ids"].shape[0]
    assert windows > 64  # the graph takes more windows than the torch encoder's chunk

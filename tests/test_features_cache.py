"""Feature extraction and the embedding cache: hits, misses, increments, corruption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_texts
from headstart.backbones import create_backbone
from headstart.data import from_memory
from headstart.embedding_cache import EmbeddingCache, default_cache_dir
from headstart.errors import ConfigError
from headstart.features import embed_batches, extract_features


class CountingBackbone:
    """Wraps a backbone's forward to count how many items it really computes."""

    def __init__(self, backbone) -> None:
        self.backbone = backbone
        self.computed = 0
        original = backbone.forward_features

        def counted(batch):
            self.computed += int(batch["input_ids"].shape[0])
            return original(batch)

        backbone.forward_features = counted


@pytest.fixture
def counting() -> CountingBackbone:
    return CountingBackbone(create_backbone("tiny-bert"))


def test_features_equal_an_uncached_plain_pass(tmp_path: Path) -> None:
    backbone = create_backbone("tiny-bert")
    texts = make_texts(10)[0]
    feats = extract_features(backbone, from_memory(texts), cache=EmbeddingCache(tmp_path), batch_size=4)
    with torch.inference_mode():
        plain = backbone.forward_features(backbone.preprocess(texts)).numpy()
    np.testing.assert_allclose(feats, plain, atol=1e-5)
    # Order of the batches (sorted by length inside) never changes the output order.
    np.testing.assert_allclose(embed_batches(backbone, texts, batch_size=3), plain, atol=1e-5)


def test_second_run_computes_nothing_and_ten_new_items_compute_ten(tmp_path: Path, counting: CountingBackbone) -> None:
    cache = EmbeddingCache(tmp_path)
    texts = make_texts(20)[0]
    first = extract_features(counting.backbone, from_memory(texts), cache=cache, batch_size=8)
    assert counting.computed == 40
    again = extract_features(counting.backbone, from_memory(texts), cache=cache, batch_size=8)
    assert counting.computed == 40
    np.testing.assert_array_equal(first, again)
    more = texts + [f"brand new text number {i}" for i in range(10)]
    extract_features(counting.backbone, from_memory(more), cache=cache, batch_size=8)
    assert counting.computed == 50


def test_duplicates_are_computed_once(tmp_path: Path, counting: CountingBackbone) -> None:
    feats = extract_features(counting.backbone, from_memory(["same", "same", "other"]), cache=EmbeddingCache(tmp_path))
    assert counting.computed == 2
    np.testing.assert_array_equal(feats[0], feats[1])


def test_other_weights_or_preprocessing_never_reuse_vectors(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    texts = from_memory(make_texts(5)[0])
    a = extract_features(create_backbone("tiny-bert", seed=0), texts, cache=cache)
    b = extract_features(create_backbone("tiny-bert", seed=1), texts, cache=cache)
    c = extract_features(create_backbone("tiny-bert", seed=0, max_length=8), texts, cache=cache)
    assert not np.allclose(a, b) and not np.allclose(a, c)
    assert len(cache.info()) == 3


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_corrupt_shard_is_detected_and_recomputed(tmp_path: Path, counting: CountingBackbone, damage: str) -> None:
    cache = EmbeddingCache(tmp_path)
    texts = from_memory(make_texts(6)[0])
    good = extract_features(counting.backbone, texts, cache=cache)
    (shard,) = list(tmp_path.rglob("shard-*.safetensors"))
    data = bytearray(shard.read_bytes())
    if damage == "flip":
        data[-5] ^= 0xFF  # inside the embeddings: parses fine, fails the checksum
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray(b"not a safetensors file")
    shard.write_bytes(bytes(data))
    again = extract_features(counting.backbone, texts, cache=cache)
    assert counting.computed == 24  # all recomputed: the damaged vectors were not trusted
    np.testing.assert_allclose(again, good, atol=1e-6)


def test_interrupted_extraction_keeps_finished_batches(tmp_path: Path) -> None:
    backbone = create_backbone("tiny-bert")
    cache = EmbeddingCache(tmp_path)
    calls = {"n": 0}
    original = backbone.forward_features

    def failing(batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(batch)

    backbone.forward_features = failing
    texts = from_memory([f"text {i:03d}" for i in range(40)])
    with pytest.raises(KeyboardInterrupt):
        extract_features(backbone, texts, cache=cache, batch_size=8)
    assert len(cache.lookup(backbone.identity(), texts.item_hashes())) == 16
    assert not list(tmp_path.rglob("*.tmp"))  # no half-written shard left behind


def test_info_clear_and_compaction(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    backbone = create_backbone("tiny-bert")
    for i in range(34):  # one shard per call; compaction merges past 32
        extract_features(backbone, from_memory([f"item {i}"]), cache=cache)
    (row,) = cache.info()
    assert row["backbone"] == "tiny-bert" and row["items"] == 34 and row["shards"] <= 3
    assert cache.clear("someone-else") == 0
    assert cache.clear("tiny-bert") == 1 and cache.info() == []


def test_default_location_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv("HEADSTART_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "headstart"


def test_modality_mismatch_and_bad_batch_size() -> None:
    with pytest.raises(ConfigError, match="takes text"):
        extract_features(create_backbone("tiny-bert"), from_memory([np.zeros((8, 8), np.uint8)]))
    with pytest.raises(ConfigError, match="batch_size"):
        extract_features(create_backbone("tiny-bert"), from_memory(["a"]), batch_size=0)

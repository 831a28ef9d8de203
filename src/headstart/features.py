"""Batched feature extraction under ``torch.inference_mode``, through the embedding cache."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from headstart.backbones.base import Backbone, move_to
from headstart.data.dataset import Dataset
from headstart.embedding_cache import EmbeddingCache
from headstart.errors import ConfigError
from headstart.progress import NullProgress, ProgressReporter

logger = logging.getLogger(__name__)

_FLUSH_EVERY_SECONDS = 30.0  # an interrupted extraction keeps what it computed up to here


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA when present, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"device={device!r} is not a device; use auto, cpu, cuda or cuda:N.") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available here; use --device cpu.")
    return resolved


def embed_batches(
    backbone: Backbone,
    items: Sequence[Any],
    locators: Sequence[str] | None = None,
    *,
    batch_size: int = 32,
    device: torch.device | None = None,
    on_batch: Any = None,
) -> np.ndarray:
    """Features for items, in order, with no cache. ``on_batch(indices, vectors)`` sees each batch."""
    device = device or resolve_device()
    locators = list(locators) if locators is not None else [""] * len(items)
    order = sorted(range(len(items)), key=lambda i: backbone.sort_key(items[i]))
    out = np.zeros((len(items), backbone.spec.feature_dim), dtype=np.float32)
    was_training = backbone.training
    backbone.eval().to(device)
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                batch = backbone.preprocess([items[i] for i in idx], [locators[i] for i in idx])
                vectors = backbone.forward_features(move_to(batch, device)).float().cpu().numpy()
                out[idx] = vectors
                if on_batch is not None:
                    on_batch(idx, vectors)
    finally:
        backbone.train(was_training)
    return out


def extract_features(
    backbone: Backbone,
    dataset: Dataset,
    *,
    cache: EmbeddingCache | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    progress: ProgressReporter | None = None,
) -> np.ndarray:
    """Feature vectors for every item of ``dataset``, shape ``(len(dataset), feature_dim)``.

    Items already in the cache (same backbone weights, preprocessing and item content) are
    read, not recomputed; identical items are computed once; new vectors are written back
    as extraction goes, so an interrupted run keeps its work.

    Example:
        >>> feats = extract_features(create_backbone("minilm"), load_data("t.csv"))  # doctest: +SKIP
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}; it must be at least 1.")
    if dataset.modality != backbone.spec.modality:
        raise ConfigError(
            f"backbone {backbone.spec.name!r} takes {backbone.spec.modality} but {dataset.source} "
            f"holds {dataset.modality}; choose a {dataset.modality} backbone (see `headstart backbones`)."
        )
    progress = progress or NullProgress()
    hashes = dataset.item_hashes()
    identity = backbone.identity() if cache is not None else ""
    found = cache.lookup(identity, hashes) if cache is not None else {}
    first_index: dict[str, int] = {}
    for i, h in enumerate(hashes):
        if h not in found:
            first_index.setdefault(h, i)
    todo = list(first_index.values())
    logger.info("%s: %d items, %d cached, %d to compute", backbone.spec.name, len(hashes),
                len(hashes) - len(todo), len(todo))
    if todo:
        pending_keys: list[str] = []
        pending_vecs: list[np.ndarray] = []
        last_flush = time.monotonic()
        describe = {"backbone": backbone.spec.name, "feature_dim": backbone.spec.feature_dim,
                    "preprocessing": backbone.spec.preprocessing}

        def flush() -> None:
            nonlocal last_flush
            if cache is not None and pending_keys:
                cache.store(identity, list(pending_keys), np.stack(pending_vecs), describe)
            pending_keys.clear()
            pending_vecs.clear()
            last_flush = time.monotonic()

        def on_batch(idx: list[int], vectors: np.ndarray) -> None:
            for j, vec in zip(idx, vectors):
                key = hashes[todo[j]]
                found[key] = vec
                pending_keys.append(key)
                pending_vecs.append(vec)
            progress.advance(len(idx))
            if time.monotonic() - last_flush > _FLUSH_EVERY_SECONDS:
                flush()

        progress.start(f"features · {backbone.spec.name}", len(todo))
        try:
            embed_batches(
                backbone,
                [dataset.items[i] for i in todo],
                [dataset.locators[i] for i in todo],
                batch_size=batch_size,
                device=resolve_device(device),
                on_batch=on_batch,
            )
        finally:
            flush()
            progress.finish()
    return np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)

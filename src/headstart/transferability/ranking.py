"""``headstart rank``: score candidate backbones on your labels without fine-tuning any of them.

For every candidate the (cached) features of the labeled training items are extracted once and
scored: LogME, the shrinkage H-score, NCE and LEEP (when the backbone has its source classifier,
e.g. ImageNet's), cross-validated kNN and linear-probe accuracy. Next to them, what a user
weighs in practice: parameters, feature dimension, measured latency per item on this machine,
input size, license, offline availability. The scores are combined (a weighted mean of their
z-scores across the candidates) into one recommendation with a one-line reason.

A randomly initialised copy of the default architecture runs as a *control*: what the
architecture alone gives. It is never recommended; a candidate that does not clearly beat it
transfers nothing useful to this data.

Example:
    >>> from headstart.transferability import rank
    >>> table = rank("photos/", candidates="offline")        # doctest: +SKIP
    >>> table.recommended, table.reason                      # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from headstart.data import Dataset, load_data
from headstart.errors import BackboneError, ConfigError
from headstart.progress import NullProgress, ProgressReporter
from headstart.transferability import probes as P
from headstart.transferability import scores as S

logger = logging.getLogger(__name__)

CONTROL_PREFIX = "random:"
# How much each score counts in the combined recommendation (renormalised over the scores
# every candidate has). The linear probe's cross-validated accuracy is a direct, if noisy,
# measurement of what `fit` starts from; LogME and the H-score are the best-validated
# closed-form estimates (You et al. 2021; Ibrahim et al. 2022); kNN sees local structure;
# LEEP and NCE read the source task's classifier and exist only for backbones that have one.
WEIGHTS = {"linear_probe": 0.35, "logme": 0.25, "knn": 0.15, "h_score": 0.15, "leep": 0.05, "nce": 0.05}
SCORE_NAMES = {"linear_probe": "probe acc", "knn": "kNN acc", "logme": "LogME", "h_score": "H-score",
               "leep": "LEEP", "nce": "NCE"}
LATENCY_ITEMS = 8
FINETUNE_EPOCHS = 5        # for the brute-force estimate: epochs a fine-tuning run takes here
BACKWARD_FACTOR = 3.0      # forward + backward ≈ 3 forwards


@dataclass
class Candidate:
    """One candidate's scores and practical facts (``error`` set when it could not run)."""

    name: str
    control: bool = False
    available: bool = True
    error: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    combined: float | None = None
    n_params: int | None = None
    feature_dim: int | None = None
    input_size: str | None = None
    latency_ms: float | None = None
    license: str | None = None
    offline: bool | None = None
    seconds: float = 0.0
    extract_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RankReport:
    """The ranking: candidates best first (controls and failures last), the pick and why."""

    candidates: list[Candidate]
    recommended: str | None
    reason: str
    data: dict[str, Any]
    seconds: float
    brute_force_estimate_seconds: float | None
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"format": "headstart-rank-v1", "recommended": self.recommended, "reason": self.reason,
                "data": self.data, "seconds": self.seconds,
                "brute_force_estimate_seconds": self.brute_force_estimate_seconds, "settings": self.settings,
                "weights": WEIGHTS, "candidates": [c.to_dict() for c in self.candidates]}


def resolve_candidates(spec: str | Sequence[str], modality: str) -> list[str]:
    """``offline`` (every installed backbone for the modality), ``all`` (every registered one,
    installed or not) or names (comma-separated or a list); ``random:NAME`` adds a control.
    ``offline`` and ``all`` include the control ``random:<default backbone>``."""
    from headstart.backbones import list_backbones
    from headstart.modalities import get_modality

    if isinstance(spec, str) and spec.strip().lower() in ("offline", "all"):
        which = spec.strip().lower()
        names = [b.name for b in list_backbones() if b.modality == modality and (which == "all" or b.offline)]
        return [*names, CONTROL_PREFIX + get_modality(modality).default_backbone]
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n and n.strip()]
    if not names:
        raise ConfigError("no candidates given; pass names separated by commas, or 'offline' / 'all'.")
    if len(set(names)) != len(names):
        raise ConfigError(f"candidate listed twice in {', '.join(names)}.")
    return names


def _stratified_cap(dataset: Dataset, max_items: int, seed: int) -> Dataset:
    if len(dataset) <= max_items:
        return dataset
    rng = np.random.default_rng(seed)
    labels = np.array([str(v) for v in dataset.labels])
    keep: list[int] = []
    for value in sorted(set(labels)):
        idx = np.flatnonzero(labels == value)
        n = max(2, round(len(idx) * max_items / len(dataset)))
        keep += rng.choice(idx, min(n, len(idx)), replace=False).tolist()
    return dataset.subset(sorted(keep))


def _latency_ms(backbone: Any, dataset: Dataset, device: Any) -> float:
    """Median milliseconds for one item through the network (batch of 1, no cache)."""
    from headstart.features import embed_batches

    n = min(LATENCY_ITEMS, len(dataset))
    embed_batches(backbone, [dataset.items[0]], [dataset.locators[0]], batch_size=1, device=device)  # warm-up
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        embed_batches(backbone, [dataset.items[i]], [dataset.locators[i]], batch_size=1, device=device)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def score_features(features: np.ndarray, y: np.ndarray, source_logits: np.ndarray | None = None,
                   *, seed: int = 0) -> dict[str, float]:
    """Every score for one candidate's features (and source logits, when it has a source head)."""
    out = {"linear_probe": P.linear_probe_accuracy(features, y, seed=seed),
           "knn": P.knn_accuracy(features, y, seed=seed),
           "logme": S.logme(features, y),
           "h_score": S.h_score(features, y)}
    if source_logits is not None:
        out["leep"] = S.leep(_softmax(source_logits.astype(np.float64)), y)
        out["nce"] = S.nce(source_logits.argmax(axis=1), y)
    return {k: float(v) for k, v in out.items()}


def combine(candidates: list[Candidate]) -> None:
    """Set ``combined`` on the scored candidates: the weighted mean of each score's z-score across
    the non-control candidates (scores some candidate lacks are left out for all of them; a
    control is placed on the same scale with the scores it has)."""
    scored = [c for c in candidates if c.available and c.scores]
    peers = [c for c in scored if not c.control] or scored
    if not peers:
        return
    shared = [k for k in WEIGHTS if all(k in c.scores for c in peers)]
    stats = {}
    for k in shared:
        values = np.array([c.scores[k] for c in peers], dtype=np.float64)
        sd = float(values.std())
        stats[k] = (float(values.mean()), sd if sd > 1e-12 else 1.0)
    for c in scored:
        keys = [k for k in shared if k in c.scores]  # a control has no source head: no LEEP / NCE
        if not keys or (not c.control and len(keys) < len(shared)):
            continue
        weight = sum(WEIGHTS[k] for k in keys)
        c.combined = float(sum(WEIGHTS[k] * (c.scores[k] - stats[k][0]) / stats[k][1] for k in keys) / weight)


def _reason(best: Candidate, others: list[Candidate], control: Candidate | None) -> str:
    ranked_by = {k: sorted((c for c in [*others, best] if k in c.scores), key=lambda c: -c.scores[k])
                 for k in ("linear_probe", "logme")}
    places = [f"{SCORE_NAMES[k]} #{[c.name for c in v].index(best.name) + 1} of {len(v)}"
              for k, v in ranked_by.items() if best.name in [c.name for c in v]]
    text = (f"{best.name}: best combined score ({', '.join(places)}; probe accuracy "
            f"{best.scores['linear_probe']:.3f})")
    faster = [c for c in others if c.latency_ms and best.latency_ms and c.latency_ms < 0.67 * best.latency_ms
              and c.scores.get("linear_probe", 0) >= best.scores["linear_probe"] - 0.01]
    if faster:
        f = min(faster, key=lambda c: c.latency_ms)
        text += (f"; {f.name} is {best.latency_ms / f.latency_ms:.1f}× faster per item for "
                 f"{(f.scores['linear_probe'] - best.scores['linear_probe']) * 100:+.1f} points of probe accuracy")
    if control is not None and control.scores:
        gap = best.scores["linear_probe"] - control.scores["linear_probe"]
        text += (f"; {gap * 100:+.1f} points over random weights" if gap >= 0.02 else
                 f"; WARNING: only {gap * 100:+.1f} points over the same network with random weights, "
                 "pretraining transfers little here")
    return text


def rank(
    data: str | Path | Dataset,
    candidates: str | Sequence[str] = "offline",
    *,
    text_col: str | None = None,
    image_col: str | None = None,
    columns: Mapping[str, str] | None = None,
    label_col: str = "label",
    split_col: str | None = None,
    max_items: int = 2000,
    cache: bool | str | Path = True,
    batch_size: int = 32,
    device: str | None = "auto",
    seed: int = 0,
    progress: ProgressReporter | None = None,
    on_candidate: Any = None,
) -> RankReport:
    """Rank candidate backbones for labeled data.

    Only training (and validation) items are scored: a ``test`` split is never looked at.
    At most ``max_items`` items (stratified, seeded) are used.

    Args:
        data: a data folder / table, or a loaded :class:`Dataset`.
        candidates: ``"offline"``, ``"all"``, or names (``"efficientnet_lite0,mobilenet_v2"``);
            ``random:NAME`` adds a randomly initialised control.
        on_candidate: called with each :class:`Candidate` as it finishes (the CLI prints them).

    Returns:
        A :class:`RankReport`, candidates sorted best first.
    """
    from headstart.backbones import create_backbone
    from headstart.embedding_cache import EmbeddingCache
    from headstart.evaluation.baselines import reinitialised
    from headstart.features import extract_features, resolve_device

    started = time.perf_counter()
    if max_items < 20:
        raise ConfigError(f"max_items={max_items}; give at least 20 so cross-validation has something to do.")
    dataset = data if isinstance(data, Dataset) else load_data(
        data, text_col=text_col, image_col=image_col, columns=columns, label_col=label_col, split_col=split_col)
    dataset.require_labels("ranking backbones")
    if dataset.splits is not None:
        keep = [i for i, s in enumerate(dataset.splits) if s != "test"]
        dataset = dataset.subset(keep)
    pool = _stratified_cap(dataset, max_items, seed)
    y, classes = S.labels_to_int(pool.labels)
    if len(classes) < 2:
        raise ConfigError(f"{dataset.source}: ranking needs at least 2 classes, found {len(classes)}.")
    names = resolve_candidates(candidates, dataset.modality)
    store = None if cache is False else EmbeddingCache(None if cache is True else cache)
    dev = resolve_device(device)
    results: list[Candidate] = []
    pretrained: dict[str, Any] = {}
    for name in names:
        t0 = time.perf_counter()
        control = name.startswith(CONTROL_PREFIX)
        base_name = name[len(CONTROL_PREFIX):] if control else name
        cand = Candidate(name=name, control=control)
        try:
            backbone = pretrained.get(base_name) or create_backbone(base_name)
            if backbone.spec.modality != dataset.modality:
                raise BackboneError(f"{base_name} takes {backbone.spec.modality}, the data is {dataset.modality}")
            if control:
                backbone = reinitialised(backbone, seed)
            else:
                pretrained[base_name] = backbone
            spec = backbone.spec
            cand.n_params, cand.feature_dim, cand.license = spec.n_params, spec.feature_dim, spec.license
            cand.offline = spec.offline
            pre = spec.preprocessing
            cand.input_size = ("×".join(str(v) for v in pre["input_size"][1:]) if "input_size" in pre
                               else f"{pre.get('max_length', '?')} tokens")
            t1 = time.perf_counter()
            features = extract_features(backbone, pool, cache=store, batch_size=batch_size, device=dev,
                                        progress=progress or NullProgress())
            cand.extract_seconds = time.perf_counter() - t1
            cand.latency_ms = _latency_ms(backbone, pool, dev)
            logits = None if control else backbone.source_head(features)
            cand.scores = score_features(features, y, logits, seed=seed)
        except (BackboneError, OSError) as e:
            cand.available = False
            cand.error = str(e).split("\n")[0]
            logger.warning("%s: skipped (%s)", name, cand.error)
        cand.seconds = time.perf_counter() - t0
        results.append(cand)
        if on_candidate is not None:
            on_candidate(cand)
    combine(results)
    real = [c for c in results if c.available and not c.control and c.combined is not None]
    control_c = next((c for c in results if c.control and c.available and c.scores), None)
    results.sort(key=lambda c: (not c.available, c.control, -(c.combined if c.combined is not None else -math.inf)))
    if real:
        best = max(real, key=lambda c: c.combined)
        reason = _reason(best, [c for c in real if c is not best], control_c)
        recommended = best.name
    else:
        recommended, reason = None, "no candidate could be scored: " + "; ".join(
            f"{c.name}: {c.error}" for c in results if c.error)
    estimate = None
    timed = [c for c in results if c.available and c.latency_ms and not c.control]
    if timed:
        estimate = sum(c.latency_ms / 1000 * len(dataset) * BACKWARD_FACTOR * FINETUNE_EPOCHS for c in timed)
    return RankReport(candidates=results, recommended=recommended, reason=reason,
                      data={"source": dataset.source, "modality": dataset.modality, "n_items": len(dataset),
                            "n_scored": len(pool), "classes": [str(c) for c in classes],
                            "fingerprint": dataset.fingerprint()},
                      seconds=time.perf_counter() - started, brute_force_estimate_seconds=estimate,
                      settings={"candidates": names, "max_items": max_items, "seed": seed,
                                "finetune_epochs_assumed": FINETUNE_EPOCHS})

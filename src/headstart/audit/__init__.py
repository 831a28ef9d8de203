"""``headstart audit``: find what quietly ruins small-data models before training on it.

Each check is a small registered unit (see :mod:`headstart.audit.base`): missing labels,
unreadable files, empty texts, image modes and sizes, exact and near duplicates, duplicates
with conflicting labels, leakage across splits (duplicates, groups, time), class balance,
likely label errors (cleanlab on out-of-fold probe probabilities), outliers and shift between
splits. The checks that need no model (``FAST_CHECKS``) also run before every ``headstart fit``.

Example:
    >>> from headstart.audit import audit
    >>> report = audit("emails.csv", text_col="text")          # doctest: +SKIP
    >>> report.severe, [c.name for c in report.checks if c.severity != "ok"]   # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from headstart.audit import balance, duplicates, integrity, model_checks  # noqa: F401  (register the checks)
from headstart.audit.base import (
    CHECKS,
    SEVERITY_RANK,
    AuditContext,
    CheckResult,
    Finding,
    Outcome,
    register,
    run_check,
)
from headstart.audit.neighbors import normalise
from headstart.data import Dataset, load_data
from headstart.errors import ConfigError
from headstart.modalities import get_modality
from headstart.progress import NullProgress, ProgressReporter

__all__ = ["CHECKS", "FAST_CHECKS", "AuditReport", "CheckResult", "Finding", "Outcome", "audit",
           "audit_dataset", "preflight", "register"]

FAST_CHECKS = ("missing-labels", "empty-texts", "exact-duplicates", "conflicting-labels", "leakage",
               "group-leakage", "time-leakage", "class-balance")
DEFAULT_NEAR_THRESHOLD = 0.97


@dataclass
class AuditReport:
    """Every check's result, plus what was audited. ``severe`` decides the exit code."""

    data: dict[str, Any]
    backbone: dict[str, Any] | None
    checks: list[CheckResult]
    settings: dict[str, Any]
    seconds: float
    items: list[dict[str, Any]] = field(default_factory=list)
    dataset: Dataset | None = field(default=None, repr=False, compare=False)
    embedding_seconds: float = 0.0

    @property
    def severe(self) -> bool:
        return any(c.severity == "severe" for c in self.checks)

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def rows(self) -> list[dict[str, Any]]:
        """One row per flagged item per finding: check, finding number, item, locator, label, split, score."""
        out = []
        for c in self.checks:
            for n, f in enumerate(c.findings):
                for i in f.items:
                    it = self.items[i]
                    out.append({"check": c.name, "severity": c.severity, "finding": n, "index": i,
                                "locator": it["locator"], "label": it["label"], "split": it["split"],
                                "score": f.score, "detail": f.detail})
                for loc in f.locators:
                    out.append({"check": c.name, "severity": c.severity, "finding": n, "index": None,
                                "locator": loc, "label": None, "split": None, "score": f.score,
                                "detail": f.detail})
        return out

    def previews(self) -> dict[str, dict[str, Any]]:
        """Thumbnails / snippets of the items the HTML page shows (item index as a string → preview)."""
        from headstart.report.audit_page import MAX_FINDINGS

        if self.dataset is None:
            return {}
        shown = sorted({i for c in self.checks for f in c.findings[:MAX_FINDINGS] for i in f.items[:6]})
        ds = self.dataset
        modality = get_modality(ds.modality)
        return {str(i): modality.preview(ds.items[i], ds.locators[i]) for i in shown}

    def write_html(self, path: str | Path) -> Path:
        """Write the self-contained audit page (summary, every check, flagged items with previews)."""
        from headstart.report.audit_page import write_audit_html

        return write_audit_html({**self.to_dict(), "items": self.items}, path, self.previews())

    def to_dict(self) -> dict[str, Any]:
        checks = sorted(self.checks, key=lambda c: (SEVERITY_RANK[c.severity], list(CHECKS).index(c.name)))
        return {"format": "headstart-audit-v1", "severe": self.severe, "data": self.data,
                "backbone": self.backbone, "settings": self.settings, "seconds": self.seconds,
                "embedding_seconds": self.embedding_seconds,
                "summary": [{"check": c.name, "title": c.title, "severity": c.severity, "count": c.count,
                             "summary": c.summary, "seconds": round(c.seconds, 3)} for c in checks],
                "checks": [c.to_dict() for c in checks], "rows": self.rows()}


def audit(
    data: str | Path | Dataset,
    *,
    backbone: str | None = "default",
    text_col: str | None = None,
    image_col: str | None = None,
    columns: Mapping[str, str] | None = None,
    label_col: str | None = "label",
    split_col: str | None = None,
    group_col: str | None = None,
    time_col: str | None = None,
    checks: Sequence[str] | None = None,
    near_threshold: float = DEFAULT_NEAR_THRESHOLD,
    cache: bool | str | Path = True,
    batch_size: int = 32,
    device: str | None = "auto",
    seed: int = 0,
    progress: ProgressReporter | None = None,
) -> AuditReport:
    """Audit a data folder/table (or a loaded :class:`Dataset`).

    Rows that cannot be loaded (no label, empty text, missing image file) are reported, not
    raised. ``backbone="default"`` embeds with the modality's default backbone (cached);
    ``None`` runs only the checks that need no model. ``text_col`` / ``image_col`` / ``columns``
    (``{modality: column}``, any modality's) name the items' column, as for
    :func:`headstart.data.load_data`.
    """
    problems: list[dict[str, Any]] = []
    extra: dict[str, str] = {}
    if group_col:
        extra[group_col] = "--group-col"
    if time_col:
        extra[time_col] = "--time-col"
    if isinstance(data, Dataset):
        dataset = data
        missing = [c for c in (group_col, time_col) if c and c not in dataset.slices]
        if missing:
            raise ConfigError(f"the dataset has no column {missing[0]!r}; load it with that column as a slice.")
    else:
        dataset = load_data(data, text_col=text_col, image_col=image_col, columns=columns,
                            label_col=label_col, split_col=split_col, require_labels=False, extra_cols=extra,
                            problems=problems)
    groups = dataset.slices.get(group_col) if group_col else None
    times = dataset.slices.get(time_col) if time_col else None
    return audit_dataset(dataset, problems=problems, groups=groups, times=times, backbone=backbone,
                         checks=checks, near_threshold=near_threshold, cache=cache, batch_size=batch_size,
                         device=device, seed=seed, progress=progress)


def audit_dataset(
    dataset: Dataset,
    *,
    problems: list[dict[str, Any]] | None = None,
    groups: list[Any] | None = None,
    times: list[Any] | None = None,
    backbone: str | None = "default",
    checks: Sequence[str] | None = None,
    near_threshold: float = DEFAULT_NEAR_THRESHOLD,
    cache: bool | str | Path = True,
    batch_size: int = 32,
    device: str | None = "auto",
    seed: int = 0,
    progress: ProgressReporter | None = None,
    pixel_search: bool = True,
    features: np.ndarray | None = None,
) -> AuditReport:
    """Run the checks on a loaded dataset (the library entry point ``headstart fit`` uses).

    ``features`` (one row per item) replaces the backbone: bring your own embeddings.
    """
    start = time.perf_counter()
    if not 0 < near_threshold <= 1:
        raise ConfigError(f"near_threshold={near_threshold}; give a cosine similarity in (0, 1].")
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check {unknown[0]!r}; choose from {', '.join(CHECKS)}.")
    ctx = AuditContext(data=dataset, problems=list(problems or []), groups=groups, times=times,
                       near_threshold=near_threshold, seed=seed, pixel_search=pixel_search)
    wants_features = any(CHECKS[n].needs_features or n in ("near-duplicates", "leakage") for n in names)
    ctx.readable = (integrity.readable(ctx) if wants_features and backbone is not None and features is None
                    else np.arange(len(dataset)))
    spec = None
    if features is not None:
        if len(features) != len(dataset):
            raise ConfigError(f"features has {len(features)} rows for {len(dataset)} items; give one row per item.")
        ctx.readable = np.arange(len(dataset))
        ctx.features = normalise(np.asarray(features, dtype=np.float32))
        spec = {"name": "given features", "feature_dim": int(ctx.features.shape[1])}
    elif backbone is None:
        ctx.features_skipped = "no backbone (--backbone none): embedding checks skipped"
    elif wants_features and len(ctx.readable) < 2:
        ctx.features_skipped = "fewer than 2 readable items"
    elif wants_features:
        embed_start = time.perf_counter()
        spec, ctx.features = _embed(dataset, ctx.readable, backbone, cache=cache, batch_size=batch_size,
                                    device=device, progress=progress)
    embedding_seconds = time.perf_counter() - embed_start if spec is not None and features is None else 0.0
    results = [run_check(CHECKS[n], ctx) for n in names]
    items = [{"locator": loc, "label": None if dataset.labels is None else _plain(dataset.labels[i]),
              "split": None if dataset.splits is None else dataset.splits[i]}
             for i, loc in enumerate(dataset.locators)]
    settings = {"near_threshold": near_threshold, "seed": seed, "checks": names,
                "group_col": groups is not None, "time_col": times is not None}
    data_info = dataset.describe() if dataset.labels is not None else {
        "source": dataset.source, "modality": dataset.modality, "n_items": len(dataset),
        "split_counts": dataset.split_counts(), "fingerprint": dataset.fingerprint()}
    data_info["n_rows_dropped"] = len(ctx.problems)
    return AuditReport(data=data_info, backbone=spec, checks=results, settings=settings,
                       seconds=time.perf_counter() - start, items=items, dataset=dataset,
                       embedding_seconds=embedding_seconds)


LEAKAGE_CHECKS = ("leakage", "group-leakage", "time-leakage")


def preflight(dataset: Dataset, *, allow_leakage: bool = False, groups: list[Any] | None = None,
              times: list[Any] | None = None) -> AuditReport:
    """The checks ``headstart fit`` runs before training (no model, well under a second per 10k items).

    ``groups`` and ``times`` default to the dataset's own (``Dataset.groups`` / ``Dataset.times``).

    Raises:
        DataError: an item of validation or test is a copy of a training item (or shares its
            group, or predates it) and ``allow_leakage`` is False: the scores would be inflated;
            or a class has evaluation items but no training example (scoring it would fail).
    """
    from headstart.data import check_split_classes
    from headstart.errors import DataError

    check_split_classes(dataset)
    groups = dataset.groups if groups is None else groups
    times = dataset.times if times is None else times
    report = audit_dataset(dataset, backbone=None, checks=FAST_CHECKS, groups=groups, times=times,
                           pixel_search=False)
    leaks = [c for c in report.checks if c.name in LEAKAGE_CHECKS and c.severity == "severe"]
    if leaks and not allow_leakage:
        shown = "; ".join(f.detail for c in leaks for f in c.findings[:3])
        remedies = " ".join(c.remedy for c in leaks if c.name != "leakage")
        copies = ("Remove the evaluation copies (`headstart audit` lists them all). "
                  if any(c.name == "leakage" for c in leaks) else "")
        raise DataError(f"{dataset.source}: leakage between splits: {'; '.join(c.summary for c in leaks)}, "
                        f"e.g. {shown}. Evaluating on what training has seen inflates every score. {copies}"
                        f"{remedies + ' ' if remedies else ''}Or pass --allow-leakage to train anyway.")
    return report


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _embed(dataset: Dataset, readable: np.ndarray, name: str, *, cache: bool | str | Path, batch_size: int,
           device: str | None, progress: ProgressReporter | None) -> tuple[dict[str, Any], np.ndarray]:
    from headstart.backbones import create_backbone
    from headstart.embedding_cache import EmbeddingCache
    from headstart.features import extract_features

    default = get_modality(dataset.modality).default_backbone
    chosen = default if name in ("default", "auto") else name
    bb = create_backbone(chosen)
    if bb.spec.modality != dataset.modality:
        raise ConfigError(f"backbone {chosen!r} takes {bb.spec.modality} but the data is {dataset.modality}; "
                          f"use a {dataset.modality} backbone such as {default!r}.")
    store = None if cache is False else EmbeddingCache(None if cache is True else cache)
    feats = extract_features(bb, dataset.subset(readable), cache=store, batch_size=batch_size, device=device,
                             progress=progress or NullProgress())
    return bb.spec.to_dict(), normalise(feats)

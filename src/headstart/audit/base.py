"""What every audit check shares: findings, results, the registry and the audit context.

A check is a function ``check(ctx) -> Outcome`` registered with :func:`register` under a name.
It reads the data (and, if it declares ``needs_features``, the backbone's cached embeddings and
their nearest neighbours) from the :class:`AuditContext`, and returns an :class:`Outcome`: a
severity, a one-line summary, per-item findings (most suspicious first), numbers and a remedy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from headstart.data.dataset import Dataset

SEVERITIES = ("ok", "info", "warning", "severe", "skipped")
# The order a summary sorts by: worst first.
SEVERITY_RANK = {"severe": 0, "warning": 1, "info": 2, "ok": 3, "skipped": 4}


@dataclass
class Finding:
    """One flagged item, or a group of items flagged together (a duplicate pair...).

    ``items`` index the audited dataset (or, for rows dropped while loading, are empty and
    ``locators`` names them); ``score`` orders findings, higher is more suspicious.
    """

    items: list[int]
    score: float
    detail: str
    locators: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    severity: str
    summary: str
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    remedy: str = ""


@dataclass
class CheckResult:
    name: str
    title: str
    description: str
    severity: str
    summary: str
    count: int
    findings: list[Finding]
    stats: dict[str, Any]
    remedy: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["findings"] = [asdict(f) for f in self.findings]
        return d


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    description: str
    run: Callable[[AuditContext], Outcome]
    needs_features: bool = False
    needs_labels: bool = False
    modalities: tuple[str, ...] = ()
    """The modalities (names) the check applies to; empty: every modality."""


CHECKS: dict[str, Check] = {}


def n_of(n: int, singular: str, plural: str | None = None) -> str:
    """``"1 group"``, ``"3 groups"``: a count with its noun in the right number."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def register(name: str, title: str, description: str, *, needs_features: bool = False,
             needs_labels: bool = False, modalities: Sequence[str] = ()
             ) -> Callable[[Callable[[AuditContext], Outcome]], Callable]:
    """Register ``fn(ctx) -> Outcome`` as the check ``name`` (in registration order).

    ``modalities``: the names of the modalities the check applies to (empty: all); on other data
    the runner answers ``skipped`` ("not image data") without calling it.

    Example:
        >>> @register("tiny-images", "Tiny images", "Images under 8 px.", modalities=("image",))  # doctest: +SKIP
        ... def tiny_images(ctx: AuditContext) -> Outcome: ...
    """
    if isinstance(modalities, str):  # ("image") is a string, not a tuple
        modalities = (modalities,)

    def wrap(fn: Callable[[AuditContext], Outcome]) -> Callable[[AuditContext], Outcome]:
        CHECKS[name] = Check(name, title, description, fn, needs_features, needs_labels, tuple(modalities))
        return fn

    return wrap


def run_check(check: Check, ctx: AuditContext) -> CheckResult:
    start = time.perf_counter()
    if check.modalities and ctx.data.modality not in check.modalities:
        outcome = Outcome("skipped", f"not {' or '.join(check.modalities)} data")
    elif check.needs_labels and ctx.data.labels is None:
        outcome = Outcome("skipped", "the data has no labels")
    elif check.needs_features and ctx.features is None:
        outcome = Outcome("skipped", ctx.features_skipped or "no backbone given")
    else:
        outcome = check.run(ctx)
    if outcome.severity not in SEVERITIES:
        raise ValueError(f"check {check.name} returned severity {outcome.severity!r}")
    flagged = {i for f in outcome.findings for i in f.items} | {
        loc for f in outcome.findings if not f.items for loc in f.locators}
    return CheckResult(check.name, check.title, check.description, outcome.severity, outcome.summary,
                       len(flagged), outcome.findings, outcome.stats, outcome.remedy,
                       time.perf_counter() - start)


@dataclass
class AuditContext:
    """The audited data and what checks compute once and share.

    Attributes:
        data: the usable items (rows that could not be loaded are in ``problems``).
        problems: rows dropped while loading (no label, empty text, missing file).
        groups / times: per-item values of ``--group-col`` / ``--time-col``, if given.
        features: L2-normalised embeddings of the *readable* items (``readable`` indexes
            ``data``), or ``None`` when no backbone runs.
        near_threshold: cosine similarity at or above which two items are near duplicates.
        pixel_search: look for resized / re-encoded image copies by their thumbnails (decodes
            every image; ``headstart fit``'s quick checks skip it).
    """

    data: Dataset
    problems: list[dict[str, Any]] = field(default_factory=list)
    groups: list[Any] | None = None
    times: list[Any] | None = None
    features: np.ndarray | None = None
    features_skipped: str = ""
    readable: np.ndarray | None = None
    near_threshold: float = 0.97
    pixel_search: bool = True
    seed: int = 0
    cache: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute a shared intermediate (neighbours, image headers...) the first time it is asked for."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def split_of(self, i: int) -> str | None:
        return None if self.data.splits is None else self.data.splits[i]

    def label_of(self, i: int) -> Any:
        return None if self.data.labels is None else self.data.labels[i]

    def where(self, i: int) -> str:
        """An item's locator with its split, for details: ``train: photos/cat/1.png``."""
        split = self.split_of(i)
        return f"{split}: {self.data.locators[i]}" if split else self.data.locators[i]

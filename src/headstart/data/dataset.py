"""The in-memory dataset every loader produces and every later step consumes."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headstart.data.items import item_sha256
from headstart.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass
class Dataset:
    """Items with optional labels, split assignment and slice columns.

    Attributes:
        items: one entry per example: a ``str`` (text), a ``Path`` to an image file,
            an image as a ``numpy`` array / ``PIL.Image``, or what a modality plugin reads.
        labels: one label per item, or ``None`` for unlabeled data.
        modality: the name of the items' modality (``"text"``, ``"image"``, a plugin's):
            :func:`headstart.modalities.get_modality` answers everything that depends on it.
        splits: ``"train"`` / ``"val"`` / ``"test"`` per item, or ``None`` when the
            source has no split (see :func:`headstart.data.splits.assign_splits`).
        slices: extra per-item columns to report metrics on (name -> values).
        locators: a human-readable place per item (file path, ``table.csv row 12``),
            used in error messages and reports.
        source: where the data came from.
        groups: a group id per item (patient, user, session...; ``None`` when unknown), or
            ``None``: :func:`headstart.data.splits.assign_splits` keeps each group in one split.
        times: a timestamp per item, or ``None``: ``assign_splits`` then trains on the oldest
            items and evaluates on the newest.
    """

    items: list[Any]
    labels: list[Any] | None
    modality: str
    splits: list[str] | None = None
    slices: dict[str, list[Any]] = field(default_factory=dict)
    locators: list[str] | None = None
    source: str = "<memory>"
    _hashes: list[str] | None = field(default=None, repr=False)
    groups: list[Any] | None = None
    times: list[Any] | None = None

    def __post_init__(self) -> None:
        n = len(self.items)
        if self.labels is not None and len(self.labels) != n:
            raise DataError(
                f"{self.source}: {n} items but {len(self.labels)} labels; "
                "give exactly one label per item."
            )
        if self.splits is not None and len(self.splits) != n:
            raise DataError(f"{self.source}: {n} items but {len(self.splits)} split values.")
        for name, values in (("groups", self.groups), ("times", self.times)):
            if values is not None and len(values) != n:
                raise DataError(f"{self.source}: {n} items but {len(values)} {name}.")
        for name, values in self.slices.items():
            if len(values) != n:
                raise DataError(f"{self.source}: slice column {name!r} has {len(values)} values for {n} items.")
        if self.locators is None:
            self.locators = [f"{self.source} item {i}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def classes(self) -> list[Any]:
        """Sorted distinct labels."""
        return [] if self.labels is None else sorted_labels(self.labels)

    def class_counts(self) -> dict[str, int]:
        if self.labels is None:
            return {}
        counts = Counter(self.labels)
        return {str(k): counts[k] for k in sorted_labels(list(counts))}

    def item_hashes(self) -> list[str]:
        """sha256 of each item's content (file bytes for image files, UTF-8 for text)."""
        if self._hashes is None:
            self._hashes = [item_sha256(item, loc) for item, loc in zip(self.items, self.locators)]
        return self._hashes

    def fingerprint(self) -> str:
        """One sha256 over every item's content, label and split, in order."""
        h = hashlib.sha256()
        h.update(f"headstart-dataset-v1:{self.modality}:{len(self)}\n".encode())
        labels = self.labels if self.labels is not None else [None] * len(self)
        splits = self.splits if self.splits is not None else [None] * len(self)
        for ih, label, split in zip(self.item_hashes(), labels, splits):
            h.update(json.dumps([ih, label, split]).encode())
            h.update(b"\n")
        return h.hexdigest()

    def subset(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        """A new dataset with the given items (in that order)."""
        idx = [int(i) for i in indices]
        hashes = self._hashes
        return Dataset(
            items=[self.items[i] for i in idx],
            labels=None if self.labels is None else [self.labels[i] for i in idx],
            modality=self.modality,
            splits=None if self.splits is None else [self.splits[i] for i in idx],
            slices={k: [v[i] for i in idx] for k, v in self.slices.items()},
            locators=[self.locators[i] for i in idx],
            source=self.source,
            _hashes=None if hashes is None else [hashes[i] for i in idx],
            groups=None if self.groups is None else [self.groups[i] for i in idx],
            times=None if self.times is None else [self.times[i] for i in idx],
        )

    def split(self, name: str) -> Dataset:
        """The items of one split (``train``, ``val`` or ``test``); empty if there are none."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}.")
        if self.splits is None:
            raise DataError(
                f"{self.source} has no split assignment: give it one (a column of train/val/test values "
                "named with --split-col, or train/ val/ test/ folders), or in Python call "
                "headstart.data.assign_splits(dataset) first."
            )
        return self.subset([i for i, s in enumerate(self.splits) if s == name])

    def split_counts(self) -> dict[str, int]:
        if self.splits is None:
            return {}
        counts = Counter(self.splits)
        return {s: counts.get(s, 0) for s in SPLITS}

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary recorded in bundles."""
        return {
            "source": self.source,
            "modality": self.modality,
            "n_items": len(self),
            "classes": [str(c) for c in self.classes],
            "class_counts": self.class_counts(),
            "split_counts": self.split_counts(),
            "slice_columns": sorted(self.slices),
            "fingerprint": self.fingerprint(),
        }

    def require_labels(self, context: str) -> list[Any]:
        """The labels, or a clear error when the data has none."""
        if self.labels is None:
            raise DataError(f"{self.source} has no labels, but {context} needs them; pass --label-col.")
        return self.labels


def sorted_labels(labels: Sequence[Any]) -> list[Any]:
    """Distinct labels in natural order (numbers numerically, else as text)."""
    distinct = set(labels)
    try:
        return sorted(distinct)
    except TypeError:  # mixed types
        return sorted(distinct, key=str)


def concat(first: Dataset, *others: Dataset) -> Dataset:
    """One dataset holding the items of all (same modality; splits dropped)."""
    parts = [first, *others]
    if len({d.modality for d in parts}) > 1:
        raise DataError("cannot join datasets of different modalities.")
    labeled = all(d.labels is not None for d in parts)
    return Dataset(
        items=[i for d in parts for i in d.items],
        labels=[v for d in parts for v in d.labels] if labeled else None,
        modality=first.modality,
        splits=None,
        slices={k: [v for d in parts for v in d.slices.get(k, [None] * len(d))] for k in first.slices},
        locators=[loc for d in parts for loc in d.locators],
        source=first.source,
        _hashes=[h for d in parts for h in d._hashes] if all(d._hashes is not None for d in parts) else None,
        groups=[g for d in parts for g in d.groups] if all(d.groups is not None for d in parts) else None,
        times=[t for d in parts for t in d.times] if all(d.times is not None for d in parts) else None,
    )

"""Seeded, stratified train/validation/test assignment."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from headstart.data.dataset import Dataset
from headstart.errors import DataError

SPLIT_ALIASES = {
    "train": "train", "training": "train", "trn": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "tst": "test", "holdout": "test",
}


def normalize_split_name(value: Any, where: str) -> str:
    key = str(value).strip().lower()
    if key not in SPLIT_ALIASES:
        raise DataError(
            f"{where}: split value {value!r} is not one of train/val/test "
            f"(accepted spellings: {', '.join(sorted(SPLIT_ALIASES))})."
        )
    return SPLIT_ALIASES[key]


def check_classes(dataset: Dataset, context: str = "training") -> None:
    """At least two classes, each with at least one example."""
    labels = dataset.require_labels(context)
    classes = set(labels)
    if len(classes) < 2:
        only = next(iter(classes)) if classes else None
        raise DataError(
            f"{dataset.source}: {context} needs at least 2 classes, found "
            f"{len(classes)}{f' ({only!r})' if classes else ''}. Check the label column."
        )


def assign_splits(
    dataset: Dataset,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Give every item a split, stratified by label, when the data has none.

    Data that already has a split (a ``split`` column or ``train/ val/ test/`` folders)
    is returned unchanged. Each class keeps at least one training example and, where a
    test (validation) split is asked for, at least one test (validation) example. Identical
    items (same content) are kept in one split, train, so none leaks into evaluation.

    Args:
        dataset: labeled data.
        val_fraction: share of each class for validation (0 for none).
        test_fraction: share of each class for the held-out test split (0 for none).
        seed: seeds the shuffle; the same seed and data give the same split.

    Returns:
        The dataset with ``splits`` filled in.
    """
    if dataset.splits is not None:
        return dataset
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must each be in [0, 1) "
            "and sum to less than 1."
        )
    labels = dataset.require_labels("splitting")
    check_classes(dataset)
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    counts = Counter(labels)
    too_small = {c: n for c, n in counts.items() if n < needed}
    if too_small:
        listing = ", ".join(f"{c!r} ({n})" for c, n in sorted(too_small.items(), key=lambda kv: str(kv[0])))
        raise DataError(
            f"{dataset.source}: too few examples to split class {listing}: each class needs at least "
            f"{needed} (one per train/val/test split). Add examples, drop the class, or give your own "
            "split (a --split-col column or train/ val/ test/ folders)."
        )
    rng = np.random.default_rng(seed)
    splits = [""] * len(labels)
    by_class: dict[Any, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    for label in sorted(by_class, key=str):
        idx = np.array(by_class[label])
        rng.shuffle(idx)
        n = len(idx)
        n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
        n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
        while n - n_test - n_val < 1:  # keep one training example per class
            if n_val > 1 or (n_val == 1 and n_test <= 1):
                n_val -= 1
            else:
                n_test -= 1
        for j, i in enumerate(idx):
            splits[i] = "test" if j < n_test else "val" if j < n_test + n_val else "train"
    dataset.splits = _keep_copies_together(dataset, splits)
    return dataset


def _keep_copies_together(dataset: Dataset, splits: list[str]) -> list[str]:
    """Identical items (same content hash) that landed in different splits all go to train.

    A copy in validation or test of a training item is leakage: the model is scored on an
    answer it memorised. Moving the evaluation copies to train (rather than the training copy
    out) keeps every class's training example.
    """
    groups: dict[str, list[int]] = {}
    for i, h in enumerate(dataset.item_hashes()):
        groups.setdefault(h, []).append(i)
    for members in groups.values():
        if len(members) > 1 and len({splits[i] for i in members}) > 1:
            for i in members:
                splits[i] = "train"
    return splits

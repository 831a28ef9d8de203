"""Seeded, stratified train/validation/test assignment."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from headstart.data.dataset import Dataset
from headstart.data.labels import label_key
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


def parse_times(values: list[Any]) -> np.ndarray:
    """Timestamps as sortable floats (seconds since 1970 for dates, the number itself for numbers);
    NaN where a value is missing or not a time. The split and the audit's time check share it."""
    import pandas as pd

    raw = pd.Series(values, dtype="object")
    present = raw.dropna()
    if len(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    times = pd.to_datetime(raw.map(lambda v: v if isinstance(v, str) else None if v is None else str(v)),
                           errors="coerce", utc=True, format="mixed")
    return ((times - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan)


def check_split_classes(dataset: Dataset, hint: str = "") -> None:
    """Every class of the validation and test splits has a training example.

    Raises:
        DataError: a class appears only in validation or test: a model cannot predict a class
            it never saw, and scoring it would fail only after the whole fit.
    """
    if dataset.splits is None or dataset.labels is None:
        return
    trained = {label_key(v) for v, s in zip(dataset.labels, dataset.splits) if s == "train"}
    orphans: dict[str, list[int]] = {}
    for i, (v, s) in enumerate(zip(dataset.labels, dataset.splits)):
        if s != "train" and label_key(v) not in trained:
            orphans.setdefault(label_key(v), []).append(i)
    if orphans:
        listing = "; ".join(
            f"{key!r}: {len(idx)} item{'s' if len(idx) > 1 else ''} in "
            f"{'/'.join(sorted({dataset.splits[i] for i in idx}))} (e.g. {dataset.locators[idx[0]]})"
            for key, idx in sorted(orphans.items()))
        raise DataError(
            f"{dataset.source}: {'a class has' if len(orphans) == 1 else f'{len(orphans)} classes have'} no "
            f"training example, only evaluation items ({listing}). A model cannot learn a class it never "
            "sees, and scoring it would fail after the whole fit. Move some of its items to the train split, "
            f"drop the class, or let headstart make the split (no --split-col).{hint}"
        )


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

    When the dataset has ``groups`` (``--group-col``), whole groups are assigned (shuffled by
    ``seed``), so no group spans two splits; when it has ``times`` (``--time-col``), the oldest
    items train, the next validate and the newest test, so every evaluation item is newer than
    every training item (groups, if given too, are kept whole and ordered by their first item).
    Identical items then travel together as one unit. These splits are not stratified by class.

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
    if dataset.groups is not None or dataset.times is not None:
        dataset.splits = _split_units(dataset, val_fraction, test_fraction, seed)
        by = " and ".join(n for n, v in (("group", dataset.groups), ("time", dataset.times)) if v is not None)
        check_split_classes(dataset, f" (The split by {by} put every item of that class in evaluation: give your "
                                     "own split with --split-col, or add training examples of it.)")
        return dataset
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


def _units(dataset: Dataset) -> list[list[int]]:
    """Items that must share a split: the same group, or the same content (union-find)."""
    parent = list(range(len(dataset)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[Any, int] = {}
    keys = [("content", h) for h in dataset.item_hashes()]
    if dataset.groups is not None:
        keys += [("group", g) for g in dataset.groups]
    for n, key in enumerate(keys):
        if key[1] is None:
            continue
        i = n % len(dataset)
        j = first.setdefault(key, i)
        parent[find(i)] = find(j)
    members: dict[int, list[int]] = {}
    for i in range(len(dataset)):
        members.setdefault(find(i), []).append(i)
    return list(members.values())


def _split_units(dataset: Dataset, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """Assign whole units: in time order (oldest train, newest test) or, without times, shuffled."""
    units = _units(dataset)
    times = _usable_times(dataset) if dataset.times is not None else None
    if times is not None:
        start = [float(times[u].min()) for u in units]
        order = sorted(range(len(units)), key=lambda k: (start[k], min(units[k])))
    else:
        start = [0.0] * len(units)
        order = [int(k) for k in np.random.default_rng(seed).permutation(len(units))]
    n = len(dataset)
    wanted = [("train", n - round(n * val_fraction) - round(n * test_fraction)),
              ("val", round(n * val_fraction)), ("test", round(n * test_fraction))]
    if times is None:  # shuffled: fill the evaluation splits first, the rest trains
        wanted = wanted[::-1]
    needs = [count > 0 or name == "train" for name, count in wanted]
    if len(units) < sum(needs):
        what = "groups (and distinct items)" if dataset.groups is not None else "distinct times"
        raise DataError(f"{dataset.source}: only {len(units)} {what}, too few for "
                        f"{'/'.join(name for (name, _), need in zip(wanted, needs) if need)} splits. Add data, lower "
                        "--val-fraction/--test-fraction (0 for none), or give your own split (--split-col).")
    splits = [""] * n
    step, filled, last = 0, 0, None
    for position, k in enumerate(order):
        left = len(order) - position
        while step < len(wanted) - 1:  # move on when this split is full (equal times stay together)
            tied = times is not None and start[k] == last and filled > 0
            full = filled >= wanted[step][1] or left <= sum(needs[step + 1:])
            if tied or not full or (needs[step] and filled == 0):
                break
            step, filled = step + 1, 0
        for i in units[k]:
            splits[i] = wanted[step][0]
        filled += len(units[k])
        last = start[k]
    if times is None:
        _train_every_class(dataset, units, splits)
    else:
        _refuse_overlapping_times(dataset, splits, times)
    empty = [name for (name, _), need in zip(wanted, needs) if need and name not in splits]
    if empty:
        raise DataError(f"{dataset.source}: the {' and '.join(empty)} split would be empty: too many items share "
                        "the newest times. Lower --val-fraction/--test-fraction, or give your own split (--split-col).")
    return splits


def _usable_times(dataset: Dataset) -> np.ndarray:
    times = parse_times(list(dataset.times or []))
    unusable = np.flatnonzero(np.isnan(times)).tolist()
    if unusable:
        shown = ", ".join(dataset.locators[i] for i in unusable[:3])
        raise DataError(
            f"{dataset.source}: {len(unusable)} item{'s have' if len(unusable) > 1 else ' has'} no usable time "
            f"in the --time-col column ({shown}; value {dataset.times[unusable[0]]!r}). Give every row a date "
            "(e.g. 2024-05-01 or 2024-05-01T13:45) or a number, or drop those rows."
        )
    return times


def _refuse_overlapping_times(dataset: Dataset, splits: list[str], times: np.ndarray) -> None:
    """Units spanning a time range (a group, copies of one item) can overlap: then no split is both
    whole-unit and time-ordered."""
    rank = {"train": 0, "val": 1, "test": 2}
    for split in ("val", "test"):
        newest = max((t for t, s in zip(times, splits) if rank[s] < rank[split]), default=None)
        older = [i for i, (t, s) in enumerate(zip(times, splits)) if s == split and newest is not None and t < newest]
        if older:
            kept = "every group whole" if dataset.groups is not None else "identical items together"
            raise DataError(
                f"{dataset.source}: {len(older)} {split} item{'s' if len(older) > 1 else ''} (e.g. "
                f"{dataset.locators[older[0]]}) would be older than an item of an earlier split, because the items "
                f"kept together (same group, or identical content) span overlapping times: no split keeps {kept} "
                "and evaluates only on later items. Give your own split (--split-col), or split by one of "
                "--group-col / --time-col only."
            )


def _train_every_class(dataset: Dataset, units: list[list[int]], splits: list[str]) -> None:
    """Move the smallest evaluation unit holding a class with no training example to train,
    where its split keeps another unit (a shuffled group split can leave a small class out)."""
    keys = [label_key(v) for v in dataset.labels]
    for key in sorted(set(keys)):
        if any(k == key and s == "train" for k, s in zip(keys, splits)):
            continue
        holding = sorted((u for u in units if any(keys[i] == key for i in u)), key=len)
        for unit in holding:
            split = splits[unit[0]]
            if sum(1 for u in units if splits[u[0]] == split) > 1:
                for i in unit:
                    splits[i] = "train"
                break

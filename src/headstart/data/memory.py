"""In-memory data: Python lists of texts, image paths, PIL images or numpy arrays."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from headstart.data.dataset import Dataset
from headstart.data.items import is_image_path, is_valid_text
from headstart.data.labels import check_distinct, check_scalar, warn_placeholders
from headstart.errors import DataError


def infer_modality(items: Sequence[Any]) -> str:
    """``"image"`` for paths/arrays/PIL images, ``"text"`` for strings that are not image paths."""
    if isinstance(items, np.ndarray) and items.ndim >= 3:
        return "image"
    first = items[0]
    if isinstance(first, (Path, Image.Image, np.ndarray)):
        return "image"
    if isinstance(first, str):
        sample = items[: min(len(items), 20)]
        if all(isinstance(s, str) and is_image_path(Path(s)) and Path(s).is_file() for s in sample):
            return "image"
        return "text"
    raise DataError(
        f"cannot use items of type {type(first).__name__}: give a list of texts (str), image paths, "
        "PIL images or numpy arrays."
    )


def from_memory(
    X: Sequence[Any] | np.ndarray,
    y: Sequence[Any] | np.ndarray | None = None,
    *,
    modality: str | None = None,
    source: str = "<memory>",
) -> Dataset:
    """Wrap in-memory inputs (and labels) as a :class:`Dataset`.

    Args:
        X: texts, image paths, PIL images, or images as an array (N×H×W or N×H×W×C).
        y: labels (any hashable values), or ``None``.
        modality: ``"text"`` or ``"image"``; inferred when ``None``.
        source: a name for messages.
    """
    if isinstance(X, (str, bytes)):
        raise DataError("X must be a list of items, not a single string; wrap it: [text].")
    if len(X) == 0:
        raise DataError("X is empty: give at least one item.")
    modality = modality or infer_modality(X)
    if isinstance(X, np.ndarray):
        items: list[Any] = list(X) if X.ndim >= 3 else X.tolist()
    else:
        items = list(X)
    if modality == "image":
        items = [Path(i) if isinstance(i, str) else i for i in items]
    else:
        bad = [i for i, t in enumerate(items) if not isinstance(t, str) or not t.strip()]
        if bad:
            shown = ", ".join(map(str, bad[:5]))
            raise DataError(f"{source}: item(s) {shown} are empty or not text; every text must be non-empty.")
        broken = [i for i, t in enumerate(items) if not is_valid_text(t)]
        if broken:
            shown = ", ".join(map(str, broken[:5]))
            raise DataError(f"{source}: item(s) {shown} hold a lone surrogate (such as '\\ud800'), which is not a "
                            "character and cannot be tokenized; fix or drop them.")
    labels = None
    if y is not None:
        labels = [v.item() if hasattr(v, "item") else v for v in (y.tolist() if isinstance(y, np.ndarray) else y)]
        if len(labels) != len(items):
            raise DataError(f"X has {len(items)} items but y has {len(labels)} labels.")
        missing = [i for i, v in enumerate(labels) if v is None or (isinstance(v, float) and np.isnan(v))]
        if missing:
            raise DataError(f"{source}: labels at positions {missing[:5]} are missing.")
        where = [f"{source} label {k}" for k in range(len(labels))]
        check_scalar(labels, where, source)
        check_distinct(set(labels), source)
        warn_placeholders(labels, where, source)
    locators = [str(i) if isinstance(i, Path) else f"{source}[{k}]" for k, i in enumerate(items)]
    return Dataset(items=items, labels=labels, modality=modality, locators=locators, source=source)

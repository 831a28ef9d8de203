"""In-memory data: Python lists of items (texts, image paths, PIL images, arrays; a plugin's items)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from headstart.data.dataset import Dataset
from headstart.data.labels import check_distinct, check_scalar, warn_placeholders
from headstart.errors import DataError


def infer_modality(items: Sequence[Any]) -> str:
    """The modality whose items these look like: every known modality looks (``Modality.claims``) and
    the surest wins (texts: strings; images: paths of image files, PIL images, arrays; plugins...)."""
    from headstart.modalities import modalities

    scored = [(m.claims(items), m.name) for m in modalities()]
    best = max(score for score, _ in scored)
    if best <= 0:
        kinds = ", ".join(m.plural for m in modalities())
        raise DataError(f"cannot use items of type {type(items[0]).__name__}: give a list of {kinds} (texts as "
                        "str; images as paths, PIL images or numpy arrays), or name the modality.")
    return next(name for score, name in scored if score == best)


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
        modality: a modality's name (``"text"``, ``"image"``, a plugin's); inferred when ``None``.
        source: a name for messages.
    """
    if isinstance(X, (str, bytes)):
        raise DataError("X must be a list of items, not a single string; wrap it: [text].")
    if len(X) == 0:
        raise DataError("X is empty: give at least one item.")
    from headstart.modalities import get_modality

    modality = modality or infer_modality(X)
    if isinstance(X, np.ndarray):
        items: list[Any] = list(X) if X.ndim >= 3 else X.tolist()
    else:
        items = list(X)
    items = get_modality(modality).from_memory(items, source)
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

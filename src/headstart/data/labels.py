"""What a label is: one rule for every loader, the bundle's label list and every comparison.

A label is compared by its text: ``True``, ``numpy.bool_(True)`` and the manifest's ``"True"``
are one class, as are ``1``, ``1.0`` and ``numpy.int64(1)``. Labels travel through JSON (the
bundle's label list), CSV (everything is text) and pandas (numbers become numpy scalars or
floats), so comparing by type would make the same class two; comparing by the text every
message prints means a message can never say "unknown label True; known: True".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from headstart.errors import DataError

logger = logging.getLogger(__name__)

# Cell values that spreadsheets and pandas write for "no value". As a label they are almost
# always a missing label exported as text; they are kept (a class may be named "None") but
# flagged, by the loaders (a warning) and by the audit's missing-labels check.
MISSING_PLACEHOLDERS = frozenset({"nan", "none", "null", "na", "n/a", "#n/a", "<na>", "nat", "missing"})


def plain_label(value: Any) -> Any:
    """A label as a plain JSON value: numpy scalars become Python ones, whole floats ints (``1.0`` -> ``1``)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def label_key(value: Any) -> str:
    """The text two labels share when they are the same class (the text every message shows)."""
    return str(plain_label(value))


def is_placeholder(value: Any) -> bool:
    """Whether a label is text that usually means "missing" (``NaN``, ``None``, ``null``, ``N/A``...)."""
    return isinstance(value, str) and value.strip().lower() in MISSING_PLACEHOLDERS


def normalize_labels(values: Sequence[Any], locators: Sequence[str], source: str) -> list[Any]:
    """Labels as plain values of one type (mixed types all become text, as a CSV would give them).

    ``None`` stays ``None`` (a missing label, for the caller to refuse or report).

    Raises:
        DataError: a label is a list, a dict or another value that cannot name a class.
    """
    labels = [None if v is None else plain_label(v) for v in values]
    check_scalar(labels, locators, source)
    if len({type(v) for v in labels if v is not None}) > 1:
        labels = [None if v is None else str(v) for v in labels]
    return labels


def check_scalar(labels: Sequence[Any], locators: Sequence[str], source: str) -> None:
    """Refuse labels that cannot name a class: lists, dicts, arrays... (``None`` is left to the caller)."""
    bad = [i for i, v in enumerate(labels) if v is not None and not isinstance(v, (str, int, float))]
    if bad:
        raise DataError(
            f"{locators[bad[0]]}: the label is a {type(labels[bad[0]]).__name__} ({str(labels[bad[0]])[:40]}); "
            f"a label must be text or a number{_more(bad)}. Fix the labels of {source}."
        )


def warn_placeholders(labels: Sequence[Any], locators: Sequence[str], source: str) -> list[int]:
    """Log a warning for labels like ``NaN`` or ``None`` (kept as a class); returns their positions."""
    found = [i for i, v in enumerate(labels) if is_placeholder(v)]
    if found:
        values = sorted({str(labels[i]) for i in found})
        logger.warning(
            "%s: %d label%s read %s, a text that usually means a missing label (e.g. %s); they are kept as "
            "a class named %s. If they are unlabeled, empty those cells: then fit refuses them and "
            "`headstart audit` lists them as missing labels.",
            source, len(found), "s" if len(found) > 1 else "", " / ".join(repr(v) for v in values),
            locators[found[0]], " / ".join(repr(v) for v in values),
        )
    return found


def check_distinct(classes: Sequence[Any], source: str) -> None:
    """Refuse two classes that read the same (``1`` and ``"1"``): they would be one class in a bundle."""
    seen: dict[str, Any] = {}
    for c in classes:
        key = label_key(c)
        if key in seen:
            raise DataError(
                f"{source}: labels {seen[key]!r} and {c!r} read the same ({key!r}) but have different types; "
                "give every label the same type (all text, or all numbers)."
            )
        seen.setdefault(key, c)


def label_indices(y_true: Sequence[Any], classes: Sequence[Any], where: str) -> np.ndarray:
    """The position in ``classes`` of each label, matched by :func:`label_key`.

    Raises:
        DataError: a label is not one of ``classes``, naming the unknown labels and the known ones.
    """
    index = {}
    for k, c in enumerate(classes):
        index.setdefault(label_key(c), k)
    keys = [label_key(v) for v in y_true]
    unknown = sorted({k for k in keys if k not in index})
    if unknown:
        raise DataError(
            f"{where} has labels the model does not know: {', '.join(unknown[:10])}"
            f"{' ...' if len(unknown) > 10 else ''}. The model was trained on: "
            f"{', '.join(label_key(c) for c in classes)}. Drop or relabel those items, or retrain."
        )
    return np.array([index[k] for k in keys], dtype=np.int64)


def _more(rows: list[int]) -> str:
    return f" ({len(rows) - 1} more like it)" if len(rows) > 1 else ""

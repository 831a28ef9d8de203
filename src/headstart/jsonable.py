"""The one converter from Python / numpy values to plain JSON types.

Manifests, the service's ``/metadata``, ``--json`` output, logs and tracking all write JSON
from values that may hold numpy scalars and arrays, paths or tuples. They convert through
:func:`jsonable` so that a numpy integer is the same number everywhere (``json.dumps(...,
default=str)`` would write it as a string). This module imports nothing: numpy values are
recognised by their ``tolist`` and ``dtype``, so the torch-free paths stay light.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath
from typing import Any

__all__ = ["jsonable"]


def jsonable(value: Any, *, default: Callable[[Any], Any] | None = None) -> Any:
    """``value`` with dict keys as strings, tuples as lists, paths as strings and numpy
    scalars and arrays as Python numbers and lists.

    Args:
        value: what to convert; dicts, lists and tuples are converted recursively.
        default: called on any other value that is not ``None``, ``str``, ``int``, ``float`` or
            ``bool`` (e.g. ``str`` for readable datetimes); without it such values are returned
            unchanged, so ``json.dumps`` still refuses what nobody meant to write.

    Example:
        >>> import numpy as np
        >>> jsonable({1: (np.int64(2), np.float32(0.5)), "p": PurePath("a/b")})
        {'1': [2, 0.5], 'p': 'a/b'}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v, default=default) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, default=default) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # a numpy scalar or array
        return value.tolist()
    if value is None or isinstance(value, (str, int, float, bool)) or default is None:
        return value
    return default(value)

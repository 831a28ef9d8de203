"""Tables (CSV, TSV, JSONL, Parquet) with a text or image-path column and a label column."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.data.dataset import Dataset
from headstart.data.splits import normalize_split_name
from headstart.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")
_IMAGE_COLUMN_GUESSES = ("image", "image_path", "path", "file", "filepath", "filename")
_TEXT_COLUMN_GUESSES = ("text", "sentence", "content", "body", "document")


def is_table(path: Path) -> bool:
    return path.suffix.lower() in TABLE_SUFFIXES


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table by its extension, with an error that names the file and the problem."""
    import pandas as pd  # here, not at module level: the ONNX inference path never reads tables

    p = Path(path)
    if not p.is_file():
        raise DataError(f"table {p} does not exist.")
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(p, keep_default_na=False, na_values=[""])
        if suffix == ".tsv":
            return pd.read_csv(p, sep="\t", keep_default_na=False, na_values=[""])
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(p, lines=True, dtype=False)
        if suffix == ".json":
            return pd.read_json(p, dtype=False)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"cannot read {p} as {suffix[1:].upper()}: {e}") from e
    raise DataError(f"{p}: unsupported table type {suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}.")


def _missing(value: Any) -> bool:
    """None, NaN, pandas' NA/NaT, or a blank string."""
    if isinstance(value, str):
        return not value.strip()
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    import pandas as pd

    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def _require_column(df: pd.DataFrame, column: str, path: Path, option: str) -> None:
    if column not in df.columns:
        present = ", ".join(map(str, df.columns))
        raise DataError(f"{path}: no column {column!r} (columns present: {present}). Pass {option} NAME.")


def _rows(indices: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(i + 1) for i in indices[:limit])
    more = f" and {len(indices) - limit} more" if len(indices) > limit else ""
    return f"row{'s' if len(indices) > 1 else ''} {shown}{more}"


def _clean_label(value: Any) -> Any:
    # JSON/CSV integers arrive as numpy ints or floats like 1.0; keep them as plain ints.
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def load_table(
    path: str | Path,
    *,
    text_col: str | None = None,
    image_col: str | None = None,
    label_col: str | None = "label",
    split_col: str | None = None,
    slice_cols: Sequence[str] = (),
    optional_slice_cols: Sequence[str] = (),
    require_labels: bool = True,
    extra_cols: Mapping[str, str] | None = None,
    problems: list[dict[str, Any]] | None = None,
) -> Dataset:
    """Load a table of texts or image paths.

    Args:
        path: a ``.csv``, ``.tsv``, ``.jsonl``, ``.json`` or ``.parquet`` file.
        text_col: the column holding texts (guessed: ``text``, ``sentence``...).
        image_col: the column holding image paths, relative to the table's folder.
        label_col: the label column; ``None`` for unlabeled data.
        split_col: optional column of ``train``/``val``/``test`` values.
        slice_cols: columns kept to report metrics per slice.
        optional_slice_cols: slice columns kept only if the table has them.
        require_labels: raise when the label column is absent.
        extra_cols: more columns to keep (column -> the option that names it, for errors), e.g.
            the audit's group and time columns; stored in ``Dataset.slices`` (missing -> None).
        problems: when a list is given, rows with no label, an empty text or a missing image
            file are dropped and described here (``row``, ``check``, ``locator``, ``detail``)
            instead of raising: the audit reports them all at once.

    Rows are numbered from 1 in messages (the first data row is row 1).
    """
    p = Path(path)
    df = read_table(p)
    if len(df) == 0:
        raise DataError(f"{p} has no rows.")
    df.columns = [str(c) for c in df.columns]
    if text_col is None and image_col is None:
        text_col = next((c for c in _TEXT_COLUMN_GUESSES if c in df.columns), None)
        if text_col is None:
            image_col = next((c for c in _IMAGE_COLUMN_GUESSES if c in df.columns), None)
        if text_col is None and image_col is None:
            raise DataError(
                f"{p}: cannot tell which column holds the inputs (columns present: "
                f"{', '.join(df.columns)}). Pass --text-col NAME for texts or --image-col NAME "
                "for image paths."
            )
    if text_col is not None:
        _require_column(df, text_col, p, "--text-col")
    if image_col is not None:
        _require_column(df, image_col, p, "--image-col")
    locators = [f"{p} row {i + 1}" for i in range(len(df))]

    labels = None
    if label_col is not None and (require_labels or label_col in df.columns):
        _require_column(df, label_col, p, "--label-col")
        raw = df[label_col].tolist()
        unlabeled = [i for i, v in enumerate(raw) if _missing(v)]
        if unlabeled and problems is not None:
            problems.extend({"row": i, "check": "missing-labels", "locator": locators[i],
                             "detail": f"no label in column {label_col!r}"} for i in unlabeled)
        elif unlabeled:
            raise DataError(
                f"{p}: {_rows(unlabeled)} {'have' if len(unlabeled) > 1 else 'has'} no label in column "
                f"{label_col!r}. Label them or drop them (run `headstart audit` to list them all)."
            )
        labels = [None if _missing(v) else _clean_label(v) for v in raw]
        if len({type(v) for v in labels if v is not None}) > 1:
            labels = [None if v is None else str(v) for v in labels]

    dropped = {pr["row"] for pr in problems} if problems is not None else set()

    def reject(rows: list[int], check: str, detail: str, message: str) -> None:
        if problems is None:
            raise DataError(message)
        problems.extend({"row": i, "check": check, "locator": locators[i], "detail": detail}
                        for i in rows if i not in dropped)
        dropped.update(rows)

    if text_col is not None:
        modality = "text"
        items: list[Any] = df[text_col].tolist()
        bad = [i for i, v in enumerate(items) if _missing(v) or not isinstance(v, str)]
        if bad:
            reject(bad, "empty-texts", f"column {text_col!r} is empty or not text",
                   f"{p}: {_rows(bad)} of column {text_col!r} {'are' if len(bad) > 1 else 'is'} empty or "
                   "not text. Fill them in or drop those rows.")
    else:
        modality = "image"
        raw_paths = df[image_col].tolist()
        bad = [i for i, v in enumerate(raw_paths) if _missing(v)]
        if bad:
            reject(bad, "unreadable-files", f"no image path in column {image_col!r}",
                   f"{p}: {_rows(bad)} of column {image_col!r} have no image path.")
        items = [None if i in bad else Path(v) if Path(v).is_absolute() else p.parent / str(v)
                 for i, v in enumerate(raw_paths)]
        absent = [i for i, v in enumerate(items) if v is not None and not v.is_file()]
        if absent:
            reject(absent, "unreadable-files", "image file not found",
                   f"{p}: {_rows(absent)}: image file not found ({items[absent[0]]}). Paths are read "
                   f"relative to {p.parent}.")

    splits = None
    if split_col is not None:
        _require_column(df, split_col, p, "--split-col")
        splits = [normalize_split_name(v, locators[i]) for i, v in enumerate(df[split_col].tolist())]
    slices = {}
    wanted = list(slice_cols) + [c for c in optional_slice_cols if c in df.columns and c not in slice_cols]
    for col in wanted:
        _require_column(df, col, p, "--slice-col")
        slices[col] = ["(missing)" if _missing(v) else _clean_label(v) for v in df[col].tolist()]
    for col, option in (extra_cols or {}).items():
        if col not in slices:
            _require_column(df, col, p, option)
            slices[col] = [None if _missing(v) else _clean_label(v) for v in df[col].tolist()]
    if dropped:
        keep = [i for i in range(len(df)) if i not in dropped]
        return Dataset(
            items=[items[i] for i in keep],
            labels=None if labels is None else [labels[i] for i in keep],
            modality=modality,
            splits=None if splits is None else [splits[i] for i in keep],
            slices={k: [v[i] for i in keep] for k, v in slices.items()},
            locators=[locators[i] for i in keep],
            source=str(p),
        )
    return Dataset(
        items=items,
        labels=labels,
        modality=modality,
        splits=splits,
        slices=slices,
        locators=locators,
        source=str(p),
    )

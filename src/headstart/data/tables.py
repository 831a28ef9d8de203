"""Tables (CSV, TSV, JSONL, Parquet) with a text or image-path column and a label column."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.data.dataset import Dataset
from headstart.data.labels import normalize_labels, plain_label, warn_placeholders
from headstart.data.splits import normalize_split_name
from headstart.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")


def is_table(path: Path) -> bool:
    return path.suffix.lower() in TABLE_SUFFIXES


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table by its extension, with an error that names the file and the problem."""
    import pandas as pd  # here, not at module level: the ONNX inference path never reads tables

    p = Path(path)
    if not p.is_file():
        raise DataError(f"table {p} does not exist.")
    suffix = p.suffix.lower()
    if suffix in (".csv", ".tsv"):
        _check_header(p, "\t" if suffix == ".tsv" else ",")
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
    except UnicodeDecodeError as e:
        raise DataError(_decode_error_message(p, e)) from e
    except Exception as e:  # pandas' parsers raise a zoo of exception types on malformed files
        detail = str(e).strip() or type(e).__name__
        raise DataError(f"cannot read {p} as {suffix[1:].upper()}: {detail[:300]}. Check that the file is a "
                        f"valid {suffix[1:].upper()} table (it is read by its extension).") from e
    raise DataError(f"{p}: unsupported table type {suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}.")


def _check_header(path: Path, sep: str) -> None:
    """Refuse repeated column names: pandas would silently rename the second ``label`` to ``label.1``."""
    import csv

    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
            header = next(csv.reader(f, delimiter=sep), [])
    except (csv.Error, OSError):
        return  # pandas reports what is wrong with the file
    counts = Counter(name for name in header if name.strip())
    repeated = [name for name, n in counts.items() if n > 1]
    if repeated:
        where = "; ".join(f"{name!r} in columns {', '.join(str(i + 1) for i, h in enumerate(header) if h == name)}"
                          for name in repeated)
        raise DataError(f"{path}: the header names a column more than once ({where}). Rename or delete the "
                        "repeated columns so each name is used once.")


def _decode_error_message(path: Path, error: UnicodeDecodeError) -> str:
    """Where the file stops being UTF-8: its line and the bytes there, and how to convert it."""
    try:
        raw = path.read_bytes()
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        start = raw.rfind(b"\n", 0, e.start) + 1
        context = raw[start:e.start + 20].split(b"\n")[0].decode("utf-8", errors="replace")
        bad = sum(1 for row in raw.split(b"\n") if not _is_utf8(row))
        utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")
        guess = "UTF-16" if utf16 else "WINDOWS-1252"
        return (f"{path} is not UTF-8 text: line {line} has byte 0x{raw[e.start]:02x}, which UTF-8 cannot decode "
                f"(near {context[:60]!r}; {bad} line{'s' if bad > 1 else ''} in all). headstart reads tables as "
                f"UTF-8: save the file as UTF-8 (a spreadsheet's \"CSV UTF-8\"), or convert it, e.g. "
                f"`iconv -f {guess} -t UTF-8 {path.name} > utf8-{path.name}`.")
    except OSError:
        pass
    return f"{path} is not UTF-8 text ({error.reason}). Save it as UTF-8 and try again."


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def missing(value: Any) -> bool:
    """None, NaN, pandas' NA/NaT, or a blank string."""
    if isinstance(value, str):
        return not value.strip()
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    import pandas as pd

    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def is_file(path: Path) -> bool:
    """``path.is_file()``, False for names the OS refuses (too long, NUL bytes) instead of raising."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _require_column(df: pd.DataFrame, column: str, path: Path, option: str = "", *, usage: str = "") -> None:
    """Refuse a missing column, naming how to give another: ``option`` (``--label-col``: shown as
    ``--label-col NAME``) or the whole ``usage`` (``--col vectors=COLUMN``)."""
    if column not in df.columns:
        present = ", ".join(map(str, df.columns))
        raise DataError(f"{path}: no column {column!r} (columns present: {present}). Pass {usage or f'{option} NAME'}.")


def rows_text(indices: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(i + 1) for i in indices[:limit])
    more = f" and {len(indices) - limit} more" if len(indices) > limit else ""
    return f"row{'s' if len(indices) > 1 else ''} {shown}{more}"


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
    group_col: str | None = None,
    time_col: str | None = None,
    problems: list[dict[str, Any]] | None = None,
    columns: Mapping[str, str] | None = None,
) -> Dataset:
    """Load a table of items (texts, image paths, any modality's column) and labels.

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
        group_col: column of group ids (patient, user...), kept as ``Dataset.groups``: splits made
            by :func:`~headstart.data.splits.assign_splits` keep each group in one split.
        time_col: column of timestamps, kept as ``Dataset.times``: ``assign_splits`` then
            evaluates on items newer than every training item.
        columns: the items' column for any modality, ``{modality: column}`` (one entry);
            ``text_col=`` / ``image_col=`` are short for ``{"text": ...}`` / ``{"image": ...}``.
        problems: when a list is given, rows with no label, an empty text or a missing image
            file are dropped and described here (``row``, ``check``, ``locator``, ``detail``)
            instead of raising: the audit reports them all at once.

    Rows are numbered from 1 in messages (the first data row is row 1).
    """
    from headstart.modalities import get_modality

    p = Path(path)
    df = read_table(p)
    if len(df) == 0:
        raise DataError(f"{p} has no rows.")
    df.columns = [str(c) for c in df.columns]
    repeated = sorted(c for c, n in Counter(df.columns).items() if n > 1)
    if repeated:
        raise DataError(f"{p}: more than one column is named {', '.join(map(repr, repeated))}. Rename them so "
                        "each column name is used once.")
    modality, column = _item_column(df, p, text_col, image_col, columns)
    locators = [f"{p} row {i + 1}" for i in range(len(df))]

    labels = None
    if label_col is not None and (require_labels or label_col in df.columns):
        _require_column(df, label_col, p, "--label-col")
        raw = df[label_col].tolist()
        unlabeled = [i for i, v in enumerate(raw) if missing(v)]
        if unlabeled and problems is not None:
            problems.extend({"row": i, "check": "missing-labels", "locator": locators[i],
                             "detail": f"no label in column {label_col!r}"} for i in unlabeled)
        elif unlabeled:
            raise DataError(
                f"{p}: {rows_text(unlabeled)} {'have' if len(unlabeled) > 1 else 'has'} no label in column "
                f"{label_col!r}. Label them or drop them (run `headstart audit` to list them all)."
            )
        labels = normalize_labels([None if missing(v) else v for v in raw], locators, str(p))
        warn_placeholders(labels, locators, str(p))

    dropped = {pr["row"] for pr in problems} if problems is not None else set()

    def reject(rows: list[int], check: str, detail: str, message: str) -> None:
        if problems is None:
            raise DataError(message)
        problems.extend({"row": i, "check": check, "locator": locators[i], "detail": detail}
                        for i in rows if i not in dropped)
        dropped.update(rows)

    items = get_modality(modality).from_column(df[column].tolist(), p, column, reject)

    splits = None
    if split_col is not None:
        _require_column(df, split_col, p, "--split-col")
        splits = [normalize_split_name(v, locators[i]) for i, v in enumerate(df[split_col].tolist())]
    slices = {}
    wanted = list(slice_cols) + [c for c in optional_slice_cols if c in df.columns and c not in slice_cols]
    for col in wanted:
        _require_column(df, col, p, "--slice-col")
        slices[col] = ["(missing)" if missing(v) else _cell(v) for v in df[col].tolist()]
    for col, option in (extra_cols or {}).items():
        if col not in slices:
            _require_column(df, col, p, option)
            slices[col] = [None if missing(v) else _cell(v) for v in df[col].tolist()]
    columns = {}
    for name, col, option in (("groups", group_col, "--group-col"), ("times", time_col, "--time-col")):
        if col is not None:
            _require_column(df, col, p, option)
            columns[name] = [None if missing(v) else _cell(v) for v in df[col].tolist()]
    dataset = Dataset(items=items, labels=labels, modality=modality, splits=splits, slices=slices,
                      locators=locators, source=str(p), **columns)
    if dropped:
        return dataset.subset([i for i in range(len(df)) if i not in dropped])
    return dataset


def _item_column(df: pd.DataFrame, path: Path, text_col: str | None, image_col: str | None,
                 columns: Mapping[str, str] | None) -> tuple[str, str]:
    """(modality, column) of the items: the one named, else the first column a modality guesses."""
    from headstart.modalities import get_modality, modalities

    if columns is not None and not (isinstance(columns, Mapping)
                                    and all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items())):
        raise DataError(f"columns={columns!r}: give the items' column as {{modality: column name}}, e.g. "
                        "{'vectors': 'readings'}.")
    named = [*(columns or {}).items(), *((m, c) for m, c in (("text", text_col), ("image", image_col)) if c is not None)]
    if len(named) > 1:
        raise DataError(f"{path}: items come from one column; got {', '.join(f'{m} column {c!r}' for m, c in named)}."
                        " Name only one.")
    if named:
        modality, column = named[0]
        _require_column(df, column, path, usage=get_modality(modality).table_option)
        return modality, column
    for scan in (False, True):  # the installed packages' plugins are scanned only when needed
        known = modalities(entry_points=scan)
        for m in known:
            guess = next((c for c in m.column_guesses if c in df.columns), None)
            if guess is not None:
                return m.name, guess
    options = " or ".join(f"{m.table_option} for {m.plural}" for m in known)
    raise DataError(f"{path}: cannot tell which column holds the inputs (columns present: {', '.join(df.columns)}). "
                    f"Pass {options}.")


def _cell(value: Any) -> Any:
    """A table cell as a plain, hashable value (numpy scalars -> Python; lists, dicts -> their text)."""
    value = plain_label(value)
    return value if isinstance(value, (str, int, float)) else str(value)

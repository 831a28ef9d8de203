"""Loading data into a :class:`Dataset`: image folders, tables and in-memory lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from headstart.data.dataset import SPLITS, Dataset
from headstart.data.images import collect_files, load_folder, load_image_folder
from headstart.data.memory import from_memory, infer_modality
from headstart.data.splits import assign_splits, check_classes, check_split_classes
from headstart.data.tables import TABLE_SUFFIXES, is_table, load_table
from headstart.errors import DataError

__all__ = [
    "SPLITS",
    "Dataset",
    "assign_splits",
    "check_classes",
    "check_split_classes",
    "collect_files",
    "from_memory",
    "infer_modality",
    "load_data",
    "load_folder",
    "load_image_folder",
    "load_table",
]


def load_data(
    path: str | Path,
    *,
    text_col: str | None = None,
    image_col: str | None = None,
    label_col: str | None = "label",
    split_col: str | None = None,
    columns: Mapping[str, str] | None = None,
    slice_cols: Sequence[str] = (),
    optional_slice_cols: Sequence[str] = (),
    require_labels: bool = True,
    extra_cols: Mapping[str, str] | None = None,
    group_col: str | None = None,
    time_col: str | None = None,
    problems: list[dict[str, Any]] | None = None,
) -> Dataset:
    """Load labeled data from a folder of class sub-folders (of image files, or any modality's) or a table.

    Example:
        >>> ds = load_data("emails.jsonl", text_col="text", label_col="label")  # doctest: +SKIP
        >>> ds = load_data("animal-silhouettes/")                                # doctest: +SKIP
        >>> ds = load_data("sensors.csv", columns={"vectors": "readings"})       # doctest: +SKIP

    ``columns`` names the items' column for any modality, a plugin's included (``{modality: column}``);
    ``text_col`` / ``image_col`` are short for ``{"text": ...}`` / ``{"image": ...}``.

    ``group_col`` / ``time_col`` name columns of group ids and timestamps (``Dataset.groups`` /
    ``Dataset.times``): splits that :func:`assign_splits` makes keep each group in one split and
    evaluate on items newer than every training item.

    With ``problems=[]``, rows that cannot be used (no label, empty text, missing image file)
    are dropped and described in that list instead of raising (what ``headstart audit`` does).
    """
    p = Path(path)
    if p.is_dir():
        if text_col or image_col or columns or split_col or slice_cols or extra_cols or group_col or time_col:
            raise DataError(
                f"{p} is a folder of class sub-folders; --text-col/--image-col/--col/--split-col/--slice-col (and "
                "--group-col/--time-col) apply to tables only."
            )
        return load_folder(p)
    if not p.exists():
        raise DataError(f"{p} does not exist. Give a folder of class sub-folders or a table file.")
    if is_table(p):
        return load_table(
            p,
            text_col=text_col,
            image_col=image_col,
            columns=columns,
            label_col=label_col,
            split_col=split_col,
            slice_cols=slice_cols,
            optional_slice_cols=optional_slice_cols,
            require_labels=require_labels,
            extra_cols=extra_cols,
            group_col=group_col,
            time_col=time_col,
            problems=problems,
        )
    raise DataError(
        f"{p}: cannot load a {p.suffix or 'suffix-less'} file as data. Use a folder with one "
        f"sub-folder per class, or a table ({', '.join(TABLE_SUFFIXES)})."
    )

"""What `headstart predict` reads: tables, the model's modality's files and folders, or stdin."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from headstart.data import Dataset, load_table
from headstart.data.dataset import concat
from headstart.data.tables import is_table
from headstart.data.text_files import decode_lines
from headstart.errors import DataError
from headstart.modalities import get_modality


def _stdin_lines() -> list[tuple[int, str]]:
    if sys.stdin is None or sys.stdin.isatty():
        raise DataError("no inputs given and nothing piped on stdin: pass files or folders, or pipe text lines in.")
    # Bytes, decoded like a file's: the locale's strict decoder would crash on one bad byte.
    stream = getattr(sys.stdin, "buffer", None)
    raw = stream.read() if stream is not None else sys.stdin.read().encode("utf-8", errors="surrogateescape")
    return decode_lines(raw, "<stdin>")


def read_inputs(
    inputs: list[str],
    modality: str,
    *,
    text_col: str | None = None,
    image_col: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> Dataset:
    """Unlabeled items from the command line's inputs, in the order given: tables, files and folders
    the model's modality reads (text files: one text per line; image files, folders of them), or
    ``-`` for stdin (texts: one per line; images: one path per line). A table's column of items is
    ``text_col`` / ``image_col`` / ``columns`` (``{modality: column}``), else the one the modalities guess."""
    kind = get_modality(modality)
    parts: list[Dataset] = []
    for raw in inputs:
        if raw == "-":
            items, locators = kind.from_lines(_stdin_lines(), "<stdin>")
            parts.append(Dataset(items=items, labels=None, modality=modality, locators=locators, source="<stdin>"))
            continue
        path = Path(raw)
        if path.is_file() and is_table(path):
            table = load_table(path, text_col=text_col, image_col=image_col, columns=columns, label_col=None,
                               require_labels=False)
            if table.modality != modality:
                raise DataError(f"{path} holds {table.modality} but the model takes {modality}; "
                                f"pass {kind.table_option}.")
            parts.append(table)
        else:
            items, locators = kind.read_input(path)
            parts.append(Dataset(items=items, labels=None, modality=modality, locators=locators, source=str(path)))
    parts = [p for p in parts if len(p)]
    if not parts:
        raise DataError("the inputs hold no items to predict.")
    return concat(*parts)

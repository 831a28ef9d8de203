"""What `headstart predict` reads: image files and folders, tables, text files, or stdin."""

from __future__ import annotations

import sys
from pathlib import Path

from headstart.data import Dataset, collect_image_paths, load_table
from headstart.data.dataset import concat
from headstart.data.tables import is_table
from headstart.data.text_files import decode_lines, read_text_lines
from headstart.errors import DataError


def _stdin_lines() -> list[tuple[int, str]]:
    if sys.stdin is None or sys.stdin.isatty():
        raise DataError("no inputs given and nothing piped on stdin: pass files or folders, or pipe text lines in.")
    # Bytes, decoded like a file's: the locale's strict decoder would crash on one bad byte.
    stream = getattr(sys.stdin, "buffer", None)
    raw = stream.read() if stream is not None else sys.stdin.read().encode("utf-8", errors="surrogateescape")
    return decode_lines(raw, "<stdin>")


def _text_lines(source: str, numbered: list[tuple[int, str]]) -> Dataset:
    return Dataset(items=[text for _, text in numbered], labels=None, modality="text",
                   locators=[f"{source} line {n}" for n, _ in numbered], source=source)


def read_inputs(
    inputs: list[str],
    modality: str,
    *,
    text_col: str | None = None,
    image_col: str | None = None,
) -> Dataset:
    """Unlabeled items from the command line's inputs, in the order given."""
    parts: list[Dataset] = []
    for raw in inputs:
        if raw == "-":
            lines = _stdin_lines()
            if modality == "text":
                parts.append(_text_lines("<stdin>", lines))
            else:
                paths = collect_image_paths([line for _, line in lines])
                parts.append(Dataset(items=paths, labels=None, modality="image",
                                     locators=[str(p) for p in paths], source="<stdin>"))
            continue
        path = Path(raw)
        if path.is_file() and is_table(path):
            table = load_table(path, text_col=text_col, image_col=image_col, label_col=None, require_labels=False)
            if table.modality != modality:
                raise DataError(f"{path} holds {table.modality} but the model takes {modality}; "
                                f"pass --{'text' if modality == 'text' else 'image'}-col.")
            parts.append(table)
        elif modality == "text":
            if not path.is_file():
                raise DataError(f"{path} is not a file; for a text model give a table, a text file "
                                "(one text per line) or '-' for stdin.")
            parts.append(_text_lines(str(path), read_text_lines(path)))
        else:
            paths = collect_image_paths([path])
            parts.append(Dataset(items=paths, labels=None, modality="image",
                                 locators=[str(p) for p in paths], source=str(path)))
    parts = [p for p in parts if len(p)]
    if not parts:
        raise DataError("the inputs hold no items to predict.")
    return concat(*parts)

"""Class folders: one sub-folder per class (optionally under train/ val/ test/) of files holding one
item each: images, or any modality that declares ``file_suffixes``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from headstart.data.dataset import Dataset
from headstart.data.splits import SPLIT_ALIASES
from headstart.errors import DataError

logger = logging.getLogger(__name__)


def _has_suffix(path: Path, suffixes: frozenset[str]) -> bool:
    return path.suffix.lower() in suffixes and not path.name.startswith(".")


def _files(folder: Path, suffixes: frozenset[str]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and _has_suffix(p, suffixes))


def _folder_modality(root: Path) -> Any:
    """The modality whose files the folder holds (the one with files, when several could)."""
    from headstart.modalities import modalities

    readers = [m for m in modalities() if m.file_suffixes]
    suffixes = {p.suffix.lower() for p in root.rglob("*") if not p.name.startswith(".") and p.is_file()}
    found = [m for m in readers if suffixes & m.file_suffixes]
    if len(found) > 1:
        raise DataError(f"{root} holds files of several kinds ({', '.join(m.plural for m in found)}); put one kind of "
                        "item in a data folder.")
    if not found and len(readers) == 1:
        return readers[0]  # its own message says what it looked for
    if not found:
        kinds = "; ".join(f"{m.plural}: {', '.join(sorted(m.file_suffixes))}" for m in readers)
        raise DataError(f"no data files found in {root}. Expected one sub-folder per class with files ({kinds}); "
                        "for texts use a table (CSV, JSONL...).")
    return found[0]


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_image_folder(path: str | Path) -> Dataset:
    """Load ``path/<class>/*.png`` or ``path/{train,val,test}/<class>/*.png`` (see :func:`load_folder`)."""
    return load_folder(path, modality="image")


def load_folder(path: str | Path, modality: str | None = None) -> Dataset:
    """Load ``path/<class>/<files>`` or ``path/{train,val,test}/<class>/<files>``.

    Class names are the sub-folder names. Files nested deeper inside a class folder belong to
    that class. Files of other kinds are skipped. ``modality``: whose files to read (default: the
    modality whose ``file_suffixes`` the folder's files have; images unless a plugin adds others).
    """
    from headstart.modalities import get_modality

    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder of {get_modality(modality).plural if modality else 'data files'}.")
    kind = get_modality(modality) if modality else _folder_modality(root)
    subdirs = _class_dirs(root)
    split_dirs = {d: SPLIT_ALIASES[d.name.lower()] for d in subdirs if d.name.lower() in SPLIT_ALIASES}
    items: list[Path] = []
    labels: list[str] = []
    splits: list[str] = []
    if split_dirs:
        others = [d.name for d in subdirs if d not in split_dirs]
        if others:
            raise DataError(
                f"{root} mixes split folders ({', '.join(d.name for d in split_dirs)}) with other "
                f"folders ({', '.join(others)}). Put every class folder inside train/ val/ test/, "
                "or use class folders only."
            )
        for split_dir, split in split_dirs.items():
            for item, label in _scan_classes(split_dir, kind):
                items.append(item)
                labels.append(label)
                splits.append(split)
    else:
        for item, label in _scan_classes(root, kind):
            items.append(item)
            labels.append(label)
    if not items:
        raise DataError(
            f"no {kind.plural} found in {root}. Expected one sub-folder per class with {kind.name} files "
            f"({', '.join(sorted(kind.file_suffixes)[:6])}...)."
        )
    return Dataset(
        items=[kind.item_from_file(p) for p in items],
        labels=labels,
        modality=kind.name,
        splits=splits or None,
        locators=[str(p) for p in items],
        source=str(root),
    )


def _scan_classes(folder: Path, kind: Any) -> list[tuple[Path, str]]:
    classes = _class_dirs(folder)
    loose = [p for p in folder.iterdir() if p.is_file() and _has_suffix(p, kind.file_suffixes)]
    if loose and not classes:
        raise DataError(
            f"{folder} holds {kind.plural} but no class sub-folders, so the labels are unknown. "
            f"Move each file into a folder named after its class (e.g. {folder}/cat/{loose[0].name})."
        )
    if loose:
        logger.warning("%s: %d %s outside class folders are ignored", folder, len(loose), kind.plural)
    found = []
    for class_dir in classes:
        files = _files(class_dir, kind.file_suffixes)
        if not files:
            raise DataError(f"class folder {class_dir} has no {kind.name} files; add {kind.plural} or remove the "
                            "folder.")
        found.extend((f, class_dir.name) for f in files)
    return found


def collect_files(inputs: list[str | Path], suffixes: frozenset[str], noun: str = "data") -> list[Path]:
    """Expand files and folders (searched recursively for files with ``suffixes``) into a list of files."""
    paths: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = _files(p, suffixes)
            if not found:
                raise DataError(f"no {noun} files in folder {p} (looked for {', '.join(sorted(suffixes))}).")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise DataError(f"{p} does not exist.")
    return paths

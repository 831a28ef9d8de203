"""Image folders: one sub-folder per class, optionally under train/ val/ test/."""

from __future__ import annotations

import logging
from pathlib import Path

from headstart.data.dataset import Dataset
from headstart.data.items import is_image_path
from headstart.data.splits import SPLIT_ALIASES
from headstart.errors import DataError

logger = logging.getLogger(__name__)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p))


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_image_folder(path: str | Path) -> Dataset:
    """Load ``path/<class>/*.png`` or ``path/{train,val,test}/<class>/*.png``.

    Class names are the sub-folder names. Images nested deeper inside a class folder
    belong to that class. Files that are not images are skipped.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder of images.")
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
            for item, label in _scan_classes(split_dir):
                items.append(item)
                labels.append(label)
                splits.append(split)
    else:
        for item, label in _scan_classes(root):
            items.append(item)
            labels.append(label)
    if not items:
        raise DataError(
            f"no images found in {root}. Expected one sub-folder per class with image files "
            f"({', '.join(sorted({'.png', '.jpg', '.jpeg', '.bmp', '.webp'}))}...)."
        )
    return Dataset(
        items=items,
        labels=labels,
        modality="image",
        splits=splits or None,
        locators=[str(p) for p in items],
        source=str(root),
    )


def _scan_classes(folder: Path) -> list[tuple[Path, str]]:
    classes = _class_dirs(folder)
    loose = [p for p in folder.iterdir() if p.is_file() and is_image_path(p)]
    if loose and not classes:
        raise DataError(
            f"{folder} holds images but no class sub-folders, so the labels are unknown. "
            f"Move each image into a folder named after its class (e.g. {folder}/cat/{loose[0].name})."
        )
    if loose:
        logger.warning("%s: %d images outside class folders are ignored", folder, len(loose))
    found = []
    for class_dir in classes:
        files = _image_files(class_dir)
        if not files:
            raise DataError(f"class folder {class_dir} has no image files; add images or remove the folder.")
        found.extend((f, class_dir.name) for f in files)
    return found


def collect_image_paths(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders (searched recursively) into a sorted list of image files."""
    paths: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = _image_files(p)
            if not found:
                raise DataError(f"no image files in folder {p}.")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise DataError(f"{p} does not exist.")
    return paths

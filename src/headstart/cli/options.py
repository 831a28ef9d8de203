"""What the commands share: the common options (``Annotated`` types, so every command spells them
alike), the terminal setup (logging and progress bars on stderr) and ``--cache-dir`` / ``--no-cache``
turned into the library's ``cache`` argument."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler

from headstart.cli import render
from headstart.errors import ConfigError
from headstart.modalities import get_modality

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or warnings on stderr.")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Embedding cache folder (default: $HEADSTART_CACHE or ~/.cache/headstart)."),
]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write cached features.")]
Device = Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N.")]
BatchSize = Annotated[int, typer.Option(min=1, help="Items per forward pass.")]
TextCol = Annotated[str | None, typer.Option("--text-col", help="Table column with the texts.")]
ImageCol = Annotated[str | None, typer.Option("--image-col", help="Table column with image paths.")]
LabelCol = Annotated[str, typer.Option("--label-col", help="Table column with the labels.")]
ItemCol = Annotated[
    str | None,
    typer.Option("--col", metavar="MODALITY=COLUMN",
                 help="Table column with the items, for any modality (a plugin's too): --col vectors=readings; "
                      "--col text=body is --text-col body."),
]


def setup_terminal(quiet: bool, verbose: bool = False) -> render.RichProgress | None:
    """Log to stderr (errors only when ``quiet``, info when ``verbose``); the progress bars, or ``None`` when quiet."""
    level = logging.ERROR if quiet else (logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(message)s", force=True,
                        handlers=[RichHandler(console=render.stderr, show_time=False, show_path=False)])
    for noisy in ("transformers", "timm", "huggingface_hub", "accelerate"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return None if quiet else render.RichProgress()


def item_columns(col: str | None, text_col: str | None = None, image_col: str | None = None) -> dict[str, str] | None:
    """``--col MODALITY=COLUMN`` as the library's ``columns`` argument (``None`` when not given), checked:
    the form, the modality (a known one) and no second way of naming the column."""
    if col is None:
        return None
    modality, sep, column = col.partition("=")
    modality, column = modality.strip(), column.strip()
    if not sep or not modality or not column:
        raise ConfigError(f"--col {col!r} is not MODALITY=COLUMN; name the modality and the table column that "
                          "holds its items, e.g. --col vectors=readings or --col text=body.")
    try:
        get_modality(modality)
    except ConfigError as e:
        raise ConfigError(f"--col {col}: {e}") from e
    given = [f"{name} {value}" for name, value in (("--text-col", text_col), ("--image-col", image_col)) if value]
    if given:
        raise ConfigError(f"--col {col} and {' and '.join(given)} both name the items' column; the items come "
                          "from one column: give only one of them.")
    return {modality: column}


def cache_arg(cache_dir: Path | None, no_cache: bool) -> bool | Path:
    """The library's ``cache`` argument: ``False`` (none), a folder, or ``True`` (the default folder)."""
    if no_cache:
        return False
    return cache_dir if cache_dir is not None else True

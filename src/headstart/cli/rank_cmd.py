"""``headstart rank``: pretrained backbones ranked for your labels without fine-tuning them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from headstart.cli import render
from headstart.cli.options import (
    BatchSize,
    CacheDir,
    Device,
    ImageCol,
    ItemCol,
    Json,
    LabelCol,
    NoCache,
    Quiet,
    TextCol,
    cache_arg,
    item_columns,
    setup_terminal,
)


def rank_cmd(
    data: Annotated[Path, typer.Argument(help="A folder of class sub-folders, or a CSV/TSV/JSONL/Parquet table.")],
    candidates: Annotated[str, typer.Option(help="Comma-separated backbone names, 'offline' (every installed one for the data's modality) or 'all'; random:NAME adds a randomly initialised control.")] = "offline",
    text_col: TextCol = None,
    image_col: ImageCol = None,
    col: ItemCol = None,
    label_col: LabelCol = "label",
    split_col: Annotated[str | None, typer.Option("--split-col", help="Column of train/val/test values (test items are never scored).")] = None,
    max_items: Annotated[int, typer.Option(min=20, help="Score at most this many labeled items (stratified sample).")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed for the sample and the cross-validation folds.")] = 0,
    batch_size: BatchSize = 32,
    device: Device = "auto",
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    quiet: Quiet = False,
    json_: Json = False,
) -> None:
    """Rank pretrained backbones for your labels without fine-tuning them: LogME, H-score, NCE, LEEP,
    kNN and linear-probe accuracy, size and measured latency, and a recommendation."""
    from headstart.transferability import rank

    progress = setup_terminal(quiet)
    columns = item_columns(col, text_col, image_col)

    def announce(c: Any) -> None:
        if not quiet:
            what = (f"probe {c.scores['linear_probe']:.3f}, LogME {c.scores['logme']:.3f} ({c.seconds:.0f}s)"
                    if c.scores else f"skipped: {c.error}")
            render.stderr.print(f"[dim]· {c.name}: {what}[/]", highlight=False)

    report = rank(data, candidates, text_col=text_col, image_col=image_col, columns=columns,
                  label_col=label_col, split_col=split_col, max_items=max_items, cache=cache_arg(cache_dir, no_cache),
                  batch_size=batch_size, device=device, seed=seed, progress=progress, on_candidate=announce)
    if json_:
        render.print_json(report.to_dict())
        return
    render.rank_table(report.to_dict())

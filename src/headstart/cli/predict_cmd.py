"""``headstart predict`` (labels for new items) and ``headstart evaluate`` (every metric on labeled data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from headstart.cli import render
from headstart.cli.options import (
    BatchSize,
    CacheDir,
    Device,
    ImageCol,
    ItemCol,
    Json,
    NoCache,
    Quiet,
    TextCol,
    cache_arg,
    item_columns,
    setup_terminal,
)
from headstart.serving.engine_names import EngineName


def predict(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder written by `headstart fit`.")],
    inputs: Annotated[list[str] | None, typer.Argument(help="Image files/folders, a table, or '-' (default) for text lines on stdin.")] = None,
    engine: Annotated[EngineName, typer.Option(help="auto: onnx when the bundle has been exported (`headstart export`), else torch; onnx-int8 needs `export --quantize int8`.")] = EngineName.auto,
    text_col: TextCol = None,
    image_col: ImageCol = None,
    col: ItemCol = None,
    batch_size: BatchSize = 32,
    device: Annotated[str, typer.Option(help="torch engine: auto (CUDA when present), cpu, cuda, cuda:N.")] = "auto",
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    quiet: Quiet = False,
    json_: Json = False,
) -> None:
    """Predict labels (and probabilities) for new items."""
    from headstart.cli.inputs import read_inputs
    from headstart.serving.engine import load_engine

    progress = setup_terminal(quiet)
    columns = item_columns(col, text_col, image_col)
    runner = load_engine(bundle, engine.value, batch_size=batch_size, device=device,
                         cache=cache_arg(cache_dir, no_cache))
    dataset = read_inputs(inputs or ["-"], runner.modality, text_col=text_col, image_col=image_col,
                          columns=columns)
    proba = _predict_with_progress(runner, dataset.items, progress)
    classes = runner.classes
    rows = []
    for loc, item, p in zip(dataset.locators, dataset.items, proba):
        best = int(p.argmax())
        rows.append({"item": render_item(dataset.modality, item, loc),
                     "label": classes[best], "confidence": float(p[best]),
                     "probabilities": {str(c): float(v) for c, v in zip(classes, p)}})
    if json_:
        render.print_json({"bundle": str(bundle), "engine": runner.name, "predictions": rows})
        return
    table = Table(show_header=True)
    table.add_column("item")
    table.add_column("label")
    table.add_column("confidence", justify="right")
    for r in rows:
        table.add_row(r["item"], str(r["label"]), f"{r['confidence']:.3f}")
    render.stdout.print(table)


def _predict_with_progress(runner: Any, items: list[Any], progress: render.RichProgress | None) -> Any:
    """``runner.predict_proba`` in chunks, advancing the progress bar (one chunk: no bar)."""
    import numpy as np

    chunk = runner.batch_size * 8
    if progress is None or len(items) <= chunk:
        return runner.predict_proba(items)
    parts = []
    progress.start(f"predict · {runner.name}", len(items))
    try:
        for start in range(0, len(items), chunk):
            parts.append(runner.predict_proba(items[start:start + chunk]))
            progress.advance(len(parts[-1]))
    finally:
        progress.finish()
    return np.concatenate(parts)


def render_item(modality: str, item: Any, locator: str) -> str:
    """Where the item is and what it holds (a file: its path; a table row: ``row 3: the text...``)."""
    from headstart.modalities import get_modality

    shown = get_modality(modality).describe(item, locator)
    return shown if shown == locator or locator.startswith("<stdin>") else f"{locator}: {shown}"


def evaluate(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder written by `headstart fit`.")],
    data: Annotated[Path, typer.Argument(help="Labeled data: a folder of class sub-folders or a table.")],
    text_col: TextCol = None,
    image_col: ImageCol = None,
    col: ItemCol = None,
    label_col: Annotated[str | None, typer.Option("--label-col", help="Label column (default: as at fit).")] = None,
    split: Annotated[str | None, typer.Option(help="Evaluate one split only (train/val/test): the data's own (--split-col, or train/ val/ test/ folders), or, on the data the bundle was fitted on, the split fit made, re-created.")] = None,
    split_col: Annotated[str | None, typer.Option("--split-col", help="Column of train/val/test values.")] = None,
    slice_col: Annotated[list[str] | None, typer.Option("--slice-col", help="Column to report metrics per value of (default: as at fit).")] = None,
    batch_size: BatchSize = 32,
    device: Device = "auto",
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    quiet: Quiet = False,
    json_: Json = False,
) -> None:
    """Every metric of a bundle on labeled data."""
    from headstart import load
    from headstart.bundle import read_manifest, recreate_fit_split
    from headstart.data import load_data

    progress = setup_terminal(quiet)
    named = {"text_col": text_col, "image_col": image_col, "columns": item_columns(col, text_col, image_col)}
    manifest = read_manifest(bundle, verify=False)
    loader = manifest.get("loader", {})
    table_opts = {}
    if not data.is_dir():  # the items' column: the one named here, else the fit's (any of its three forms)
        if not any(named.values()):
            named = {k: loader.get(k) or None for k in named}
        table_opts = {**named, "split_col": split_col, "slice_cols": slice_col or (),
                      "optional_slice_cols": () if slice_col else loader.get("slice_cols") or ()}
        if split is not None and split_col is None:  # the fit's split: its column, or re-created
            table_opts.update(split_col=loader.get("split_col"), group_col=loader.get("group_col"),
                              time_col=loader.get("time_col"))
    dataset = load_data(data, label_col=label_col or loader.get("label_col") or "label", **table_opts)
    if split is not None:
        if dataset.splits is None:  # the split fit made of this data, re-created and checked
            dataset = recreate_fit_split(dataset, manifest, fix=(
                f"{data} has no split of its own for --split: give its column of train/val/test values with "
                "--split-col COLUMN, or drop --split to evaluate every item."))
        dataset = dataset.split(split)
    clf = load(bundle)
    clf.set_params(batch_size=batch_size, device=device, cache=cache_arg(cache_dir, no_cache))
    metrics = clf.evaluate(dataset, progress=progress)
    if json_:
        render.print_json({"bundle": str(bundle), "data": str(data), "split": split or "all", "metrics": metrics})
        return
    render.metrics_tables(metrics, f"{data}" + (f" ({split} split)" if split else ""))

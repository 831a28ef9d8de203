"""``headstart audit``: the data checks, as a table (or JSON) and an exit code."""

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
    LabelCol,
    NoCache,
    Quiet,
    TextCol,
    cache_arg,
    item_columns,
    setup_terminal,
)

SEVERITY_STYLE = {"severe": "bold red", "warning": "yellow", "info": "cyan", "ok": "green", "skipped": "dim"}


def audit(
    data: Annotated[Path, typer.Argument(help="A folder of class sub-folders, or a CSV/TSV/JSONL/Parquet table.")],
    backbone: Annotated[str, typer.Option(help="Backbone for the embedding checks (near duplicates, label errors, outliers, shift); 'none' skips them.")] = "default",
    text_col: TextCol = None,
    image_col: ImageCol = None,
    col: ItemCol = None,
    label_col: LabelCol = "label",
    split_col: Annotated[str | None, typer.Option("--split-col", help="Column of train/val/test values.")] = None,
    group_col: Annotated[str | None, typer.Option("--group-col", help="Column of group ids (patient, user, session...) that must not span splits.")] = None,
    time_col: Annotated[str | None, typer.Option("--time-col", help="Column of timestamps; evaluation items must not be older than training items.")] = None,
    checks: Annotated[list[str] | None, typer.Option("--check", help="Run only this check (repeatable; default: all).")] = None,
    near_threshold: Annotated[float, typer.Option(min=0.5, max=1.0, help="Cosine similarity at or above which two items are near duplicates.")] = 0.97,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained page with previews of the flagged items.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the cross-validation folds.")] = 0,
    batch_size: BatchSize = 32,
    device: Device = "auto",
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    quiet: Quiet = False,
    json_: Json = False,
) -> None:
    """Find what quietly ruins small-data models: missing labels, unreadable files, duplicates, leakage
    between splits, imbalance, likely label errors, outliers, shift.

    Exit code: 0 when nothing is severe, 1 when a check is severe (leakage, missing labels,
    unreadable files, classes too small to learn) or on an error.
    """
    from headstart.atomic import check_writable
    from headstart.audit import audit as run_audit

    progress = setup_terminal(quiet)
    columns = item_columns(col, text_col, image_col)
    if html is not None:  # before any work: an unwritable page path is a clear error, not a late traceback
        check_writable(html, fix="choose another --html path")
    report = run_audit(data, backbone=None if backbone.lower() == "none" else backbone, text_col=text_col,
                       image_col=image_col, columns=columns, label_col=label_col, split_col=split_col,
                       group_col=group_col, time_col=time_col, checks=checks or None, near_threshold=near_threshold,
                       cache=cache_arg(cache_dir, no_cache), batch_size=batch_size, device=device, seed=seed,
                       progress=progress)
    page = report.write_html(html) if html is not None else None
    if json_:
        render.print_json({**report.to_dict(), "html": str(page) if page else None})
    else:
        _print_audit(report.to_dict(), page)
    if report.severe:
        raise typer.Exit(1)


def _print_audit(result: dict[str, Any], page: Path | None) -> None:
    d = result["data"]
    splits = " · ".join(f"{k} {v}" for k, v in (d.get("split_counts") or {}).items())
    dropped = f"; {d['n_rows_dropped']} rows not loadable" if d.get("n_rows_dropped") else ""
    embed = result["backbone"]["name"] if result["backbone"] else "none"
    render.stdout.print(f"[bold]data[/]      {d['source']} ({d['modality']}, {d['n_items']} items"
                        f"{'; ' + splits if splits else ''}{dropped}); embeddings: {embed}; "
                        f"{result['seconds']:.1f}s", highlight=False)
    table = Table(title="audit", title_justify="left")
    for col, justify in (("severity", "left"), ("check", "left"), ("items", "right"), ("summary", "left"),
                         ("examples", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    checks = {c["name"]: c for c in result["checks"]}
    for s in result["summary"]:
        examples = []
        for f in checks[s["check"]]["findings"][:2]:
            examples.append(f["detail"])
        table.add_row(f"[{SEVERITY_STYLE[s['severity']]}]{s['severity']}[/]", s["check"], str(s["count"]),
                      s["summary"], "\n".join(examples))
    render.stdout.print(table)
    for s in result["summary"]:
        remedy = checks[s["check"]]["remedy"]
        if s["severity"] in ("severe", "warning") and remedy:
            render.stdout.print(f"[{SEVERITY_STYLE[s['severity']]}]{s['check']}[/]: {remedy}", highlight=False)
    if page:
        render.stdout.print(f"[bold]page[/]      {page}", highlight=False)
    verdict = ("[bold red]severe problems found[/] (exit code 1)" if result["severe"]
               else "[green]nothing severe[/] (exit code 0)")
    render.stdout.print(verdict)

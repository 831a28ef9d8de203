"""``headstart report`` (a bundle's evidence as one page) and ``headstart runs`` (the fits recorded
in MLflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from headstart.cli import render
from headstart.cli.options import Json


def report_cmd(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder written by `headstart fit`.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the page (default: BUNDLE/report.html).")] = None,
    json_: Json = False,
) -> None:
    """Write the fit's evidence as one self-contained report.html (verdict, baselines, metrics, plots)."""
    from headstart.bundle import read_manifest
    from headstart.errors import BundleError
    from headstart.report import write_report

    manifest = read_manifest(bundle)
    evidence = manifest.get("report")
    if not evidence:
        raise BundleError(f"{bundle} holds no evidence to report (it was written by an older headstart, or "
                          "saved from Python without it); refit it with `headstart fit`.")
    path = write_report(evidence, out or bundle / "report.html")
    if json_:
        render.print_json({"report_html": str(path), "verdict": evidence.get("verdict")})
        return
    render.stdout.print(f"[bold]report[/]  {path}", highlight=False)


def runs(
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: $HEADSTART_TRACKING_URI or sqlite:///mlruns.db here).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 20,
    json_: Json = False,
) -> None:
    """List the fits recorded in the MLflow store, newest first."""
    from headstart.tracking import list_runs, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    rows = list_runs(uri, limit=limit)
    if json_:
        render.print_json(rows)
        return
    if not rows:
        render.stdout.print(f"no runs recorded in {uri} yet: `headstart fit` records one per fit.", highlight=False)
        return
    table = Table(title=f"runs in {uri}", title_justify="left")
    for col in ("started", "backbone", "strategy", "test acc", "macro f1", "verdict", "bundle"):
        table.add_column(col, justify="right" if col in ("test acc", "macro f1") else "left")
    for r in rows:
        table.add_row(str(r.get("start_time", ""))[:19], str(r.get("backbone") or ""), str(r.get("strategy") or ""),
                      render.fmt(r.get("test_accuracy"), 3), render.fmt(r.get("test_macro_f1"), 3),
                      str(r.get("verdict") or ""), str(r.get("bundle") or ""))
    render.stdout.print(table)

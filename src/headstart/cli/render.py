"""Terminal rendering: rich tables on stdout, progress bars on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from headstart.jsonable import jsonable

# Piped or captured output gets a wide console so tables are never cut to 80 columns.
stdout = Console(width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, soft_wrap=True)  # messages wrap in the terminal, not mid-path


class RichProgress:
    """A :class:`headstart.progress.ProgressReporter` drawing one bar per task on stderr."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: Any = None

    def start(self, description: str, total: int) -> None:
        self.finish()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=stderr, transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(payload, default=str), indent=2) + "\n")


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def human_count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def metrics_tables(metrics: dict[str, Any], title: str) -> None:
    """Summary metrics, the per-class table and the confusion matrix."""
    summary = Table(title=title, title_justify="left", show_header=True)
    for key in ("n", "accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "log_loss"):
        summary.add_column(key.replace("_", " "), justify="right")
    summary.add_row(*(fmt(metrics.get(k)) for k in ("n", "accuracy", "balanced_accuracy", "macro_f1",
                                                       "roc_auc", "log_loss")))
    stdout.print(summary)
    absent = metrics.get("absent_classes") or []
    if absent:
        n_classes = len(metrics["per_class"])
        stdout.print(f"  [yellow]absent from this data[/]: {escape(', '.join(map(str, absent)))} ({len(absent)} of the "
                     f"model's {n_classes} classes; macro-F1 counts each as 0). Macro-F1 over the "
                     f"{n_classes - len(absent)} classes present: {fmt(metrics.get('macro_f1_present'))}",
                     highlight=False)
    if metrics.get("roc_auc_note"):
        stdout.print(f"  ROC-AUC: {metrics['roc_auc_note']}")
    per_class = Table(title="per class", title_justify="left")
    for col in ("label", "precision", "recall", "f1", "support"):
        per_class.add_column(col, justify="left" if col == "label" else "right")
    for row in metrics["per_class"]:
        per_class.add_row(escape(str(row["label"])), fmt(row["precision"], 3), fmt(row["recall"], 3),
                          fmt(row["f1"], 3), str(row["support"]))
    stdout.print(per_class)
    cm = metrics["confusion_matrix"]
    labels = [escape(str(label)) for label in cm["labels"]]
    # Long labels would squeeze the columns: then columns are headed by the class index.
    by_index = len(labels) > 4 and max(map(len, labels)) > 5
    matrix = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
    matrix.add_column("")
    for j, label in enumerate(labels):
        matrix.add_column(str(j) if by_index else label, justify="right")
    for i, (label, row) in enumerate(zip(labels, cm["matrix"])):
        name = f"{i} {label}" if by_index else label
        matrix.add_row(name, *(f"[bold]{v}[/]" if i == j else str(v) for j, v in enumerate(row)))
    stdout.print(matrix)
    for column, rows in metrics.get("slices", {}).items():
        table = Table(title=f"per {column} (worst first)", title_justify="left")
        for col in (column, "n", "accuracy", "macro f1"):
            table.add_column(col, justify="left" if col == column else "right")
        for r in rows:
            table.add_row(escape(str(r["value"])), str(r["n"]), fmt(r["accuracy"], 3), fmt(r["macro_f1"], 3))
        stdout.print(table)


def print_epoch(event: dict[str, Any]) -> None:
    """One line per training epoch on stderr (a training callback)."""
    phase = event.get("phase", {}).get("phase_name")
    mark = " *" if event.get("improved") else ""
    scores = (f"val loss {event['val_loss']:.4f}  val acc {event['val_accuracy']:.4f}{mark}"
              if event.get("val_loss") is not None else "(no validation split: no early stopping)")
    stderr.print(f"{'[' + phase + '] ' if phase else ''}epoch {event['epoch'] + 1}/{event['epochs']}  {scores}",
                 highlight=False)


def auto_decisions(details: dict[str, Any]) -> None:
    """What the auto strategy tried, skipped and chose, with its numbers."""
    table = Table(title=f"auto: chose {details['chosen']} (budget {details['budget_seconds']:.0f}s, "
                        f"{details['examples_per_class']} examples/class, {details['device']})", title_justify="left")
    numbers = ("est. s", "s", "held-out acc", "probe acc", "gain", "needed")
    for col in ("strategy", "ran", *numbers, "why"):
        table.add_column(col, justify="right" if col in numbers else "left")
    for d in details["decisions"]:
        why = d.get("skipped") or "; ".join(filter(None, (d.get("reason"), d.get("judged_by"), d.get("prior"))))
        name = f"[bold]{d['strategy']}[/]" if d.get("chosen") else d["strategy"]
        acc = d.get("cv_accuracy", d.get("val_accuracy"))
        probe = d.get("probe_cv_accuracy", d.get("probe_val_accuracy"))
        table.add_row(name, "yes" if d.get("ran") else "no", fmt(d.get("estimated_seconds"), 1), fmt(d.get("seconds"), 1),
                      fmt(acc, 3), fmt(probe, 3), fmt(d.get("gain"), 3), fmt(d.get("needed"), 3), why)
    stdout.print(table)
    if details["chosen"] == "linear-probe" and any(d.get("ran") for d in details["decisions"][1:]):
        stdout.print("no candidate beat the probe by more than its held-out items can fake (gain > needed), "
                     "nor gained where the benchmarks say it wins: the probe on every label is the model.",
                     highlight=False)
    elif details.get("refitted"):
        stdout.print(f"the winner was refitted on all {details.get('n_refit')} labels.", highlight=False)
    elif details.get("refit_skipped"):
        stdout.print(f"the winner was kept as judged: {details['refit_skipped']}.", highlight=False)


VERDICT_STYLE = {"transfer helps": "bold green", "no significant difference": "bold yellow",
                 "negative transfer": "bold red"}


def comparison_table(rows: list[dict[str, Any]], verdict: dict[str, Any] | None) -> None:
    """Transfer against every baseline on the test split, then the verdict with its evidence."""
    table = Table(title="transfer vs baselines (same labels, same test items)", title_justify="left")
    for col in ("model", "accuracy", "macro f1", "log loss", "ECE", "fit s", "note"):
        table.add_column(col, justify="left" if col in ("model", "note") else "right")
    for r in rows:
        name = f"[bold]{r['name']}[/]" if r["kind"] == "transfer" else r["name"]
        table.add_row(name, fmt(r.get("accuracy"), 3), fmt(r.get("macro_f1"), 3), fmt(r.get("log_loss"), 3),
                      fmt(r.get("ece"), 3), fmt(r.get("fit_seconds"), 1), r.get("note", ""))
    stdout.print(table)
    if verdict:
        style = VERDICT_STYLE.get(verdict["label"], "bold")
        lo, hi = verdict["ci"]
        stdout.print(f"[{style}]verdict: {verdict['label']}[/]  {verdict['difference'] * 100:+.1f} points vs "
                     f"{verdict['baseline']['name']} ({verdict['ci_level']:.0%} CI {lo * 100:+.1f} to {hi * 100:+.1f})",
                     highlight=False)
        stdout.print(verdict["explanation"], highlight=False)


def rank_table(result: dict[str, Any]) -> None:
    """The ranking as a table (best first), the recommendation and the time it took."""
    d = result["data"]
    stdout.print(f"[bold]data[/]  {d['source']} ({d['modality']}; {d['n_scored']} of {d['n_items']} labeled "
                 f"items scored, {len(d['classes'])} classes)", highlight=False)
    table = Table(title="candidates (best first)", title_justify="left")
    cols = [("#", "right"), ("backbone", "left"), ("combined", "right"), ("probe acc", "right"),
            ("kNN acc", "right"), ("LogME", "right"), ("H-score", "right"), ("LEEP", "right"), ("NCE", "right"),
            ("params", "right"), ("dim", "right"), ("ms/item", "right"), ("input", "left"), ("license", "left"),
            ("offline", "center")]
    for col, justify in cols:
        table.add_column(col, justify=justify)
    place = 0
    for c in result["candidates"]:
        s = c["scores"]
        if not c["available"]:
            table.add_row("", f"[dim]{c['name']}[/]", "", f"[red]unavailable[/]: {c['error']}", *[""] * 11)
            continue
        place += 0 if c["control"] else 1
        name = f"{c['name']} [dim](control)[/]" if c["control"] else c["name"]
        table.add_row("—" if c["control"] else str(place), name, fmt(c["combined"], 2),
                      fmt(s.get("linear_probe"), 3), fmt(s.get("knn"), 3), fmt(s.get("logme"), 3),
                      fmt(s.get("h_score"), 2), fmt(s.get("leep"), 3), fmt(s.get("nce"), 3),
                      human_count(c["n_params"]) if c["n_params"] else "—", str(c["feature_dim"] or "—"),
                      fmt(c["latency_ms"], 1), c["input_size"] or "—", (c["license"] or "—").split(" (")[0],
                      "yes" if c["offline"] else "no")
    stdout.print(table)
    if result["recommended"]:
        stdout.print(f"[bold green]recommended[/] {result['reason']}", highlight=False)
    else:
        stdout.print(f"[bold red]no recommendation[/]: {result['reason']}", highlight=False)
    est = result.get("brute_force_estimate_seconds")
    took = result["seconds"]
    line = f"ranking took {took:.1f}s"
    if est:
        line += (f"; fine-tuning every candidate ({result['settings']['finetune_epochs_assumed']} epochs on "
                 f"{d['n_items']} items) would take about {est / 60:.0f} min here ({est / max(took, 1e-9):.0f}× "
                 "longer; estimated from the measured latency × 3 for the backward pass)")
    stdout.print(line, highlight=False)

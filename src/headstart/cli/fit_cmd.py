"""``headstart fit``: parses the options, calls :func:`headstart.fit` and prints its evidence."""

from __future__ import annotations

import shlex
import sys
from enum import Enum
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


class ClassWeight(str, Enum):
    none = "none"
    balanced = "balanced"


class Loss(str, Enum):
    cross_entropy = "cross-entropy"
    focal = "focal"


class Schedule(str, Enum):
    cosine = "cosine"
    one_cycle = "one-cycle"
    constant = "constant"


def fit(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="A folder of class sub-folders, or a CSV/TSV/JSONL/Parquet table.")],
    out: Annotated[Path | None, typer.Option(help="Bundle folder to write (default: runs/<data name>).")] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone name, or 'auto' (ranked on your training labels, see `headstart rank`); default: minilm (text), efficientnet_lite0 (images).")] = None,
    weights: Annotated[str | None, typer.Option(help="Local .safetensors checkpoint for a timm:ARCH backbone.")] = None,
    strategy: Annotated[str, typer.Option(help="Adaptation strategy.")] = "linear-probe",
    text_col: TextCol = None,
    image_col: ImageCol = None,
    col: ItemCol = None,
    label_col: LabelCol = "label",
    split_col: Annotated[str | None, typer.Option("--split-col", help="Column of train/val/test values.")] = None,
    group_col: Annotated[str | None, typer.Option("--group-col", help="Column of group ids (patient, user, session...): fit stops if a group spans two splits, and splits it makes keep each group whole.")] = None,
    time_col: Annotated[str | None, typer.Option("--time-col", help="Column of timestamps: fit stops if an evaluation item is older than a training item, and splits it makes train on the oldest items, test on the newest.")] = None,
    slice_col: Annotated[list[str] | None, typer.Option("--slice-col", help="Column to report metrics per value of (repeatable).")] = None,
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.9, help="Validation share when the data has no split.")] = 0.1,
    test_fraction: Annotated[float, typer.Option(min=0.0, max=0.9, help="Held-out test share when the data has no split.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed for splits and every random step.")] = 0,
    c: Annotated[float | None, typer.Option("--C", help="Fix the head's inverse regularisation (default: cross-validated).")] = None,
    cv: Annotated[int, typer.Option(min=2, help="Cross-validation folds for choosing C.")] = 5,
    class_weight: Annotated[ClassWeight, typer.Option(help="Weight classes by inverse frequency.")] = ClassWeight.none,
    hybrid: Annotated[str, typer.Option(help="auto: stack the classic model (TF-IDF for text) with the transfer model when that clearly wins in cross-validation; off: never.")] = "auto",
    epochs: Annotated[int | None, typer.Option(min=1, help="Fine-tuning: maximum epochs (early stopping may end sooner).")] = None,
    lr: Annotated[float | None, typer.Option(help="Fine-tuning: learning rate of the head (backbone groups get less).")] = None,
    layer_decay: Annotated[float | None, typer.Option(help="Fine-tuning: each layer group below trains at this fraction of the one above.")] = None,
    unfreeze: Annotated[int | None, typer.Option(min=1, help="partial: how many top layer groups train.")] = None,
    lora_rank: Annotated[int | None, typer.Option(min=1, help="lora: adapter rank.")] = None,
    patience: Annotated[int | None, typer.Option(min=1, help="Fine-tuning: epochs without improvement before stopping.")] = None,
    loss: Annotated[Loss | None, typer.Option(help="Fine-tuning loss.")] = None,
    label_smoothing: Annotated[float | None, typer.Option(min=0.0, max=0.99, help="Fine-tuning: label smoothing.")] = None,
    augment: Annotated[bool | None, typer.Option("--augment/--no-augment", help="Fine-tuning: training-time augmentation (default: on for images, off for text).")] = None,
    grad_accum: Annotated[int | None, typer.Option(min=1, help="Fine-tuning: micro-batches per optimizer step.")] = None,
    schedule: Annotated[Schedule | None, typer.Option(help="Fine-tuning: learning-rate schedule.")] = None,
    budget: Annotated[str | None, typer.Option(help="auto: time budget, e.g. 90s, 10m, 1h (default 10m).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Any setting of the chosen strategy, e.g. --set steps=40 --set pairing=sampled (repeatable; `headstart strategies` lists them).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the interrupted fit whose --out folder this is.")] = None,
    max_length: Annotated[int | None, typer.Option(min=1, help="Token limit for text backbones.")] = None,
    windows: Annotated[int | None, typer.Option(min=1, help="Text backbones: the most windows of --max-length tokens "
                                                "read per long text (default 16; 1: only the first window).")] = None,
    batch_size: BatchSize = 32,
    device: Device = "auto",
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    quiet: Quiet = False,
    json_: Json = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More diagnostics on stderr.")] = False,
    compare: Annotated[bool, typer.Option("--compare/--no-compare", help="Train the baselines (trivial, classic, same network with random weights, from scratch) and state whether transfer helps.")] = True,
    learning_curve: Annotated[bool, typer.Option("--learning-curve/--no-learning-curve", help="Accuracy at 10/25/50/100% of the labels, transfer vs no pretraining.")] = True,
    scratch_budget: Annotated[float | None, typer.Option(min=0.0, help="Wall-clock seconds for the whole from-scratch baseline (default: the fit's own time, at least 15; 0 skips it).")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Refit transfer and baselines with this many seeds and report the spread.")] = 1,
    report: Annotated[bool, typer.Option("--report", help="Also write report.html into the bundle folder.")] = False,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: $HEADSTART_TRACKING_URI or sqlite:///mlruns.db here).")] = None,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not record the run in MLflow.")] = False,
    allow_leakage: Annotated[bool, typer.Option("--allow-leakage", help="Train even when evaluation items are copies of training items (scores will be inflated).")] = False,
) -> None:
    """Fit a classifier on labeled data, evaluate it on a held-out split, prove it against baselines
    and write a bundle."""
    from headstart.strategies.settings import parse_assignments
    from headstart.workflow import fit as fit_workflow

    progress = setup_terminal(quiet, verbose)
    columns = item_columns(col, text_col, image_col)
    settings = parse_assignments(strategy, set_ or [])
    if resume is not None and out is not None and out.resolve() != resume.resolve():
        raise typer.BadParameter("--resume continues the fit in its own folder; drop --out or make them equal.")
    out = out or resume or Path("runs") / (data.stem if data.is_file() else data.resolve().name)
    step = (lambda _msg: None) if quiet else (lambda msg: render.stderr.print(f"[dim]· {msg}[/]", highlight=False))
    result = fit_workflow(
        data, out=out, backbone=backbone, strategy=strategy, text_col=text_col, image_col=image_col,
        columns=columns, label_col=label_col, split_col=split_col, group_col=group_col, time_col=time_col,
        slice_cols=slice_col or (),
        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, resume=resume is not None,
        allow_leakage=allow_leakage, compare=compare, learning_curve=learning_curve, scratch_budget=scratch_budget,
        seeds=seeds, report=report, track=not no_track, tracking_uri=tracking_uri,
        command=shlex.join(["headstart", *(ctx.obj or {}).get("argv", sys.argv[1:])]),
        progress=progress, callbacks={} if quiet else {"on_epoch_end": [render.print_epoch]}, step=step,
        on_audit=None if quiet else _print_preflight,
        weights=weights, C=c, cv=cv, class_weight=None if class_weight is ClassWeight.none else class_weight.value,
        hybrid=hybrid, max_length=max_length, windows=windows, batch_size=batch_size, device=device, cache=cache_arg(cache_dir, no_cache),
        epochs=epochs, lr=lr, layer_decay=layer_decay, unfreeze=unfreeze, lora_rank=lora_rank, patience=patience,
        loss=loss.value if loss else None, label_smoothing=label_smoothing, augment=augment, grad_accum=grad_accum,
        schedule=schedule.value if schedule else None, budget=budget, strategy_params=settings or None,
    )
    if result.bundle is None:
        return  # under `accelerate launch`, one process writes the bundle and reports
    if json_:
        render.print_json(result.to_dict())
        return
    _print_fit_summary(result.to_dict())


def _print_preflight(checked: Any) -> None:
    for check in checked.checks:
        if check.severity in ("warning", "severe"):
            render.stderr.print(f"[yellow]audit:[/] {check.name}: {check.summary}. {check.remedy}", highlight=False)


def _print_fit_summary(result: dict[str, Any]) -> None:
    d, b, s = result["data"], result["backbone"], result["strategy"]
    splits = " · ".join(f"{k} {v}" for k, v in d["split_counts"].items())
    render.stdout.print(f"[bold]data[/]      {d['source']} ({d['modality']}, {d['n_items']} items, "
                        f"{len(d['classes'])} classes; {splits}) fingerprint {d['fingerprint'][:12]}")
    render.stdout.print(f"[bold]backbone[/]  {b['name']} ({render.human_count(b['n_params'])} params, "
                        f"{b['feature_dim']}-d, {'offline' if b['offline'] else 'hub'}) — {b['source']}")
    chosen = f"{s['features']} features, C={s['C']:g} ({s['selection']})" if s.get("selection") else ""
    render.stdout.print(f"[bold]strategy[/]  {s['name']} {chosen}; {result['fit_seconds']:.1f}s")
    hybrid = s.get("hybrid") or {}
    if hybrid.get("used"):
        stacked = hybrid["cv_accuracy"][f"w={hybrid['weight']:g}"]
        render.stdout.print(f"[bold]hybrid[/]    stacked with classic TF-IDF (transfer weight {hybrid['weight']:.1f}): "
                            f"cross-validated accuracy {hybrid['transfer_cv_accuracy']:.3f} alone, {stacked:.3f} stacked")
    if s["name"] == "auto":
        render.auto_decisions(s)
    for phase in s.get("phases", []):
        render.stdout.print(f"  phase {phase['phase']}: {phase['epochs_run']} epochs, best epoch {phase['best_epoch']}"
                            f"{' (stopped early)' if phase['stopped_early'] else ''}")
    if "test" in result["metrics"]:
        render.metrics_tables(result["metrics"]["test"], "held-out test split")
    else:
        render.stdout.print("no test split: nothing held out to evaluate on (use --test-fraction or a test split).")
    if result.get("comparison") and len(result["comparison"]) > 1:
        render.comparison_table(result["comparison"], result.get("verdict"))
    render.stdout.print(f"[bold]bundle[/]    {result['bundle']}")
    if result.get("report_html"):
        render.stdout.print(f"[bold]report[/]    {result['report_html']}")
    if result.get("tracking"):
        t = result["tracking"]
        render.stdout.print(f"[bold]tracked[/]   MLflow run {t['run_id']} in {t['uri']}", highlight=False)

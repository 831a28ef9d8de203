"""The ``headstart`` command. Thin: every command parses options and calls the library.

Results go to stdout (a table, or JSON with ``--json``); progress and diagnostics go to
stderr. Exit codes: 0 ok, 1 error (bad data, missing model...), 2 usage.
"""

from __future__ import annotations

import logging
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.logging import RichHandler
from rich.table import Table

from headstart.cli import render
from headstart.errors import HeadstartError
from headstart.serving.engine_names import EngineName

app = typer.Typer(
    name="headstart",
    help="Transfer learning on small labeled datasets: audit, adapt a pretrained backbone, prove it, ship it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cache_app = typer.Typer(help="Inspect or clear the embedding cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


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


def _setup(quiet: bool, verbose: bool = False) -> render.RichProgress | None:
    level = logging.ERROR if quiet else (logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(message)s", force=True,
                        handlers=[RichHandler(console=render.stderr, show_time=False, show_path=False)])
    for noisy in ("transformers", "timm", "huggingface_hub", "accelerate"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return None if quiet else render.RichProgress()


def _cache_arg(cache_dir: Path | None, no_cache: bool) -> bool | Path:
    if no_cache:
        return False
    return cache_dir if cache_dir is not None else True


# ------------------------------------------------------------------ backbones
@app.command()
def backbones(
    pattern: Annotated[str, typer.Argument(help="Shell-style name filter, e.g. 'efficientnet*'.")] = "*",
    all_: Annotated[bool, typer.Option("--all", help="Include the tiny test backbones.")] = False,
    json_: Json = False,
) -> None:
    """List the backbones you can use (and which work offline)."""
    from headstart.backbones import list_backbones

    rows = [b.to_dict() for b in list_backbones(pattern, include_test=all_)]
    if json_:
        render.print_json(rows)
        return
    table = Table(title="backbones", title_justify="left")
    for col, justify in (("name", "left"), ("modality", "left"), ("params", "right"), ("feature dim", "right"),
                         ("offline", "center"), ("license", "left"), ("description", "left")):
        table.add_column(col, justify=justify)
    for r in rows:
        table.add_row(r["name"], r["modality"], render.human_count(r["n_params"]), str(r["feature_dim"]),
                      "yes" if r["offline"] else "[red]no[/]", r["license"], r["description"])
    render.stdout.print(table)
    render.stdout.print(
        "Also accepted by --backbone: timm:ARCH (any timm model; weights from the hub, or "
        "--weights FILE.safetensors offline), hf:MODEL_ID (any Hugging Face encoder), or a local "
        "model folder."
    )


@app.command()
def strategies(
    name: Annotated[str | None, typer.Argument(help="One strategy (default: all).")] = None,
    json_: Json = False,
) -> None:
    """List the strategies and their settings (set them with `fit --set KEY=VALUE`)."""
    from headstart.strategies import STRATEGIES, create_strategy

    if name is not None and name not in STRATEGIES:
        create_strategy(name)  # the error, with a "did you mean"
    chosen = [name] if name else list(STRATEGIES)
    if json_:
        render.print_json({n: {"description": STRATEGIES[n].description,
                               "settings": {s.name: {"type": s.expected(), "default": s.default, "help": s.help}
                                            for s in STRATEGIES[n].settings}} for n in chosen})
        return
    for n in chosen:
        render.stdout.print(f"[bold]{n}[/]  {STRATEGIES[n].description}", highlight=False)
        for s in STRATEGIES[n].settings:
            render.stdout.print(f"  {s.describe()}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------- audit
SEVERITY_STYLE = {"severe": "bold red", "warning": "yellow", "info": "cyan", "ok": "green", "skipped": "dim"}


@app.command()
def audit(
    data: Annotated[Path, typer.Argument(help="A folder of class sub-folders, or a CSV/TSV/JSONL/Parquet table.")],
    backbone: Annotated[str, typer.Option(help="Backbone for the embedding checks (near duplicates, label errors, outliers, shift); 'none' skips them.")] = "default",
    text_col: TextCol = None,
    image_col: ImageCol = None,
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

    progress = _setup(quiet)
    if html is not None:  # before any work: an unwritable page path is a clear error, not a late traceback
        check_writable(html, fix="choose another --html path")
    report = run_audit(data, backbone=None if backbone.lower() == "none" else backbone, text_col=text_col,
                       image_col=image_col, label_col=label_col, split_col=split_col, group_col=group_col,
                       time_col=time_col, checks=checks or None, near_threshold=near_threshold,
                       cache=_cache_arg(cache_dir, no_cache), batch_size=batch_size, device=device, seed=seed,
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


# ----------------------------------------------------------------------- rank
@app.command("rank")
def rank_cmd(
    data: Annotated[Path, typer.Argument(help="A folder of class sub-folders, or a CSV/TSV/JSONL/Parquet table.")],
    candidates: Annotated[str, typer.Option(help="Comma-separated backbone names, 'offline' (every installed one for the data's modality) or 'all'; random:NAME adds a randomly initialised control.")] = "offline",
    text_col: TextCol = None,
    image_col: ImageCol = None,
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

    progress = _setup(quiet)

    def announce(c: Any) -> None:
        if not quiet:
            what = (f"probe {c.scores['linear_probe']:.3f}, LogME {c.scores['logme']:.3f} ({c.seconds:.0f}s)"
                    if c.scores else f"skipped: {c.error}")
            render.stderr.print(f"[dim]· {c.name}: {what}[/]", highlight=False)

    report = rank(data, candidates, text_col=text_col, image_col=image_col, label_col=label_col,
                  split_col=split_col, max_items=max_items, cache=_cache_arg(cache_dir, no_cache),
                  batch_size=batch_size, device=device, seed=seed, progress=progress, on_candidate=announce)
    if json_:
        render.print_json(report.to_dict())
        return
    render.rank_table(report.to_dict())


# ------------------------------------------------------------------------ fit
@app.command()
def fit(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="A folder of class sub-folders, or a CSV/TSV/JSONL/Parquet table.")],
    out: Annotated[Path | None, typer.Option(help="Bundle folder to write (default: runs/<data name>).")] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone name, or 'auto' (ranked on your training labels, see `headstart rank`); default: minilm (text), efficientnet_lite0 (images).")] = None,
    weights: Annotated[str | None, typer.Option(help="Local .safetensors checkpoint for a timm:ARCH backbone.")] = None,
    strategy: Annotated[str, typer.Option(help="Adaptation strategy.")] = "linear-probe",
    text_col: TextCol = None,
    image_col: ImageCol = None,
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
    batch_size: BatchSize = 32,
    device: Device = "auto",
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    quiet: Quiet = False,
    json_: Json = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More diagnostics on stderr.")] = False,
    compare: Annotated[bool, typer.Option("--compare/--no-compare", help="Train the baselines (trivial, classic, same network with random weights, from scratch) and state whether transfer helps.")] = True,
    learning_curve: Annotated[bool, typer.Option("--learning-curve/--no-learning-curve", help="Accuracy at 10/25/50/100% of the labels, transfer vs no pretraining.")] = True,
    scratch_budget: Annotated[float | None, typer.Option(min=0.0, help="Seconds for the from-scratch network (default: the fit's own time, at least 60; 0 skips it).")] = None,
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

    progress = _setup(quiet, verbose)
    settings = parse_assignments(strategy, set_ or [])
    if resume is not None and out is not None and out.resolve() != resume.resolve():
        raise typer.BadParameter("--resume continues the fit in its own folder; drop --out or make them equal.")
    out = out or resume or Path("runs") / (data.stem if data.is_file() else data.resolve().name)
    step = (lambda _msg: None) if quiet else (lambda msg: render.stderr.print(f"[dim]· {msg}[/]", highlight=False))
    result = fit_workflow(
        data, out=out, backbone=backbone, strategy=strategy, text_col=text_col, image_col=image_col,
        label_col=label_col, split_col=split_col, group_col=group_col, time_col=time_col, slice_cols=slice_col or (),
        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, resume=resume is not None,
        allow_leakage=allow_leakage, compare=compare, learning_curve=learning_curve, scratch_budget=scratch_budget,
        seeds=seeds, report=report, track=not no_track, tracking_uri=tracking_uri,
        command=shlex.join(["headstart", *(ctx.obj or {}).get("argv", sys.argv[1:])]),
        progress=progress, callbacks={} if quiet else {"on_epoch_end": [render.print_epoch]}, step=step,
        on_audit=None if quiet else _print_preflight,
        weights=weights, C=c, cv=cv, class_weight=None if class_weight is ClassWeight.none else class_weight.value,
        max_length=max_length, batch_size=batch_size, device=device, cache=_cache_arg(cache_dir, no_cache),
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
    chosen = f"C={s['C']:g} ({s['C_selection']})" if s.get("C_selection") else ""
    render.stdout.print(f"[bold]strategy[/]  {s['name']} {chosen}; {result['fit_seconds']:.1f}s")
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


# --------------------------------------------------------------------- report
@app.command("report")
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


# ----------------------------------------------------------------------- runs
@app.command()
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


# -------------------------------------------------------------------- predict
@app.command()
def predict(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder written by `headstart fit`.")],
    inputs: Annotated[list[str] | None, typer.Argument(help="Image files/folders, a table, or '-' (default) for text lines on stdin.")] = None,
    engine: Annotated[EngineName, typer.Option(help="auto: onnx when the bundle has been exported (`headstart export`), else torch; onnx-int8 needs `export --quantize int8`.")] = EngineName.auto,
    text_col: TextCol = None,
    image_col: ImageCol = None,
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

    progress = _setup(quiet)
    runner = load_engine(bundle, engine.value, batch_size=batch_size, device=device,
                         cache=_cache_arg(cache_dir, no_cache))
    dataset = read_inputs(inputs or ["-"], runner.modality, text_col=text_col, image_col=image_col)
    proba = _predict_with_progress(runner, dataset.items, progress)
    classes = runner.classes
    rows = []
    for loc, item, p in zip(dataset.locators, dataset.items, proba):
        best = int(p.argmax())
        rows.append({"item": loc if dataset.modality == "image" else render_item(item, loc),
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


def render_item(item: Any, locator: str) -> str:
    from headstart.data.dataset import describe_path

    return describe_path(item) if locator.startswith("<stdin>") else f"{locator}: {describe_path(item)}"


# ------------------------------------------------------------------- evaluate
@app.command()
def evaluate(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder written by `headstart fit`.")],
    data: Annotated[Path, typer.Argument(help="Labeled data: a folder of class sub-folders or a table.")],
    text_col: TextCol = None,
    image_col: ImageCol = None,
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
    from headstart.bundle import read_manifest
    from headstart.data import load_data

    progress = _setup(quiet)
    manifest = read_manifest(bundle, verify=False)
    loader = manifest.get("loader", {})
    table_opts = {}
    if not data.is_dir():
        table_opts = {"text_col": text_col or loader.get("text_col"), "image_col": image_col or loader.get("image_col"),
                      "split_col": split_col, "slice_cols": slice_col or (),
                      "optional_slice_cols": () if slice_col else loader.get("slice_cols") or ()}
        if split is not None and split_col is None:  # the fit's split: its column, or re-created
            table_opts.update(split_col=loader.get("split_col"), group_col=loader.get("group_col"),
                              time_col=loader.get("time_col"))
    dataset = load_data(data, label_col=label_col or loader.get("label_col") or "label", **table_opts)
    if split is not None:
        dataset = _fit_split(dataset, manifest, bundle, data).split(split)
    clf = load(bundle)
    clf.set_params(batch_size=batch_size, device=device, cache=_cache_arg(cache_dir, no_cache))
    metrics = clf.evaluate(dataset, progress=progress)
    if json_:
        render.print_json({"bundle": str(bundle), "data": str(data), "split": split or "all", "metrics": metrics})
        return
    render.metrics_tables(metrics, f"{data}" + (f" ({split} split)" if split else ""))


def _fit_split(dataset: Any, manifest: dict[str, Any], bundle: Path, data: Path) -> Any:
    """Data with a split: its own, or the one fit made of it, re-created (same seed, shares,
    group and time columns) and checked against the fit's fingerprint."""
    from headstart.data import assign_splits
    from headstart.errors import DataError

    if dataset.splits is not None:
        return dataset
    loader = manifest.get("loader") or {}
    fractions = {k: loader[k] for k in ("val_fraction", "test_fraction") if k in loader}
    try:
        assign_splits(dataset, seed=int(manifest.get("seed") or 0), **fractions)
    except DataError:
        dataset.splits = None
    if dataset.splits is None or dataset.fingerprint() != (manifest.get("data") or {}).get("fingerprint"):
        raise DataError(
            f"--split needs a split, and {data} has none of its own: give its column of train/val/test values "
            f"with --split-col COLUMN. (It is not the data {bundle} was fitted on, so the split fit made cannot be "
            "re-created.) Or drop --split to evaluate every item."
        )
    return dataset


# --------------------------------------------------------------------- export
class Quantize(str, Enum):
    int8 = "int8"


@app.command()
def export(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder written by `headstart fit`.")],
    quantize: Annotated[Quantize | None, typer.Option(help="Also write model.int8.onnx (text: dynamic quantization; images: static, calibrated on training images) and report its held-out accuracy, size and speed change.")] = None,
    data: Annotated[Path | None, typer.Option(help="Real items for the parity check and the int8 accuracy (default: the data the bundle was fitted on).")] = None,
    opset: Annotated[int | None, typer.Option(min=7, help="ONNX opset (default: the exporter's).")] = None,
    quiet: Quiet = False,
    json_: Json = False,
) -> None:
    """Add model.onnx to a bundle (backbone + head + softmax, dynamic batch), checked against PyTorch:
    the export fails, and the bundle is unchanged, if any probability differs by more than 1e-4."""
    from headstart.serving.export import export_onnx

    _setup(quiet)
    if not quiet:
        render.stderr.print("[dim]· exporting and checking parity (PyTorch vs ONNX on real items)...[/]",
                            highlight=False)
    summary = export_onnx(bundle, quantize=quantize.value if quantize else None, data=data, opset=opset)
    if json_:
        render.print_json(summary)
        return
    _print_export(summary)


def _print_export(summary: dict[str, Any]) -> None:
    parity, speed = summary["parity"], summary["speed"]["batch1_ms"]
    files = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in summary["files"].items())
    render.stdout.print(f"[bold]bundle[/]    {summary['bundle']} ({files})", highlight=False)
    render.stdout.print(f"[bold]onnx[/]      {summary['onnx']['file']}, opset {summary['onnx']['opset']}, inputs "
                        + ", ".join(f"{i['name']} {i['shape']}" for i in summary["onnx"]["inputs"]), highlight=False)
    render.stdout.print(f"[bold]parity[/]    max |Δp| {parity['max_abs_diff']:.2e} ≤ {parity['tolerance']:g} on "
                        f"{parity['items']} items of {parity['data']} (labels agree: {parity['labels_agree']:.0%})",
                        highlight=False)
    table = Table(title="latency, one item per call (median)", title_justify="left")
    for col in ("engine", "ms / item", "vs torch"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for name, ms in speed.items():
        table.add_row(name, f"{ms:.1f}", f"{speed['torch'] / ms:.2f}×")
    render.stdout.print(table)
    int8 = summary.get("int8")
    if int8:
        acc = int8["accuracy"]
        render.stdout.print(f"[bold]int8[/]      {int8['file']}: {int8['size_ratio']:.2f}× the size, "
                            f"{int8['speedup_vs_onnx']:.2f}× the batch-1 speed of fp32 ONNX", highlight=False)
        if acc["available"]:
            render.stdout.print(f"          accuracy {acc['onnx']:.3f} → {acc['onnx-int8']:.3f} (Δ {acc['delta']:+.3f}; "
                                f"predictions agree {acc['agreement']:.1%}) on {acc['evaluated_on']}", highlight=False)
        else:
            render.stdout.print(f"          accuracy change not measured: {acc['reason']}", highlight=False)


# ---------------------------------------------------------------------- serve
from headstart.cli.serve import serve_command  # noqa: E402  (light: uvicorn and FastAPI load when serving)

app.command("serve")(serve_command)


# ---------------------------------------------------------------------- cache
@cache_app.command("info")
def cache_info(cache_dir: CacheDir = None, json_: Json = False) -> None:
    """What the embedding cache holds, per backbone."""
    from headstart.embedding_cache import EmbeddingCache

    cache = EmbeddingCache(cache_dir)
    rows = cache.info()
    if json_:
        render.print_json({"cache_dir": str(cache.root), "backbones": rows})
        return
    render.stdout.print(f"cache: {cache.root}")
    table = Table()
    for col in ("backbone", "identity", "feature dim", "items", "shards", "size"):
        table.add_column(col, justify="right" if col in ("items", "shards", "size", "feature dim") else "left")
    for r in rows:
        table.add_row(r["backbone"], r["identity"][:12], str(r["feature_dim"]), str(r["items"]), str(r["shards"]),
                      f"{r['bytes'] / 1e6:.1f} MB")
    render.stdout.print(table)


@cache_app.command("clear")
def cache_clear(
    cache_dir: CacheDir = None,
    backbone: Annotated[str | None, typer.Option(help="Only this backbone's vectors (name or identity).")] = None,
) -> None:
    """Delete cached feature vectors."""
    from headstart.embedding_cache import EmbeddingCache

    cache = EmbeddingCache(cache_dir)
    removed = cache.clear(backbone)
    render.stdout.print(f"removed {removed} backbone cache folder(s) from {cache.root}")


def run(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv``; returns the exit code (0 ok, 1 error, 2 usage)."""
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        code = app(args=argv, prog_name="headstart", standalone_mode=False, obj={"argv": argv})
    except HeadstartError as e:
        render.stderr.print(f"[bold red]error:[/] {e}", highlight=False)
        return 1
    except KeyboardInterrupt:
        render.stderr.print("interrupted")
        return 130
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        return 1
    except typer.TyperException as e:  # usage errors (Typer's own click): message and exit 2
        e.show()
        return int(getattr(e, "exit_code", 2))
    return code if isinstance(code, int) else 0  # standalone_mode=False returns typer.Exit's code


def main() -> None:
    """Console entry point."""
    sys.exit(run())

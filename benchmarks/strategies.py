"""Adaptation strategies compared: held-out accuracy, macro-F1 and fit time over several seeds.

Every strategy (``linear-probe``, ``partial``, ``full``, ``progressive``, ``lora``,
``contrastive``) and ``auto`` is fitted through the public Python API
(``TransferClassifier(...).fit(X, y)`` on in-memory lists) and scored on a held-out test set
that no strategy or seed trains on. Configurations:

- ``spam8`` / ``spam32``: spam-assassin e-mails (``minilm``), 8 or 32 training e-mails per
  class drawn at random per seed. The test set is a fixed, seed-independent, balanced random
  subset (``--spam-test-per-class`` per class, default 300) drawn first with a fixed RNG;
  training e-mails are drawn from the rest, so no seed ever trains on a test e-mail.
- ``animals``: animal-silhouettes (``efficientnet_lite0``), its train split (60 per class) for
  every seed (the seed changes only the training randomness: validation carve-out, shuffling,
  augmentation, initialisation of adapters, cross-validation folds), scored on its test split
  (``--animal-test-n`` for a fixed stratified subset; default all 1,000).
  ``contrastive`` is text only and is not run here.

Timing is the wall time of ``fit`` only (``time.perf_counter``): it includes loading the
backbone, extracting or reading cached features and training; prediction is timed
separately and not counted. All runs share one embedding cache folder, as a real user's runs
would: the first run that needs the pretrained features of an item computes them and every
later run (other strategies' linear-probe initialisation, other seeds, ``auto``'s floor)
reads them. The fine-tuning strategies get ``--epochs`` (default 6; ``--animal-epochs`` for
the images) as their maximum epochs (early stopping may end sooner; ``progressive`` uses it for
its last stage); ``contrastive`` keeps its own defaults (20 steps of in-batch pairs over 16 texts) and
``auto`` chooses its own candidates and settings within ``--budget`` (default 10m).

Runs go in rounds: seed 0 of every configuration, then seed 1 of every configuration, and so
on. With ``--time-limit`` a configuration's next seed is only started when the time its
previous seed took still fits, so a time-limited run ends with whole seeds (every strategy of
a configuration over the same seeds) and may have fewer seeds than asked; the report says so.
With ``--json`` the raw numbers are rewritten after every run (``"complete": false`` until the
end), so an interrupted benchmark keeps what it measured; ``--resume THAT.json`` (same settings,
ideally the same ``--cache-dir``) reuses its finished runs and runs only the missing ones.

At the end it prints a markdown table (rows: configuration × strategy; columns: accuracy,
macro-F1 and fit seconds, mean ± sample standard deviation over seeds) and checks two goals
per configuration: (1) ``auto`` within 1 accuracy point of the best strategy at no more than
half the summed mean fit time of all the other strategies (what trying them all would cost);
(2) ``contrastive`` at least matches the linear probe at 8 examples per class.

Run from the repository root::

    python benchmarks/strategies.py                                  # everything, 3 seeds
    python benchmarks/strategies.py --seeds 1 --only spam8 --spam-test-per-class 20 --epochs 1
    python benchmarks/strategies.py --animal-seeds 2 --json results.json
    python benchmarks/strategies.py --epochs 3 --animal-epochs 1 --time-limit 75m

The datasets are read from ``../shared/datasets`` beside the repository, or from
``$HEADSTART_SHARED_DATASETS``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

import headstart
from headstart import TransferClassifier
from headstart.data import load_data
from headstart.strategies.auto import parse_budget

DATASETS = Path(
    os.environ.get(
        "HEADSTART_SHARED_DATASETS",
        Path(__file__).resolve().parents[2] / "shared" / "datasets",
    )
)
CONFIGS = ("spam8", "spam32", "animals")
STRATEGIES = ("linear-probe", "partial", "full", "progressive", "lora", "contrastive", "auto")
FINE_TUNING = frozenset({"partial", "full", "progressive", "lora"})
TEXT_ONLY = frozenset({"contrastive"})
TEST_POOL_SEED = 20240521  # fixed: the spam test set does not depend on --seeds
ANIMAL_TEST_SEED = 20240522
AUTO_TOLERANCE_POINTS = 1.0
AUTO_TIME_FRACTION = 0.5


@dataclass
class Config:
    """One benchmark configuration: its data and backbone."""

    name: str
    description: str
    backbone: str
    epochs: int
    strategies: list[str]
    seeds: list[int]
    test_x: list[Any]
    test_y: list[Any]
    train_for_seed: Any  # seed -> (items, labels)


@dataclass
class Run:
    """One fit and its held-out scores."""

    config: str
    strategy: str
    seed: int
    n_train: int
    n_test: int
    accuracy: float = float("nan")
    macro_f1: float = float("nan")
    fit_seconds: float = float("nan")
    predict_seconds: float = float("nan")
    params: dict[str, Any] = field(default_factory=dict)
    chosen: str | None = None  # auto: the strategy it kept
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    wall_seconds: float = float("nan")  # the whole run: data, fit, prediction, scoring
    resumed: bool = False  # reused from an earlier, interrupted invocation (--resume)

    @property
    def ok(self) -> bool:
        return self.error is None


# ------------------------------------------------------------------------------ data
def read_spam() -> tuple[list[str], list[str]]:
    path = DATASETS / "spam-assassin" / "emails.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} not found; set HEADSTART_SHARED_DATASETS to the datasets folder.")
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                texts.append(row["text"])
                labels.append(row["label"])
    return texts, labels


def spam_configs(names: Sequence[str], strategies: list[str], seeds: list[int],
                 test_per_class: int, epochs: int) -> list[Config]:
    """``spam8``/``spam32``: the fixed test set first, then per-seed training draws from the rest."""
    texts, labels = read_spam()
    y = np.array(labels)
    classes = sorted(set(labels))
    pool_rng = np.random.default_rng(TEST_POOL_SEED)
    test_idx: list[int] = []
    remaining: dict[str, np.ndarray] = {}
    for c in classes:
        idx = np.flatnonzero(y == c)
        if len(idx) <= test_per_class:
            raise SystemExit(f"class {c!r} has {len(idx)} e-mails; --spam-test-per-class {test_per_class} "
                             "leaves none to train on.")
        chosen = pool_rng.choice(idx, size=test_per_class, replace=False)
        test_idx.extend(int(i) for i in chosen)
        remaining[c] = np.setdiff1d(idx, chosen)  # sorted, so the draw below is reproducible
    test_idx.sort()
    test_set = set(test_idx)
    out = []
    for name in names:
        per_class = int(name.removeprefix("spam"))
        for c in classes:
            if len(remaining[c]) < per_class:
                raise SystemExit(f"class {c!r} has only {len(remaining[c])} e-mails outside the test set.")

        def draw(seed: int, per_class: int = per_class) -> tuple[list[str], list[str]]:
            rng = np.random.default_rng(seed)
            idx = sorted(int(i) for c in classes for i in rng.choice(remaining[c], size=per_class, replace=False))
            assert not test_set.intersection(idx), "a training e-mail is in the test set"
            return [texts[i] for i in idx], [labels[i] for i in idx]

        out.append(Config(
            name=name,
            description=(f"spam-assassin, {per_class} training e-mails per class (random per seed), "
                         f"test: fixed balanced {test_per_class}/class ({len(test_idx)} e-mails)"),
            backbone="minilm", epochs=epochs, strategies=list(strategies), seeds=list(seeds),
            test_x=[texts[i] for i in test_idx], test_y=[labels[i] for i in test_idx], train_for_seed=draw,
        ))
    return out


def animal_config(strategies: list[str], seeds: list[int], test_n: int | None, epochs: int) -> Config:
    """``animals``: the fixed train split for every seed; the test split (or a stratified subset)."""
    folder = DATASETS / "animal-silhouettes"
    if not folder.is_dir():
        raise SystemExit(f"{folder} not found; set HEADSTART_SHARED_DATASETS to the datasets folder.")
    data = load_data(folder)
    train, test = data.split("train"), data.split("test")
    test_idx = list(range(len(test)))
    if test_n is not None and test_n < len(test):
        classes = test.classes
        rng = np.random.default_rng(ANIMAL_TEST_SEED)
        labels = np.array([classes.index(v) for v in test.labels])
        base, extra = divmod(test_n, len(classes))
        test_idx = []
        for k in range(len(classes)):
            idx = np.flatnonzero(labels == k)
            take = min(len(idx), base + (1 if k < extra else 0))
            test_idx.extend(int(i) for i in rng.choice(idx, size=take, replace=False))
        test_idx.sort()
    train_x, train_y = list(train.items), list(train.labels)
    return Config(
        name="animals",
        description=(f"animal-silhouettes, train split ({len(train_x)} images, "
                     f"{len(train_x) // max(1, len(set(train_y)))}/class, same for every seed), "
                     f"test: {len(test_idx)} of {len(test)} test images"
                     + (" (fixed stratified subset)" if len(test_idx) < len(test) else "")),
        backbone="efficientnet_lite0", epochs=epochs,
        strategies=[s for s in strategies if s not in TEXT_ONLY], seeds=list(seeds),
        test_x=[test.items[i] for i in test_idx], test_y=[test.labels[i] for i in test_idx],
        train_for_seed=lambda _seed: (train_x, train_y),
    )


# -------------------------------------------------------------------------------- runs
def strategy_params(strategy: str, config: Config, args: argparse.Namespace) -> dict[str, Any]:
    """What each strategy gets beyond its defaults."""
    if strategy in FINE_TUNING:
        return {"epochs": config.epochs}
    if strategy == "auto":
        return {"budget": args.budget}
    return {}  # linear-probe: cross-validated C; contrastive: its own defaults


def summarise_details(strategy: str, details: dict[str, Any]) -> dict[str, Any]:
    """The parts of ``strategy_details_`` worth keeping in the JSON (no weight dumps)."""
    keep = ("chosen", "decisions", "budget_seconds", "examples_per_class", "step_seconds_per_16", "C",
            "lp_init", "phases", "n_train", "n_val", "early_stopping", "pairing", "n_pairs", "steps_run",
            "pair_seconds", "pair_loss_first", "pair_loss_last", "refitted", "refit_seconds", "n_refit",
            "refit_skipped")
    out = {k: details[k] for k in keep if k in details}
    for phase in out.get("phases", []) or []:
        if isinstance(phase, dict):
            phase.pop("history", None)
    return out


def run_one(config: Config, strategy: str, seed: int, args: argparse.Namespace, cache: Path) -> Run:
    run_started = time.perf_counter()
    train_x, train_y = config.train_for_seed(seed)
    params = strategy_params(strategy, config, args)
    run = Run(config=config.name, strategy=strategy, seed=seed, n_train=len(train_x),
              n_test=len(config.test_x), params=params)
    try:
        clf = TransferClassifier(backbone=config.backbone, strategy=strategy, random_state=seed,
                                 cache=str(cache), **params)
        started = time.perf_counter()
        clf.fit(train_x, train_y)
        run.fit_seconds = time.perf_counter() - started
        if clf.backbone_changed_:
            # An adapted backbone's features are new to the cache and never reused: do not
            # fill the shared cache folder with them.
            clf.set_params(cache=False)
        started = time.perf_counter()
        pred = clf.predict(config.test_x)
        run.predict_seconds = time.perf_counter() - started
        truth = np.array(config.test_y, dtype=object)
        pred = np.array(pred, dtype=object)
        run.accuracy = float(accuracy_score(truth, pred))
        run.macro_f1 = float(f1_score(truth, pred, average="macro"))
        details = dict(clf.strategy_details_)
        run.details = json.loads(json.dumps(summarise_details(strategy, details), default=str))
        if strategy == "auto":
            run.chosen = str(details.get("chosen"))
        del clf
    except Exception as e:  # keep going: one failing run must not lose an hour of others
        run.error = f"{type(e).__name__}: {e}"
        traceback.print_exc(file=sys.stderr)
    gc.collect()
    run.wall_seconds = time.perf_counter() - run_started
    return run


# ----------------------------------------------------------------------------- report
def fmt_duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def pm(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    m, s = mean_sd([v * scale for v in values])
    if math.isnan(m):
        return "—"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if not math.isnan(s) else f"{m:.{digits}f} (1 run)"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def git_state() -> str:
    """The repository's commit, and whether ``src`` has uncommitted changes (what was measured)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}{' + uncommitted changes in src' if dirty else ''}"


def machine_info() -> dict[str, Any]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": affinity,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "headstart": getattr(headstart, "__version__", "?"),
        "git": git_state(),
        "load_average_start": load_average(),
    }


def by_strategy(runs: list[Run], config: str) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = {}
    for r in runs:
        if r.config == config:
            out.setdefault(r.strategy, []).append(r)
    return out


def epochs_note(runs: list[Run]) -> str:
    """Maximum epochs given, epochs actually trained (all phases) and early stopping, for fine-tuning."""
    trained = [sum(int(p.get("epochs_run", 0)) for p in r.details.get("phases", [])) for r in runs]
    early = {r.details.get("early_stopping") for r in runs}
    stop = {True: "early stopping on", False: "no validation split, no early stopping"}
    note = f"epochs={runs[0].params.get('epochs')}; trained {statistics.fmean(trained):.1f} epochs"
    if len(early) == 1 and None not in early:
        note += f" ({stop[early.pop()]})"
    return note


def table(configs: list[Config], runs: list[Run]) -> list[str]:
    lines = [
        "| config | strategy | seeds | test accuracy (%) | macro-F1 (%) | fit (s) | notes |",
        "|---|---|--:|--:|--:|--:|---|",
    ]
    for config in configs:
        groups = by_strategy(runs, config.name)
        for strategy in config.strategies:
            group = groups.get(strategy, [])
            ok = [r for r in group if r.ok]
            notes = []
            failed = len(group) - len(ok)
            if failed:
                notes.append(f"{failed} FAILED")
            if strategy == "auto" and ok:
                counts = Counter(r.chosen for r in ok)
                notes.append("chose " + ", ".join(f"{k} ×{v}" for k, v in counts.most_common()))
            if strategy in FINE_TUNING and ok:
                notes.append(epochs_note(ok))
            lines.append(
                f"| {config.name} | {strategy} | {len(ok)} | {pm([r.accuracy for r in ok], 100)} "
                f"| {pm([r.macro_f1 for r in ok], 100)} | {pm([r.fit_seconds for r in ok])} "
                f"| {'; '.join(notes)} |"
            )
    return lines


def goal_checks(configs: list[Config], runs: list[Run]) -> tuple[list[str], dict[str, Any]]:
    lines: list[str] = []
    results: dict[str, Any] = {}
    for config in configs:
        groups = {s: [r for r in rs if r.ok] for s, rs in by_strategy(runs, config.name).items()}
        groups = {s: rs for s, rs in groups.items() if rs}
        acc = {s: statistics.fmean(r.accuracy for r in rs) * 100 for s, rs in groups.items()}
        secs = {s: statistics.fmean(r.fit_seconds for r in rs) for s, rs in groups.items()}
        others = [s for s in config.strategies if s != "auto" and s in groups]
        missing = [s for s in config.strategies if s != "auto" and s not in groups]
        check: dict[str, Any] = {}
        if "auto" in groups and others:
            best = max(others, key=lambda s: acc[s])
            total = sum(secs[s] for s in others)
            gap = acc[best] - acc["auto"]
            acc_ok = gap <= AUTO_TOLERANCE_POINTS
            time_ok = secs["auto"] <= AUTO_TIME_FRACTION * total
            caveat = f" (NB: without {', '.join(missing)}: not run or failed)" if missing else ""
            lines.append(
                f"- **{config.name}, goal 1 (auto)**: {'MET' if acc_ok and time_ok else 'NOT MET'}. "
                f"auto {acc['auto']:.1f}% vs best {best} {acc[best]:.1f}% (gap {gap:+.1f} points; "
                f"goal ≤ {AUTO_TOLERANCE_POINTS:g}: {'met' if acc_ok else 'NOT met'}); auto fit "
                f"{secs['auto']:.0f} s vs {total:.0f} s summed over {len(others)} strategies "
                f"(ratio {secs['auto'] / total:.2f}; goal ≤ {AUTO_TIME_FRACTION:g}: "
                f"{'met' if time_ok else 'NOT met'}){caveat}."
            )
            check["auto"] = {"best": best, "best_accuracy": acc[best], "auto_accuracy": acc["auto"],
                             "gap_points": gap, "accuracy_ok": acc_ok, "auto_seconds": secs["auto"],
                             "sum_seconds": total, "time_ratio": secs["auto"] / total, "time_ok": time_ok,
                             "met": acc_ok and time_ok, "strategies_summed": others}
        elif "auto" in config.strategies:
            lines.append(f"- **{config.name}, goal 1 (auto)**: cannot check (auto or the others did not run).")
        if config.name.startswith("spam"):
            is_goal = config.name == "spam8"
            if {"contrastive", "linear-probe"} <= set(groups):
                diff = acc["contrastive"] - acc["linear-probe"]
                lp = {r.seed: r.accuracy for r in groups["linear-probe"]}
                paired = [(r.accuracy, lp[r.seed]) for r in groups["contrastive"] if r.seed in lp]
                wins = sum(a >= b for a, b in paired)
                label = ("goal 2 (contrastive ≥ linear probe at 8/class)" if is_goal
                         else "for information (goal 2 is about 8/class): contrastive vs linear probe")
                verdict = ("MET" if diff >= 0 else "NOT MET") if is_goal else \
                    ("at least matches" if diff >= 0 else "below")
                lines.append(
                    f"- **{config.name}, {label}**: {verdict}. contrastive {acc['contrastive']:.1f}% vs "
                    f"linear probe {acc['linear-probe']:.1f}% ({diff:+.1f} points; contrastive ≥ probe in "
                    f"{wins} of {len(paired)} seeds); fit {secs['contrastive']:.0f} s vs "
                    f"{secs['linear-probe']:.0f} s."
                )
                check["contrastive_vs_probe"] = {"contrastive": acc["contrastive"], "linear_probe": acc["linear-probe"],
                                                 "diff_points": diff, "seeds_at_least_equal": wins,
                                                 "seeds": len(paired), "met": diff >= 0}
            elif is_goal:
                lines.append("- **spam8, goal 2 (contrastive ≥ linear probe)**: cannot check (not both run).")
        results[config.name] = check
    return lines, results


# ------------------------------------------------------------------------------- main
def parse_list(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad) or '(none)'}; choose from {', '.join(allowed)}")
    return [v for v in allowed if v in items]  # canonical order


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per configuration (default 3)")
    parser.add_argument("--animal-seeds", type=int, default=None,
                        help="seeds for the animals configuration (default: --seeds)")
    parser.add_argument("--only", type=lambda v: parse_list(v, CONFIGS, "configuration"), default=list(CONFIGS),
                        help=f"comma-separated configurations (default {','.join(CONFIGS)})")
    parser.add_argument("--strategies", type=lambda v: parse_list(v, STRATEGIES, "strategy"),
                        default=list(STRATEGIES), help=f"comma-separated strategies (default {','.join(STRATEGIES)})")
    parser.add_argument("--epochs", type=int, default=6,
                        help="maximum epochs of partial, full, progressive (last stage) and lora (default 6)")
    parser.add_argument("--animal-epochs", type=int, default=None,
                        help="the same for the animals configuration (default: --epochs)")
    parser.add_argument("--budget", default="10m", help="time budget of auto (default 10m)")
    parser.add_argument("--spam-test-per-class", type=int, default=300,
                        help="spam test e-mails per class (fixed, seed-independent; default 300)")
    parser.add_argument("--animal-test-n", type=int, default=None,
                        help="fixed stratified subset of the animal test split (default: all 1000)")
    parser.add_argument("--time-limit", default=None,
                        help="e.g. 75m: start a configuration's next seed only if the time its previous seed "
                             "took still fits (default: no limit)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="the shared embedding cache folder (default: a new temporary folder, deleted at the end)")
    parser.add_argument("--json", type=Path, default=None, help="write the raw per-run numbers here")
    parser.add_argument("--resume", type=Path, default=None,
                        help="the --json file of an interrupted benchmark with the same settings: reuse its "
                             "finished runs, run only the missing ones")
    args = parser.parse_args(argv)
    if args.seeds < 1 or (args.animal_seeds is not None and args.animal_seeds < 1):
        parser.error("--seeds and --animal-seeds must be at least 1")
    if args.animal_epochs is None:
        args.animal_epochs = args.epochs
    if min(args.epochs, args.animal_epochs, args.spam_test_per_class) < 1:
        parser.error("--epochs, --animal-epochs and --spam-test-per-class must be at least 1")
    if args.animal_test_n is not None and args.animal_test_n < 10:
        parser.error("--animal-test-n must be at least 10 (one per class)")
    try:
        parse_budget(args.budget)
        args.time_limit_seconds = parse_budget(args.time_limit) if args.time_limit else None
    except Exception as e:
        parser.error(str(e))
    return args


RESUME_KEYS = ("epochs", "animal_epochs", "budget", "spam_test_per_class", "animal_test_n")


def load_previous(args: argparse.Namespace) -> tuple[dict[tuple[str, str, int], Run], dict[str, Any]]:
    """Finished runs of an earlier invocation with the same settings, by (config, strategy, seed)."""
    if args.resume is None:
        return {}, {}
    try:
        payload = json.loads(args.resume.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"--resume {args.resume}: cannot read it ({e}).") from e
    before = payload.get("args", {})
    differ = [k for k in RESUME_KEYS if before.get(k) != getattr(args, k)]
    if differ:
        raise SystemExit(f"--resume {args.resume}: it was measured with other settings ("
                         + ", ".join(f"{k}={before.get(k)!r} there, {getattr(args, k)!r} here" for k in differ) + ").")
    names = {f.name for f in Run.__dataclass_fields__.values()}
    runs = [Run(**{k: v for k, v in r.items() if k in names}) for r in payload.get("runs", [])]
    previous = {(r.config, r.strategy, r.seed): r for r in runs if r.ok}
    for r in previous.values():
        r.resumed = True
        if math.isnan(r.wall_seconds):  # older files: fit + predict is most of it
            r.wall_seconds = r.fit_seconds + r.predict_seconds
    return previous, payload


def write_json(path: Path, machine: dict[str, Any], args: argparse.Namespace, configs: list[Config],
               runs: list[Run], skipped: dict[str, list[int]], started: float, *, complete: bool,
               checks: dict[str, Any] | None = None, earlier: dict[str, Any] | None = None) -> None:
    earlier = earlier or {}
    payload = {
        "complete": complete,
        "machine": machine,
        "resumed_from": str(args.resume) if args.resume else None,
        "earlier_elapsed_seconds": earlier.get("elapsed_seconds", 0.0),
        "earlier_machine": earlier.get("machine"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "configs": [{"name": c.name, "backbone": c.backbone, "description": c.description, "epochs": c.epochs,
                     "strategies": c.strategies, "seeds_asked": c.seeds, "seeds_skipped": skipped.get(c.name, []),
                     "n_test": len(c.test_x)} for c in configs],
        "runs": [asdict(r) for r in runs],
        "goal_checks": checks,
        "elapsed_seconds": earlier.get("elapsed_seconds", 0.0) + time.perf_counter() - started,
        "load_average_now": load_average(),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    bench_started = time.perf_counter()
    machine = machine_info()
    previous, earlier = load_previous(args)
    offset = float(earlier.get("elapsed_seconds", 0.0))  # measured by the interrupted invocation
    seeds = list(range(args.seeds))
    animal_seeds = list(range(args.animal_seeds or args.seeds))
    configs: list[Config] = []
    spam_names = [c for c in args.only if c.startswith("spam")]
    if spam_names:
        configs += spam_configs(spam_names, args.strategies, seeds, args.spam_test_per_class, args.epochs)
    if "animals" in args.only:
        configs.append(animal_config(args.strategies, animal_seeds, args.animal_test_n, args.animal_epochs))
    configs = [c for c in configs if c.strategies]
    if not configs:
        raise SystemExit("nothing to run: no selected strategy applies to the selected configurations.")

    temporary = args.cache_dir is None
    cache = Path(tempfile.mkdtemp(prefix="headstart-bench-strategies-")) if temporary else args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    preexisting = any(cache.iterdir())

    epochs = f"partial/full/progressive/lora epochs={args.epochs}"
    if "animals" in args.only and args.animal_epochs != args.epochs:
        epochs += f" (animals: {args.animal_epochs})"
    header = [
        "# headstart strategies benchmark",
        "",
        f"Machine: {machine['platform']} ({machine['processor']}), {machine['cpu_count']} CPUs "
        f"({machine['usable_cpus']} usable), CUDA {'yes' if machine['cuda'] else 'no'}, Python {machine['python']}, "
        f"torch {machine['torch']} with {machine['torch_threads']} threads, headstart {machine['headstart']} "
        f"(git {machine['git']}); {machine['date']}. Load average (1/5/15 min) at start: "
        f"{machine['load_average_start']}.",
        f"Settings: {epochs} (maximum epochs; the strategy decides about early stopping); contrastive at "
        f"its defaults; auto budget={args.budget}"
        + (f"; time limit {args.time_limit} (fewer seeds may run than asked)" if args.time_limit else "") + ".",
        f"Embedding cache: ONE folder shared by all runs ({cache}; "
        + ("a fresh temporary folder, empty at start" if temporary and not preexisting
           else "given with --cache-dir, " + ("NOT empty at start: first runs may read old features" if preexisting else "empty at start"))
        + "). The first run needing an item's pretrained features computes them; later runs read them "
        "(so linear-probe fits after the first are mostly cache reads, as for a real user's repeated runs). "
        "Predictions of adapted backbones bypass the cache.",
        "",
    ]
    for c in configs:
        header.append(f"- `{c.name}` ({c.backbone}): {c.description}; strategies {', '.join(c.strategies)}; "
                      f"seeds asked {', '.join(map(str, c.seeds))}.")
    if args.resume is not None:
        wanted = {(c.name, s, seed) for c in configs for s in c.strategies for seed in c.seeds}
        header += ["", f"Resumed from {args.resume}: {len(wanted & set(previous))} finished run(s) of an earlier, "
                       f"interrupted invocation (started {(earlier.get('machine') or {}).get('date', '?')}, "
                       f"{offset:.0f} s measured up to its last finished run) are reused, not re-measured."]
    print("\n".join(header), flush=True)

    total_runs = sum(len(c.seeds) * len(c.strategies) for c in configs)
    runs: list[Run] = []
    skipped: dict[str, list[int]] = {}
    block_seconds: dict[str, float] = {}  # the longest seed block of each configuration so far
    limit = args.time_limit_seconds
    try:
        for round_index in range(max(len(c.seeds) for c in configs)):
            for config in configs:
                if round_index >= len(config.seeds):
                    continue
                seed = config.seeds[round_index]
                elapsed = offset + time.perf_counter() - bench_started
                if round_index and limit is not None and (config.name in skipped
                                                          or elapsed + block_seconds[config.name] > limit):
                    skipped.setdefault(config.name, []).append(seed)
                    print(f"[{fmt_duration(elapsed)}] {config.name} seed={seed}: skipped (its previous seed took "
                          f"{block_seconds[config.name]:.0f} s; time limit {args.time_limit})",
                          file=sys.stderr, flush=True)
                    continue
                block = 0.0
                for strategy in config.strategies:
                    if (config.name, strategy, seed) in previous:
                        run = previous[(config.name, strategy, seed)]
                        runs.append(run)
                        block += run.wall_seconds
                        print(f"[{len(runs)}/{total_runs}] {config.name} {strategy} seed={seed}: reused from "
                              f"{args.resume} (acc={run.accuracy:.4f} fit={run.fit_seconds:.1f}s)",
                              file=sys.stderr, flush=True)
                        continue
                    run = run_one(config, strategy, seed, args, cache)
                    runs.append(run)
                    block += run.wall_seconds
                    status = (f"acc={run.accuracy:.4f} f1={run.macro_f1:.4f} fit={run.fit_seconds:.1f}s "
                              f"predict={run.predict_seconds:.1f}s"
                              + (f" chose={run.chosen}" if run.chosen else "")) if run.ok else f"FAILED {run.error}"
                    print(f"[{len(runs)}/{total_runs} {fmt_duration(offset + time.perf_counter() - bench_started)} "
                          f"load {load_average()}] {config.name} {strategy} seed={seed}: {status}",
                          file=sys.stderr, flush=True)
                    if args.json is not None:
                        write_json(args.json, machine, args, configs, runs, skipped, bench_started, complete=False,
                                   earlier=earlier)
                block_seconds[config.name] = max(block_seconds.get(config.name, 0.0), block)
    finally:
        if temporary:
            shutil.rmtree(cache, ignore_errors=True)

    this = time.perf_counter() - bench_started
    total = offset + this
    checks, check_results = goal_checks(configs, runs)
    seeds_run = []
    for c in configs:
        done = sorted({r.seed for r in runs if r.config == c.name})
        note = f" (asked {len(c.seeds)}; seeds {', '.join(map(str, skipped[c.name]))} skipped by the time limit)" \
            if c.name in skipped else ""
        seeds_run.append(f"{c.name}: {len(done)} seed(s) {', '.join(map(str, done))}{note}")
    out = [
        "",
        *table(configs, runs),
        "",
        "Mean ± sample standard deviation over seeds. Accuracy and macro-F1 on the held-out test set, "
        "in percent. Fit = wall time of `TransferClassifier.fit` only (backbone loading, features through "
        "the shared cache, training), not prediction. Seeds run: " + "; ".join(seeds_run) + ".",
        "",
        "Goal checks (per configuration; 'best' = highest mean accuracy among the non-auto strategies; "
        "the time goal compares auto's mean fit time with the sum of the others' mean fit times):",
        "",
        *checks,
        "",
        f"Total benchmark time: {fmt_duration(total)} ({total:.0f} s) for {len(runs)} runs "
        f"({sum(not r.ok for r in runs)} failed)"
        + (f"; of which {fmt_duration(this)} in this invocation and {fmt_duration(offset)} measured by the "
           f"interrupted one ({sum(r.resumed for r in runs)} runs reused; the time it spent on the run it was "
           "interrupted in is not counted)" if args.resume else "")
        + f". Load average at end: {load_average()}.",
    ]
    print("\n".join(out), flush=True)
    if args.json is not None:
        write_json(args.json, machine, args, configs, runs, skipped, bench_started, complete=True,
                   checks=check_results, earlier=earlier)
        print(f"\nJSON written to {args.json}")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())

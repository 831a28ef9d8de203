"""How much labeled data does transfer save? Learning curves for transfer and for models without
pretraining, on real data nobody on the team wrote.

For each dataset, the training pool is subsampled (stratified, seeded) to 10/25/50/100% and every
model is trained on exactly those labels and scored on one fixed test set:

- ``transfer``: the linear probe on the pretrained backbone's cached features (headstart's floor);
- ``classic``: TF-IDF + logistic regression (text) or logistic regression on 32×32 grey pixels
  (images), ``C`` cross-validated;
- ``random-features``: the same backbone with random weights under the same probe;
- ``scratch``: the same network from random weights, trained end to end with a time budget
  (``--scratch-budget`` seconds per fit, early stopping on a held-out part).

Datasets: ``spam`` (spam-assassin, ``minilm``, a balanced pool of ``--spam-pool`` e-mails per class
and a fixed balanced test set of ``--spam-test-per-class``) and ``animals`` (animal-silhouettes,
``efficientnet_lite0``, its train split of 600 and ``--animal-test-n`` of its test split).

It prints one markdown table (rows: dataset × model; columns: accuracy at each number of labels,
mean ± sd over seeds) and, per dataset, the "labels saved" figure: how many labels each model
without pretraining needs to reach transfer's accuracy at 10% of the labels.

    python benchmarks/transfer_vs_scratch.py                         # both datasets, 1 seed
    python benchmarks/transfer_vs_scratch.py --only animals --seeds 2 --scratch-budget 120 --json out.json
    python benchmarks/transfer_vs_scratch.py --from-json out.json   # the tables again, from saved results
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from headstart import TransferClassifier
from headstart.data import Dataset, from_memory, load_data
from headstart.evaluation import baselines as B
from headstart.evaluation.proof import FRACTIONS, subsample
from headstart.features import embed_batches, extract_features, resolve_device
from headstart.strategies.linear_probe import fit_probe

DATASETS = Path(os.environ.get("HEADSTART_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
MODELS = ("transfer", "classic", "random-features", "scratch")


def spam(pool_per_class: int, test_per_class: int) -> tuple[Dataset, Dataset, str]:
    rows = [json.loads(line) for line in (DATASETS / "spam-assassin" / "emails.jsonl").read_text().splitlines()
            if line.strip()]
    rng = random.Random(20240521)
    by_label: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_label.setdefault(r["label"], []).append(i)
    train_idx, test_idx = [], []
    for idx in by_label.values():
        rng.shuffle(idx)
        test_idx += idx[:test_per_class]
        train_idx += idx[test_per_class:test_per_class + pool_per_class]
    pick = lambda ids: from_memory([rows[i]["text"] for i in sorted(ids)], [rows[i]["label"] for i in sorted(ids)])  # noqa: E731
    return pick(train_idx), pick(test_idx), "minilm"


def animals(test_n: int) -> tuple[Dataset, Dataset, str]:
    data = load_data(DATASETS / "animal-silhouettes")
    test = data.split("test")
    idx = subsample(test, min(1.0, test_n / len(test)), seed=20240522)
    return data.split("train"), test.subset(idx), "efficientnet_lite0"


def accuracy(proba: np.ndarray, data: Dataset, classes: list[Any]) -> float:
    y = np.array([classes.index(v) for v in data.labels])
    return float((proba.argmax(1) == y).mean())


def run_dataset(name: str, train: Dataset, test: Dataset, backbone_name: str, seeds: list[int],
                scratch_budget: float, cache: Path) -> dict[str, Any]:
    device = resolve_device("auto")
    clf = TransferClassifier(backbone=backbone_name, cache=str(cache))
    backbone = clf._build_backbone(train.modality)
    classes = train.classes
    y = np.array([classes.index(v) for v in train.labels])
    started = time.perf_counter()
    f_train = extract_features(backbone, train, cache=clf._cache(), device=device)
    f_test = extract_features(backbone, test, cache=clf._cache(), device=device)
    print(f"[{name}] pretrained features: {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    results: dict[str, dict[int, list[float]]] = {m: {} for m in MODELS}
    seconds: dict[str, list[float]] = {m: [] for m in MODELS}
    n_labels: list[int] = []
    for seed in seeds:
        random_net = B.reinitialised(backbone, seed)
        r_train = embed_batches(random_net, train.items, train.locators, device=device)
        r_test = embed_batches(random_net, test.items, test.locators, device=device)
        n_labels = []
        for fraction in FRACTIONS:
            idx = subsample(train, fraction, seed)
            n = len(idx)
            n_labels.append(n)
            part = train.subset(idx)
            t0 = time.perf_counter()
            head, _ = fit_probe(f_train[idx], y[idx], seed=seed)
            scores = {"transfer": accuracy(head.predict_proba(f_test), test, classes)}
            seconds["transfer"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            scores["classic"] = accuracy(B.classic(part, test, classes, seed).proba, test, classes)
            seconds["classic"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            head, _ = fit_probe(r_train[idx], y[idx], seed=seed)
            scores["random-features"] = accuracy(head.predict_proba(r_test), test, classes)
            seconds["random-features"].append(time.perf_counter() - t0)
            if scratch_budget > 0:
                t0 = time.perf_counter()
                b = B.scratch(backbone, part, test, classes, budget_seconds=scratch_budget, seed=seed, device=device)
                scores["scratch"] = accuracy(b.proba, test, classes)
                seconds["scratch"].append(time.perf_counter() - t0)
            for model, value in scores.items():
                results[model].setdefault(n, []).append(value)
            print(f"[{name}] seed {seed} n={n}: " + "  ".join(f"{m} {v:.3f}" for m, v in scores.items()),
                  file=sys.stderr, flush=True)
    return {"name": name, "backbone": backbone_name, "n_train_pool": len(train), "n_test": len(test),
            "n_labels": n_labels, "seeds": seeds, "scratch_budget": scratch_budget,
            "accuracy": {m: {str(n): v for n, v in per.items()} for m, per in results.items() if per},
            "mean_seconds": {m: statistics.fmean(s) for m, s in seconds.items() if s}}


def mean_sd(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0] * 100:.1f}"
    return f"{statistics.fmean(values) * 100:.1f} ± {statistics.stdev(values) * 100:.1f}"


def report(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in results:
        lines.append(f"\n### {r['name']} ({r['backbone']}; pool {r['n_train_pool']}, test {r['n_test']}, "
                     f"seeds {r['seeds']}, scratch budget {r['scratch_budget']:.0f}s per fit)\n")
        lines.append("| model | " + " | ".join(f"{n} labels" for n in r["n_labels"]) + " | mean fit s |")
        lines.append("| --- | " + " | ".join("--:" for _ in r["n_labels"]) + " | --: |")
        for model, per in r["accuracy"].items():
            cells = [mean_sd(per[str(n)]) if str(n) in per else "—" for n in r["n_labels"]]
            lines.append(f"| {model} | " + " | ".join(cells) + f" | {r['mean_seconds'].get(model, 0):.1f} |")
        target = statistics.fmean(r["accuracy"]["transfer"][str(r["n_labels"][0])])
        lines.append(f"\nLabels saved: transfer reaches {target * 100:.1f}% with {r['n_labels'][0]} labels.")
        for model, per in r["accuracy"].items():
            if model == "transfer":
                continue
            reached = [n for n in r["n_labels"] if statistics.fmean(per[str(n)]) >= target]
            if not reached:
                lines.append(f"- {model}: does not reach it even with all {r['n_labels'][-1]} labels")
            elif reached[0] == r["n_labels"][0]:
                lines.append(f"- {model}: matches it already at {reached[0]} labels (transfer saves none)")
            else:
                lines.append(f"- {model}: needs {reached[0]} labels ({reached[0] / r['n_labels'][0]:.1f}× as many)")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("spam", "animals"), action="append", help="one dataset (repeatable)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--scratch-budget", type=float, default=60.0, help="seconds per scratch fit (0 skips)")
    parser.add_argument("--spam-pool", type=int, default=100, help="training e-mails per class (the 100%% point)")
    parser.add_argument("--spam-test-per-class", type=int, default=300)
    parser.add_argument("--animal-test-n", type=int, default=500)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--from-json", type=Path, default=None, help="print the tables of an earlier --json run")
    args = parser.parse_args(argv)
    if args.from_json:
        print("\n".join(report(json.loads(args.from_json.read_text()))))
        return 0
    if not DATASETS.is_dir():
        raise SystemExit(f"{DATASETS} not found; set HEADSTART_SHARED_DATASETS.")
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="headstart-tvs-"))
    seeds = list(range(args.seeds))
    results = []
    for name in args.only or ("spam", "animals"):
        train, test, backbone = (spam(args.spam_pool, args.spam_test_per_class) if name == "spam"
                                 else animals(args.animal_test_n))
        results.append(run_dataset(name, train, test, backbone, seeds, args.scratch_budget, cache))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    print("\n".join(report(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

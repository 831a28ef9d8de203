"""Does `headstart rank` predict which backbone fine-tunes best? Kendall's τ against brute force.

For each dataset, every offline vision candidate (efficientnet_lite0/1/2, mobilenet_v2) is
fine-tuned with one fixed recipe (``--strategy``, default ``partial``: LP-FT, top layer groups,
``--epochs`` epochs, early stopping) and scored on a fixed test set. Then ``rank`` scores the
same training labels (test never seen). For every score (and the combined recommendation) it
reports Kendall's τ between the score's order and the fine-tuned accuracy's order, whether the
top-ranked candidate is the best one or within 1 point of it, and the time ``rank`` took
against the time fine-tuning every candidate took, measured in the same run. The random-weights
control is scored by ``rank`` too: every score should put it last.

Datasets (``../shared/datasets``): animal-silhouettes at 10 and 30 labels per class (test: 500
of its test split), mnist-10k at 20 and 50 per class (test: 500 other digits).

    python benchmarks/rank_validity.py --json benchmarks/results/rank-validity.json
    python benchmarks/rank_validity.py --only animals10 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from headstart import TransferClassifier
from headstart.data import Dataset, from_memory, load_data
from headstart.transferability import rank
from headstart.transferability.ranking import Candidate, combine

DATASETS = Path(os.environ.get("HEADSTART_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
CANDIDATES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v2"]
SCORES = ["combined", "linear_probe", "knn", "logme", "h_score", "leep", "nce"]


def _per_class(labels: Sequence[Any], n: int, rng: np.random.Generator, exclude: set[int] = frozenset()) -> list[int]:
    labels = np.array([str(v) for v in labels])
    out: list[int] = []
    for value in sorted(set(labels)):
        idx = [i for i in np.flatnonzero(labels == value) if i not in exclude]
        out += rng.choice(idx, n, replace=False).tolist()
    return sorted(out)


def animals(per_class: int) -> tuple[Dataset, Dataset]:
    data = load_data(DATASETS / "animal-silhouettes")
    rng = np.random.default_rng(0)
    train = data.split("train")
    test = data.split("test")
    return (train.subset(_per_class(train.labels, per_class, rng)),
            test.subset(sorted(rng.choice(len(test), 500, replace=False).tolist())))


def mnist(per_class: int) -> tuple[Dataset, Dataset]:
    npz = np.load(DATASETS / "mnist-10k" / "mnist-10k.npz")
    images, labels = npz["images"], [str(v) for v in npz["labels"]]
    rng = np.random.default_rng(0)
    train_idx = _per_class(labels, per_class, rng)
    rest = sorted(set(range(len(labels))) - set(train_idx))
    test_idx = sorted(rng.choice(rest, 500, replace=False).tolist())
    return (from_memory(images[train_idx], [labels[i] for i in train_idx], source=f"mnist-{per_class}pc"),
            from_memory(images[test_idx], [labels[i] for i in test_idx], source="mnist-test"))


SETS = {"animals10": lambda: animals(10), "animals30": lambda: animals(30),
        "mnist20": lambda: mnist(20), "mnist50": lambda: mnist(50)}


def run_set(name: str, strategy: str, epochs: int, cache: Path) -> dict[str, Any]:
    train, test = SETS[name]()
    y_test = [str(v) for v in test.labels]
    finetuned: dict[str, float] = {}
    ft_seconds: dict[str, float] = {}
    for cand in CANDIDATES:
        t0 = time.perf_counter()
        clf = TransferClassifier(backbone=cand, strategy=strategy, epochs=epochs, cache=str(cache), random_state=0)
        clf.fit(train)
        finetuned[cand] = float(np.mean([str(p) == t for p, t in zip(clf.predict(test), y_test)]))
        ft_seconds[cand] = time.perf_counter() - t0
        print(f"[{name}] {cand}: fine-tuned accuracy {finetuned[cand]:.3f} ({ft_seconds[cand]:.0f}s)",
              file=sys.stderr, flush=True)
    # rank on a cold cache for the candidates' features, as a user's first run would be.
    rank_cache = Path(tempfile.mkdtemp(prefix="hs-rank-"))
    t0 = time.perf_counter()
    report = rank(train, [*CANDIDATES, "random:efficientnet_lite0"], cache=rank_cache, seed=0)
    rank_seconds = time.perf_counter() - t0
    by = {c.name: c for c in report.candidates}
    return {"name": name, "n_train": len(train), "n_test": len(test), "strategy": strategy, "epochs": epochs,
            "finetuned": finetuned, "finetune_seconds": ft_seconds, "rank_seconds": rank_seconds,
            "recommended": report.recommended, "scores": {c: by[c].scores for c in by}}


def evaluate(result: dict[str, Any]) -> dict[str, Any]:
    """Kendall's τ, top-1 hits and the control's place for every score, recomputing the combined
    score with the current weights from the stored single scores."""
    cands = [Candidate(name, control=name.startswith("random:"), scores=scores)
             for name, scores in result["scores"].items()]
    combine(cands)
    by = {c.name: c for c in cands}
    control = by["random:efficientnet_lite0"]
    finetuned = result["finetuned"]
    best = max(finetuned.values())
    per_score: dict[str, Any] = {}
    for score in SCORES:
        values = {c: (by[c].combined if score == "combined" else by[c].scores.get(score)) for c in CANDIDATES}
        if any(v is None for v in values.values()):
            continue
        tau = kendalltau([values[c] for c in CANDIDATES], [finetuned[c] for c in CANDIDATES]).statistic
        top = max(CANDIDATES, key=lambda c: values[c])
        ctrl = control.combined if score == "combined" else control.scores.get(score)
        per_score[score] = {"tau": None if np.isnan(tau) else float(tau), "top": top,
                            "top_is_best": finetuned[top] == best, "top_within_1pt": finetuned[top] >= best - 0.01,
                            "control_last": None if ctrl is None else all(ctrl < values[c] for c in CANDIDATES)}
    return per_score


def summary(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| data | " + " | ".join(CANDIDATES) + " | recommended | rank s | fine-tune all s | ratio |",
             "| --- | " + " | ".join("--:" for _ in CANDIDATES) + " | --- | --: | --: | --: |"]
    for r in results:
        ft = sum(r["finetune_seconds"].values())
        lines.append(f"| {r['name']} ({r['n_train']} train) | "
                     + " | ".join(f"{r['finetuned'][c] * 100:.1f}" for c in CANDIDATES)
                     + f" | {r['recommended']} | {r['rank_seconds']:.0f} | {ft:.0f} | 1/{ft / r['rank_seconds']:.0f} |")
    per = [evaluate(r) for r in results]
    lines += ["\n| score | mean Kendall τ | τ per dataset | top-1 is best | top-1 within 1 pt | control ranked last |",
              "| --- | --: | --- | --: | --: | --: |"]
    for score in SCORES:
        rows = [p[score] for p in per if score in p]
        if not rows:
            continue
        taus = [x["tau"] for x in rows if x["tau"] is not None]
        ctrl = [x["control_last"] for x in rows if x["control_last"] is not None]
        lines.append(f"| {score} | {statistics.fmean(taus):+.2f} | " + ", ".join(f"{t:+.2f}" for t in taus)
                     + f" | {sum(x['top_is_best'] for x in rows)}/{len(rows)} | "
                     f"{sum(x['top_within_1pt'] for x in rows)}/{len(rows)} | "
                     + (f"{sum(ctrl)}/{len(ctrl)}" if ctrl else "—") + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=list(SETS), action="append")
    parser.add_argument("--strategy", default="partial")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--from-json", type=Path, default=None, help="print the tables of an earlier --json run")
    args = parser.parse_args(argv)
    if args.from_json:
        print("\n".join(summary(json.loads(args.from_json.read_text()))))
        return 0
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="hs-rv-"))
    results = []
    for name in args.only or list(SETS):
        results.append(run_set(name, args.strategy, args.epochs, cache))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    print("\n".join(summary(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

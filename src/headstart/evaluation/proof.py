"""The evidence behind a fitted model: baselines, the verdict, a learning curve, slices, mistakes,
latency — everything ``report.html`` shows, as one JSON-ready dict (stored in the bundle too).

Everything is computed on the fit's own splits: baselines learn from exactly the labels the
transfer model learned from (train + validation) and are scored on the same held-out test items.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from headstart.data.dataset import Dataset, concat
from headstart.evaluation import baselines as B
from headstart.evaluation.metrics import SUMMARY_KEYS, classification_metrics, slice_metrics
from headstart.evaluation.verdict import verdict
from headstart.features import embed_batches, extract_features, resolve_device
from headstart.modalities import get_modality
from headstart.strategies.linear_probe import QUICK, fit_probe

logger = logging.getLogger(__name__)

FRACTIONS = (0.1, 0.25, 0.5, 1.0)
MAX_MISTAKES = 12
Step = Callable[[str], None]


def prove(clf: Any, data: Dataset, *, compare: bool = True, learning_curve: bool = True,
          scratch_budget: float | None = None, seeds: int = 1, command: str = "",
          step: Step | None = None) -> dict[str, Any]:
    """The report dict for a fitted :class:`~headstart.TransferClassifier` and the data it was fitted on.

    Args:
        clf: the fitted classifier.
        data: the dataset it was fitted on, with its ``train``/``val``/``test`` splits.
        compare: train the baselines and state a verdict (off: only the model's own evidence).
        learning_curve: probes at 10/25/50/100% of the training labels (cheap: cached features).
        scratch_budget: wall-clock seconds for the whole from-scratch baseline (default: the
            transfer fit's time, at least ``SCRATCH_BUDGET_FLOOR`` s of baselines.py); 0 skips it.
        seeds: > 1 refits the transfer model and the seeded baselines with further seeds and
            reports the spread.
        command: the command line that produced the model.
        step: called with a short description before each stage (progress on the terminal).
    """
    step = step or (lambda _msg: None)
    classes = [c.item() if hasattr(c, "item") else c for c in clf.classes_]
    seed = clf.fit_info_["seed"]
    train = data.split("train")
    val = data.split("val")
    learned = concat(train, val) if len(val) else train
    test = data.split("test")
    report: dict[str, Any] = {
        "title": f"headstart: {data.source}",
        "created": clf.fit_info_.get("created"),
        "task": {"modality": data.modality, "classes": [str(c) for c in classes], "n_train": len(train),
                 "n_val": len(val), "n_test": len(test), "backbone": clf.backbone_.spec.name,
                 "strategy": clf.strategy_details_.get("name")},
        "verdict": None, "comparison": [], "metrics": None, "learning_curve": None, "slices": {},
        "mistakes": [], "latency": None,
        "reproduce": {"command": command, "seed": seed, "data_fingerprint": data.fingerprint(),
                      "versions": clf.fit_info_.get("versions", {})},
    }
    if not len(test):
        report["note"] = "no test split: nothing held out, so no metrics, baselines or verdict"
        return report
    step("scoring the model on the test split")
    proba = clf._proba(test)
    metrics = classification_metrics(test.labels, proba, classes)
    report["metrics"] = metrics
    if test.slices:
        report["slices"] = slice_metrics(test.labels, proba, classes, test.slices)
    y_test = np.array([classes.index(v) for v in test.labels])
    transfer_correct = proba.argmax(1) == y_test
    hybrid = getattr(clf, "hybrid_", None)
    name = f"{clf.strategy_details_.get('name')} on {clf.backbone_.spec.name}"
    if hybrid is not None:
        name = f"hybrid: {name} (weight {hybrid.weight:.1f}) + classic TF-IDF (weight {1 - hybrid.weight:.1f})"
    report["comparison"].append({"name": name if hybrid is not None else f"transfer: {name}",
                                 "kind": "transfer", **_summary(metrics),
                                 "fit_seconds": clf.fit_info_.get("fit_seconds"), "note": "this model"})
    report["mistakes"] = mistakes(test, proba, classes)

    device = resolve_device(clf.device)
    pretrained = clf._build_backbone(data.modality) if clf.backbone_changed_ else clf.backbone_
    random_train = random_test = classic_proba = random_proba = None
    if compare:
        found, random_train, random_test = _baselines(clf, pretrained, learned, test, classes, seed, device,
                                                      scratch_budget, step)
        classic_proba = next((b.proba for b in found if b.kind == "classic"), None)
        random_proba = next((b.proba for b in found if b.kind == "random-features"), None)
        for b in found:
            m = classification_metrics(test.labels, b.proba, classes)
            report["comparison"].append({"name": b.name, "kind": b.kind, **_summary(m),
                                         "fit_seconds": round(b.fit_seconds, 2), "note": b.note,
                                         **({"details": b.details} if b.details else {})})
        seed_runs = _more_seeds(clf, data, pretrained, learned, test, classes, seed, seeds, device,
                                scratch_budget, step) if seeds > 1 else None
        report["verdict"] = verdict(
            transfer_correct, [{"name": b.name, "correct": b.proba.argmax(1) == y_test} for b in found],
            seed=seed, seed_runs=seed_runs)
        if hybrid is not None:
            evidence = clf.strategy_details_.get("hybrid") or {}
            report["verdict"]["hybrid"] = {"weight": hybrid.weight, **{k: evidence.get(k) for k in (
                "transfer_cv_accuracy", "classic_cv_accuracy", "gain_over_transfer", "standard_error")}}
            report["verdict"]["explanation"] += (
                f" This model is a hybrid: {name}, stacked because in cross-validation on the training labels it "
                f"beat the transfer model alone by {evidence.get('gain_over_transfer', 0) * 100:.1f} points. Its "
                "classic part is trained like the classic baseline, so the difference to that baseline is what the "
                "pretrained part adds.")
    if learning_curve:
        step("learning curve (10/25/50/100% of the labels)")
        # The curve's last point (every label) is, where it is the same fit, the model or baseline itself.
        own = proba if hybrid is None and clf.strategy_details_.get("name") == "linear-probe" else None
        report["learning_curve"] = curve(clf, pretrained, learned, test, classes, seed, random_train, random_test,
                                         compare, classic_proba, random_proba, own)
    step("timing predictions")
    report["latency"] = latency(clf, test, device)
    return report


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in SUMMARY_KEYS}


def _baselines(clf: Any, pretrained: Any, learned: Dataset, test: Dataset, classes: list[Any], seed: int,
               device: torch.device, scratch_budget: float | None, step: Step):
    found = [B.trivial(learned, test, classes)]
    step("baseline: classic model without pretraining")
    found.append(B.classic(learned, test, classes, seed))
    step("baseline: same backbone, random weights, same probe")
    rf, random_train, random_test = B.random_features(pretrained, learned, test, classes, seed=seed, device=device,
                                                      batch_size=clf.batch_size)
    found.append(rf)
    budget = _scratch_budget(clf, scratch_budget)
    if budget > 0:
        step(f"baseline: the network trained from scratch ({B.seconds(budget)}s budget)")
        # It starts from the very random weights random features came from: their features are reused.
        known = B.KnownFeatures.of([(learned, random_train), (test, random_test)], rf.details)
        found.append(B.scratch(pretrained, learned, test, classes, budget_seconds=budget, seed=seed, device=device,
                               known=known))
    return found, random_train, random_test


def _scratch_budget(clf: Any, scratch_budget: float | None) -> float:
    """The given budget, or the transfer fit's own time (the same compute), at least ``B.SCRATCH_BUDGET_FLOOR``."""
    if scratch_budget is not None:
        return float(scratch_budget)
    return max(B.SCRATCH_BUDGET_FLOOR, float(clf.fit_info_.get("fit_seconds") or 0.0))


def _more_seeds(clf: Any, data: Dataset, pretrained: Any, learned: Dataset, test: Dataset, classes: list[Any],
                seed: int, seeds: int, device: torch.device, scratch_budget: float | None,
                step: Step) -> list[tuple[float, float]]:
    """(transfer accuracy, strongest baseline accuracy) for seeds ``seed+1 .. seed+seeds-1``."""
    from sklearn.base import clone

    y_test = np.array([classes.index(v) for v in test.labels])
    runs = []
    for extra in range(1, seeds):
        s = seed + extra
        step(f"seed {s}: transfer and baselines again")
        other = clone(clf).set_params(random_state=s).fit(data)
        transfer = float((other._proba(test).argmax(1) == y_test).mean())
        found, _, _ = _baselines(other, pretrained, learned, test, classes, s, device, scratch_budget, lambda _m: None)
        runs.append((transfer, max(float((b.proba.argmax(1) == y_test).mean()) for b in found)))
    return runs


def subsample(data: Dataset, fraction: float, seed: int) -> np.ndarray:
    """Indices of a stratified ``fraction`` of ``data``, at least 2 per class (when it has them)."""
    rng = np.random.default_rng(seed)
    labels = np.array([str(v) for v in data.labels])
    chosen = []
    for c in sorted(set(labels)):
        idx = np.flatnonzero(labels == c)
        k = min(len(idx), max(2, math.ceil(fraction * len(idx))))
        chosen.extend(rng.choice(idx, size=k, replace=False).tolist())
    return np.array(sorted(chosen))


def curve(clf: Any, pretrained: Any, learned: Dataset, test: Dataset, classes: list[Any], seed: int,
          random_train: np.ndarray | None, random_test: np.ndarray | None, compare: bool,
          classic_proba: np.ndarray | None = None, random_proba: np.ndarray | None = None,
          transfer_proba: np.ndarray | None = None) -> dict[str, Any]:
    """Test accuracy of the probe on pretrained features vs the baselines' feature models as the
    number of training labels grows (10/25/50/100%). ``classic_proba``, ``random_proba``: the classic
    and random-features baselines' test probabilities, fitted on all of ``learned`` (the curve's last
    point), when they ran already; ``transfer_proba``: the model's own, when it is that probe."""
    cache = clf._cache()
    device = resolve_device(clf.device)
    f_train = extract_features(pretrained, learned, cache=cache, batch_size=clf.batch_size, device=device)
    f_test = extract_features(pretrained, test, cache=cache, batch_size=clf.batch_size, device=device)
    y = np.array([classes.index(v) for v in learned.labels])
    y_test = np.array([classes.index(v) for v in test.labels])
    subsets = [subsample(learned, f, seed) for f in FRACTIONS]

    def probe_series(train_x: np.ndarray, test_x: np.ndarray, last: np.ndarray | None) -> list[float]:
        values = []
        for idx in subsets:
            if last is not None and len(idx) == len(learned):  # every label, in order: the fit that ran already
                proba = last
            else:
                proba = fit_probe(train_x[idx], y[idx], seed=seed, **QUICK)[0].predict_proba(test_x)
            values.append(float((proba.argmax(1) == y_test).mean()))
        return values

    series = [{"name": "transfer: probe on pretrained features", "values": probe_series(f_train, f_test, transfer_proba),
               "sd": None}]
    if compare:
        classic_values = []
        for idx in subsets:
            # every label (the subset is all of `learned`, in order): the classic baseline itself
            proba = classic_proba if classic_proba is not None and len(idx) == len(learned) else None
            proba = proba if proba is not None else B.classic(learned.subset(idx), test, classes, seed).proba
            classic_values.append(float((proba.argmax(1) == y_test).mean()))
        series.append({"name": "no pretraining: classic model", "values": classic_values, "sd": None})
        if random_train is not None and random_test is not None:
            series.append({"name": "no pretraining: random weights + probe",
                           "values": probe_series(random_train, random_test, random_proba), "sd": None})
    n_labels = [len(idx) for idx in subsets]
    return {"metric": "accuracy", "fractions": list(FRACTIONS), "n_labels": n_labels, "series": series,
            "labels_saved": labels_saved(series, n_labels)}


def labels_saved(series: list[dict[str, Any]], n_labels: list[int]) -> str | None:
    """How many labels the best model without pretraining needs to match transfer at 10%."""
    if len(series) < 2:
        return None
    target = series[0]["values"][0]
    best_n, best_name = None, None
    for s in series[1:]:
        reached = [n for n, v in zip(n_labels, s["values"]) if v >= target]
        if reached and (best_n is None or reached[0] < best_n):
            best_n, best_name = reached[0], s["name"].removeprefix("no pretraining: ")
    if best_n is None:
        return (f"Transfer reaches {target:.3f} with {n_labels[0]} labels; no model without pretraining reaches it "
                f"even with all {n_labels[-1]}.")
    if best_n <= n_labels[0]:
        return f"Without pretraining, the {best_name} matches transfer's {target:.3f} already at {best_n} labels."
    return (f"Transfer reaches {target:.3f} with {n_labels[0]} labels; without pretraining the {best_name} needs "
            f"{best_n} ({best_n / n_labels[0]:.1f}× as many).")


def mistakes(test: Dataset, proba: np.ndarray, classes: list[Any], limit: int = MAX_MISTAKES) -> list[dict[str, Any]]:
    """The most confident wrong predictions, with a preview of each item."""
    y = np.array([classes.index(v) for v in test.labels])
    pred = proba.argmax(1)
    wrong = np.flatnonzero(pred != y)
    wrong = wrong[np.argsort(-proba[wrong, pred[wrong]], kind="stable")][:limit]
    modality = get_modality(test.modality)
    return [{"preview": modality.preview(test.items[i], test.locators[i]), "true": str(classes[y[i]]),
             "predicted": str(classes[pred[i]]), "confidence": float(proba[i, pred[i]]),
             "locator": test.locators[i] or f"item {i}"} for i in wrong]


def latency(clf: Any, test: Dataset, device: torch.device, n_single: int = 24, n_batch: int = 64) -> dict[str, Any]:
    """Per-item latency (batch of 1, uncached: what a service sees) and batched throughput."""
    backbone, head = clf.backbone_, clf.head_
    items, locators = test.items, test.locators
    single = list(range(min(n_single, len(items))))
    embed_batches(backbone, [items[0]], [locators[0]], batch_size=1, device=device)  # warm-up
    times = []
    for i in single:
        started = time.perf_counter()
        head.predict_proba(embed_batches(backbone, [items[i]], [locators[i]], batch_size=1, device=device))
        times.append((time.perf_counter() - started) * 1000)
    batch = list(range(min(n_batch, len(items))))
    started = time.perf_counter()
    head.predict_proba(embed_batches(backbone, [items[i] for i in batch], [locators[i] for i in batch],
                                     batch_size=32, device=device))
    seconds = time.perf_counter() - started
    n_params = sum(p.numel() for p in backbone.parameters()) + sum(p.numel() for p in head.parameters())
    size = sum(t.numel() * t.element_size() for t in [*backbone.state_dict().values(), *head.state_dict().values()])
    return {"device": str(device), "batch_size": 32, "p50_ms": float(np.percentile(times, 50)),
            "p95_ms": float(np.percentile(times, 95)), "n_timed": len(times),
            "throughput_per_s": len(batch) / seconds if seconds > 0 else None,
            "model_size_mb": size / 2**20, "n_params": int(n_params)}

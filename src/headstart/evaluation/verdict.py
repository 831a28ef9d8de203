"""Did transfer help? A verdict with evidence: the difference, a bootstrap interval, the seed spread.

The transfer model and every baseline are scored on the *same* test items, so the comparison
is paired: the bootstrap resamples test items (with replacement) and recomputes the accuracy
difference on each resample; the 2.5th and 97.5th percentiles bound the difference (a 95%
percentile interval). Pairing removes the item-difficulty noise both models share, which an
unpaired comparison of two accuracies would count twice.

- interval entirely above 0: **transfer helps**;
- entirely below 0: **negative transfer** (the baseline is better on this data);
- otherwise: **no significant difference**.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

HELPS, NO_DIFFERENCE, NEGATIVE = "transfer helps", "no significant difference", "negative transfer"


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, *, n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``mean(correct_a) - mean(correct_b)`` over resampled items."""
    a = np.asarray(correct_a, dtype=np.float64)
    b = np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError("paired_bootstrap needs two equally long, non-empty 1-d arrays (one entry per test item).")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 500):  # chunks keep memory flat on large test sets
        stop = min(n_boot, start + 500)
        idx = rng.integers(0, len(diff), size=(stop - start, len(diff)))
        means[start:stop] = diff[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def verdict(transfer_correct: np.ndarray, baselines: Sequence[dict[str, Any]], *, seed: int = 0,
            n_boot: int = 2000, level: float = 0.95,
            seed_runs: Sequence[tuple[float, float]] | None = None) -> dict[str, Any]:
    """The verdict of the transfer model against its strongest baseline on accuracy.

    Args:
        transfer_correct: per test item, whether the transfer model got it right.
        baselines: ``{"name": ..., "correct": array}`` per baseline, same items in the same order.
            The strongest (highest accuracy) is the one to beat; a trivial baseline counts too.
        seed: seeds the bootstrap.
        seed_runs: (transfer accuracy, strongest baseline accuracy) of further seeds, if any; their
            spread is reported next to the interval.
    """
    transfer_correct = np.asarray(transfer_correct, dtype=bool)
    if not baselines:
        raise ValueError("verdict needs at least one baseline.")
    best = max(baselines, key=lambda b: float(np.mean(b["correct"])))
    transfer, base = float(transfer_correct.mean()), float(np.mean(best["correct"]))
    lo, hi = paired_bootstrap(transfer_correct, np.asarray(best["correct"], dtype=bool), n_boot=n_boot,
                              level=level, seed=seed)
    label = HELPS if lo > 0 else NEGATIVE if hi < 0 else NO_DIFFERENCE
    pct = f"{level:.0%}"
    diff = transfer - base
    if label == HELPS:
        why = (f"Transfer is {diff * 100:.1f} points more accurate than the strongest baseline ({best['name']}); "
               f"the {pct} interval of the difference, {lo * 100:+.1f} to {hi * 100:+.1f} points, excludes zero.")
    elif label == NEGATIVE:
        why = (f"The baseline {best['name']} is {-diff * 100:.1f} points more accurate than transfer; the {pct} "
               f"interval, {lo * 100:+.1f} to {hi * 100:+.1f} points, excludes zero. Prefer the baseline, or try "
               "another backbone or strategy.")
    else:
        why = (f"Transfer and {best['name']} differ by {diff * 100:+.1f} points, but the {pct} interval "
               f"({lo * 100:+.1f} to {hi * 100:+.1f} points) includes zero: on {len(transfer_correct)} test items "
               "the data cannot tell them apart. The simpler model is as good a choice.")
    seeds = None
    if seed_runs:
        t = [transfer] + [r[0] for r in seed_runs]
        b = [base] + [r[1] for r in seed_runs]
        seeds = {"n": len(t), "transfer_sd": float(np.std(t, ddof=1)), "baseline_sd": float(np.std(b, ddof=1)),
                 "difference_mean": float(np.mean(np.subtract(t, b))),
                 "difference_min": float(np.min(np.subtract(t, b)))}
        why += (f" Over {len(t)} seeds the difference averages {seeds['difference_mean'] * 100:+.1f} points "
                f"(transfer sd {seeds['transfer_sd'] * 100:.1f}, baseline sd {seeds['baseline_sd'] * 100:.1f}).")
    return {"label": label, "metric": "accuracy", "transfer": transfer,
            "baseline": {"name": best["name"], "value": base}, "difference": diff, "ci": [lo, hi],
            "ci_level": level, "n_test": len(transfer_correct), "n_boot": n_boot, "seeds": seeds,
            "explanation": why}

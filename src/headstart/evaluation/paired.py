"""Is one model's gain over another, on the same items, larger than those items can fake?

A validation split of small data is small: on 30 items one item is 3.3 points, and a model
picked because it looked better there often is not (issue 15: ``lora`` kept an epoch that led
on 30 validation images and ended 2.5 points below the linear probe on 1,000 test images).
Both models answer the *same* items, so the test is paired: per item
``d_i = correct_new_i - correct_base_i`` (+1, 0 or -1), and the gain ``mean(d)`` must exceed
:data:`SIGNIFICANCE_SE` standard errors of that mean. Items both get right (or both wrong)
carry no evidence, so what counts is how many more items the new model wins than it loses,
against how many it changed at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from headstart.errors import ConfigError

# Standard errors the paired gain must exceed. Two is about a one-sided 2.3% chance that a
# model no better than the base shows a gain that large (normal approximation), and it asks for
# real evidence on a 30-item split: with MIN_NET_ITEMS below, 5 items won and none lost, or 7 won
# and 1 lost (4 and 0, or 6 and 1, are not enough).
SIGNIFICANCE_SE = 2.0
# Items the new model must win net (wins minus losses), whatever the standard error says: the
# best of many candidates "wins" a few items of a small split by chance, and when every changed
# item went its way the standard error is 0 (2 of 2 would count). Measured on the linear probe's
# choice (benchmarks/suite.py, spam-assassin at 8 e-mails per class, 16 items): 2-SE gains of 3
# items lost 3 and 7 points on the test set on two of five seeds.
MIN_NET_ITEMS = 5.0


def significant_gain(ft_correct: Sequence[Any], probe_correct: Sequence[Any]) -> dict[str, Any]:
    """Paired per-item test: is the new model's accuracy gain over the base real?

    Args:
        ft_correct: per item, whether the new model (e.g. the fine-tuned one) is right (bools or 0/1;
            or a fraction, averaged over repeated folds, or weighted for balanced accuracy).
        probe_correct: per item, whether the base (e.g. the linear probe) is right, on the same items
            in the same order.

    Returns:
        ``n``, ``accuracy`` (the new model's), ``base_accuracy``, ``gain`` (the difference),
        ``se`` (standard error of the mean per-item difference, ``None`` under two items),
        ``needed`` (the gain to beat: ``SIGNIFICANCE_SE * se``, and at least :data:`MIN_NET_ITEMS`
        items net) and ``significant``: whether ``gain > needed``. Under two items nothing is
        significant.

    Example:
        >>> significant_gain([1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0])["significant"]
        False
    """
    new = np.asarray(ft_correct, dtype=np.float64).ravel()
    base = np.asarray(probe_correct, dtype=np.float64).ravel()
    if new.shape != base.shape:
        raise ConfigError(f"significant_gain compares the same items: got {len(new)} results for the new model "
                          f"and {len(base)} for the base; pass both models' results on one set of items.")
    n = len(new)
    if n == 0:
        return {"n": 0, "accuracy": None, "base_accuracy": None, "gain": None, "se": None, "needed": None,
                "significant": False}
    diff = new - base
    gain = float(diff.mean())
    se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    needed = max(SIGNIFICANCE_SE * se, MIN_NET_ITEMS / n) if se is not None else None
    return {"n": n, "accuracy": float(new.mean()), "base_accuracy": float(base.mean()), "gain": gain, "se": se,
            "needed": needed, "significant": bool(needed is not None and gain > 0 and gain >= needed - 1e-12 and gain > SIGNIFICANCE_SE * se)}

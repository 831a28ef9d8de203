"""``auto``: start from the cheap floor, try what is likely to beat it within the budget, keep the best.

1. The linear probe on cached features: seconds, and the floor nothing may fall below.
2. Candidates chosen from the data (examples per class, modality), the backbone's size and the
   device, in order of how likely they are to beat the probe:
   - text, up to 16 examples per class: ``contrastive`` (SetFit-style pairs) then ``lora``;
   - text, more: ``lora`` then ``partial``;
   - images: ``partial`` (top 2 groups) then ``lora`` (``full`` too on a GPU).
3. Each candidate's cost is estimated from a timed training step on this machine; candidates
   that do not fit in what is left of ``budget`` are skipped.
4. Every candidate is scored on the same validation split; a candidate wins only when it is at
   least as accurate and has a lower log loss than the best so far, so the probe wins ties and
   noise. Every decision, with its numbers, is recorded in the bundle and printed.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from typing import Any

import numpy as np
import torch

from headstart.backbones.base import Backbone, move_to
from headstart.data.dataset import Dataset, concat
from headstart.errors import ConfigError
from headstart.features import embed_batches
from headstart.strategies.base import (
    STRATEGIES,
    FitContext,
    FittedModel,
    Strategy,
    register_strategy,
)
from headstart.strategies.finetune import carve_validation

logger = logging.getLogger(__name__)


def parse_budget(budget: str | float | int | None) -> float:
    """``"10m"``, ``"90s"``, ``"1h"``, ``"1h30m"`` or seconds as a number."""
    if budget is None:
        return 600.0
    if isinstance(budget, (int, float)):
        seconds = float(budget)
    else:
        parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", budget)
        if not parts or not any(parts.groups()):
            raise ConfigError(f"budget={budget!r}; write it like 90s, 10m, 1h or 1h30m.")
        h, m, s = (float(g) if g else 0.0 for g in parts.groups())
        seconds = h * 3600 + m * 60 + s
    if seconds <= 0:
        raise ConfigError(f"budget={budget!r}; it must be positive.")
    return seconds


def candidates(modality: str, per_class: float, device: torch.device) -> list[tuple[str, dict[str, Any], str]]:
    """(strategy, parameters, reason) in the order they are tried."""
    if modality == "text":
        if per_class <= 16:
            return [("contrastive", {}, f"{per_class:.0f} examples per class: pair training multiplies the "
                                         "signal of few examples (SetFit)"),
                    ("lora", {"epochs": 8}, "adapters adapt the encoder with few trainable weights")]
        return [("lora", {"epochs": 6}, f"{per_class:.0f} examples per class: enough to adapt the encoder "
                                        "with low-rank adapters"),
                ("partial", {"unfreeze": 2, "epochs": 6}, "top layers adapt, lower layers stay general")]
    picks = [("partial", {"unfreeze": 2, "epochs": 8}, "top layer groups adapt to the new images; the "
                                                       "generic lower layers stay frozen (safe with few images)"),
             ("lora", {"epochs": 8}, "adapters on every layer, few trainable weights")]
    if device.type == "cuda":
        picks.append(("full", {"epochs": 10}, "a GPU makes full fine-tuning affordable"))
    return picks


def _step_seconds(backbone: Backbone, data: Dataset, device: torch.device, batch_size: int = 16) -> float:
    """Seconds for one forward + backward pass of a batch through the whole backbone."""
    trial = copy.deepcopy(backbone).to(device).train()
    items = data.items[:batch_size]
    started = time.perf_counter()
    out = trial.forward_features(move_to(trial.preprocess(items, data.locators[:batch_size]), device))
    out.float().pow(2).mean().backward()
    return (time.perf_counter() - started) * batch_size / max(1, len(items))


def _val_scores(model: FittedModel, val: Dataset, device: torch.device) -> dict[str, float]:
    feats = embed_batches(model.backbone, val.items, val.locators, device=device)
    proba = model.head.predict_proba(feats)
    y = np.array([model.classes.index(v) for v in val.labels])
    return {"val_accuracy": float((proba.argmax(1) == y).mean()),
            "val_log_loss": float(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-15, 1)).mean())}


@register_strategy
class Auto(Strategy):
    """Pick the strategy for this data, backbone, device and time budget.

    Args:
        budget: wall-clock budget for the whole fit (``"10m"``, ``"90s"``, seconds).
        val_fraction: held out for choosing when there is no validation split.
    """

    name = "auto"
    description = "Linear probe first (the floor), then the strategies likely to beat it within --budget."

    def __init__(self, budget: str | float | None = "10m", val_fraction: float = 0.15) -> None:
        super().__init__(budget=budget, val_fraction=val_fraction, budget_seconds=parse_budget(budget))

    def fit(self, backbone: Backbone, train: Dataset, val: Dataset | None, context: FitContext) -> FittedModel:
        started = time.perf_counter()
        budget = self.params["budget_seconds"]
        train, val = carve_validation(train, val, self.params["val_fraction"], context.seed)
        pristine = copy.deepcopy(backbone)
        best = STRATEGIES["linear-probe"]().fit(backbone, train, None, context)
        best_scores = _val_scores(best, val, context.device)
        decisions = [{"strategy": "linear-probe", "reason": "the cheap floor: frozen cached features",
                      "seconds": round(time.perf_counter() - started, 2), **best_scores, "ran": True}]
        per_class = len(train) / max(1, len(set(train.labels)))
        step = _step_seconds(pristine, train, context.device)
        for name, params, reason in candidates(backbone.spec.modality, per_class, context.device):
            left = budget - (time.perf_counter() - started)
            estimate = self._estimate(name, params, step, len(train), len(val))
            decision: dict[str, Any] = {"strategy": name, "params": params, "reason": reason,
                                        "estimated_seconds": round(estimate, 1), "budget_left_seconds": round(left, 1)}
            if estimate > left:
                decisions.append({**decision, "ran": False, "skipped": "estimated time exceeds the budget left"})
                continue
            t0 = time.perf_counter()
            fitted = STRATEGIES[name](**params).fit(copy.deepcopy(pristine), train, val,
                                                    FitContext(embed=context.embed, seed=context.seed,
                                                               device=context.device, callbacks=context.callbacks,
                                                               embed_with=context.embed_with))
            scores = _val_scores(fitted, val, context.device)
            decision.update({"ran": True, "seconds": round(time.perf_counter() - t0, 2), **scores})
            # Validation sets of small data are small and noisy: a candidate replaces the current
            # best only when it is at least as accurate AND has a lower log loss (it dominates).
            better = (scores["val_accuracy"] >= best_scores["val_accuracy"]
                      and scores["val_log_loss"] < best_scores["val_log_loss"])
            decisions.append(decision)
            if better:
                best, best_scores = fitted, scores
        if best.strategy == "linear-probe":
            # The validation split only served the choice; the cheap winner is refitted on every label.
            best = STRATEGIES["linear-probe"]().fit(backbone, concat(train, val), None, context)
        for d in decisions:
            d["chosen"] = d["strategy"] == best.strategy and d.get("ran", False)
        details = {"chosen": best.strategy, "decisions": decisions, "budget_seconds": budget,
                   "examples_per_class": round(per_class, 1), "device": str(context.device),
                   "backbone_params": backbone.spec.n_params, "step_seconds_per_16": round(step, 3),
                   "chosen_details": best.details, "C": best.details.get("C")}
        return FittedModel(backbone=best.backbone, head=best.head, classes=best.classes, strategy=self.name,
                           params=dict(self.params), details=details, backbone_changed=best.backbone_changed)

    @staticmethod
    def _estimate(name: str, params: dict[str, Any], step: float, n_train: int, n_val: int) -> float:
        """Seconds a candidate should take: training steps plus validation passes (forward ≈ 1/3 step)."""
        batches = max(1, n_train / 16)
        if name == "contrastive":
            pairs = min(640, 2 * 20 * n_train)
            return pairs * 2 / 16 * step * 0.6 + (n_train + n_val) / 16 * step / 3
        epochs = params.get("epochs", 10)
        per_epoch = batches * step * (0.7 if name == "lora" else 0.8) + n_val / 16 * step / 3
        return epochs * per_epoch

"""``auto``: start from the cheap floor, try what is likely to beat it within the budget, keep the best.

1. The linear probe on cached features: seconds, and the floor nothing may fall below.
2. Candidates chosen from the data (examples per class, modality), the backbone's size and the
   device, in order of how likely they are to beat the probe (the order follows
   ``benchmarks/strategies.py``: on two CPU cores the probe beat every fine-tuning recipe on
   60 images per class, and pair training beat it on few-shot text). Each modality proposes its
   own (:meth:`headstart.modalities.base.Modality.auto_candidates`); the built-in ones:
   - text, up to 64 examples per class: ``contrastive`` (SetFit-style pairs); ``lora`` too on a GPU;
   - text, more: ``lora`` then ``partial``;
   - images: ``partial`` (top 2 groups); ``lora`` too from 100 images per class or on a GPU,
     ``full`` on a GPU.
3. With a validation split (given, or 15% held out when every class has at least 10
   examples) each candidate trains on the rest *without* early stopping (a fixed recipe), so
   the validation split only judges. A candidate wins when it is at least as accurate and has
   a lower log loss than the best so far (it dominates), so the probe wins ties and noise. The
   winner is refitted on every label: the probe and fine-tuning winners whole (fine-tuning when
   the budget allows), a ``contrastive`` winner's head on its validated encoder.
4. With fewer than 10 examples of some class there is nothing to judge a candidate by, and the
   probe is kept (every candidate is listed as skipped, with why): measured on 8 e-mails per
   class, pair training gained 4.5 points on one draw and lost 3 on another.
5. Costs are estimated from a timed training step and re-calibrated after each candidate; a
   candidate that does not fit in what is left of ``budget`` is skipped, and training stops at
   the budget's end (keeping the weights so far). Every decision, with its numbers, is recorded
   in the bundle and printed.
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
from headstart.modalities import get_modality
from headstart.strategies.base import (
    STRATEGIES,
    FitContext,
    FittedModel,
    Strategy,
    register_strategy,
)
from headstart.strategies.contrastive import Contrastive
from headstart.strategies.finetune import MIN_PER_CLASS_TO_CARVE, carve_validation
from headstart.strategies.settings import CLASS_WEIGHT, Setting

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
    """(strategy, parameters, reason) in the order they are tried: the modality's
    :meth:`~headstart.modalities.base.Modality.auto_candidates`, checked against the registry."""
    picks = get_modality(modality).auto_candidates(per_class, device.type == "cuda")
    unknown = [name for name, _, _ in picks if name not in STRATEGIES or name == "auto"]
    if unknown:
        raise ConfigError(f"the {modality} modality proposes {unknown[0]!r} as an auto candidate, which is not a "
                          f"strategy auto can try (known: {', '.join(n for n in STRATEGIES if n != 'auto')}); "
                          "fix its auto_candidates.")
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
        class_weight: ``None`` or ``"balanced"``; forwarded to the probe and every candidate
            (every strategy auto may run takes it), so they are judged on the same objective.
            Other fine-tuning settings (``epochs``, ``loss``...) are not forwarded: each
            candidate runs its own fixed recipe, and giving them is an error.
    """

    name = "auto"
    description = "Linear probe first (the floor), then the strategies likely to beat it within --budget."
    settings = (
        Setting("budget", str, "10m", "wall-clock budget for the whole fit (90s, 10m, 1h30m, or seconds)",
                nullable=True, check=parse_budget, kind="a duration like 90s, 10m or 1h, or seconds > 0"),
        Setting("val_fraction", float, 0.15, "held out for choosing when there is no validation split",
                range="[0, 1)"),
        CLASS_WEIGHT,
    )

    def __init__(self, budget: str | float | None = "10m", val_fraction: float = 0.15,
                 class_weight: str | None = None) -> None:
        super().__init__(budget=budget, val_fraction=val_fraction, class_weight=class_weight)
        self.params["budget_seconds"] = parse_budget(budget)

    def fit(self, backbone: Backbone, train: Dataset, val: Dataset | None, context: FitContext) -> FittedModel:
        started = time.monotonic()
        budget = self.params["budget_seconds"]
        deadline = started + budget if context.deadline is None else min(context.deadline, started + budget)
        everything = concat(train, val) if val is not None and len(val) else train
        train, val = carve_validation(train, val, self.params["val_fraction"], context.seed, MIN_PER_CLASS_TO_CARVE)
        # Only candidates need an untouched copy and a timed step; without validation none runs.
        pristine = copy.deepcopy(backbone) if val is not None else backbone
        per_class = len(everything) / max(1, len(set(everything.labels)))
        plan = candidates(backbone.spec.modality, per_class, context.device)
        step = _step_seconds(pristine, train, context.device) if val is not None else None
        calibration = 1.0  # measured / estimated seconds of the candidates so far

        class_weight = self.params["class_weight"]

        def run(name: str, params: dict[str, Any], data: Dataset) -> FittedModel:
            sub = FitContext(embed=context.embed, seed=context.seed, device=context.device,
                             callbacks=context.callbacks, embed_with=context.embed_with, deadline=deadline)
            if name in ("linear-probe", "contrastive"):
                return STRATEGIES[name](**params, class_weight=class_weight).fit(copy.deepcopy(pristine), data,
                                                                                 None, sub)
            # A fixed recipe (no early stopping): the validation split only judges.
            return STRATEGIES[name](**params, class_weight=class_weight, val_fraction=0.0).fit(
                copy.deepcopy(pristine), data, None, sub)

        def probe() -> tuple[FittedModel, dict[str, Any]]:
            t0 = time.monotonic()
            fitted = STRATEGIES["linear-probe"](class_weight=class_weight).fit(backbone, train, None, context)
            return fitted, {"strategy": "linear-probe", "reason": "the cheap floor: frozen cached features",
                            "seconds": round(time.monotonic() - t0, 2), "ran": True, "n_train": len(train)}

        if val is None:
            # Nothing to judge a candidate by: the floor, by rule. A validation split of one or two
            # examples per class cannot tell a better model from a lucky one; on spam-assassin at 8
            # e-mails per class, pair training beat the probe by 4.5 points on one seed and lost
            # 3 on another (benchmarks/strategies.py).
            best, floor = probe()
            best_name, refit = "linear-probe", {"refitted": False}
            rule = (f"under {MIN_PER_CLASS_TO_CARVE} examples in a class: no validation split to judge a "
                    "candidate by, so auto keeps the floor")
            decisions = [{**floor, "by_rule": rule}]
            decisions += [{"strategy": name, "params": params, "reason": reason, "ran": False,
                           "skipped": f"cannot be validated on this few examples; choose it with --strategy {name} "
                                      "if you accept the risk"} for name, params, reason in plan]
        else:
            best, floor = probe()
            best_scores = _val_scores(best, val, context.device)
            decisions = [{**floor, **best_scores}]
            best_name, best_params = "linear-probe", {}
            for name, params, reason in plan:
                left = deadline - time.monotonic()
                estimate = self._estimate(name, params, step, len(train), len(val)) * calibration
                decision: dict[str, Any] = {"strategy": name, "params": params, "reason": reason,
                                            "estimated_seconds": round(estimate, 1),
                                            "budget_left_seconds": round(left, 1)}
                if estimate > left:
                    decisions.append({**decision, "ran": False, "skipped": "estimated time exceeds the budget left"})
                    continue
                t0 = time.monotonic()
                fitted = run(name, params, train)
                seconds = time.monotonic() - t0
                calibration = seconds / max(estimate / calibration, 1e-6)
                scores = _val_scores(fitted, val, context.device)
                decision.update({"ran": True, "seconds": round(seconds, 2), "n_train": len(train), **scores})
                decisions.append(decision)
                # Validation sets of small data are small and noisy: a candidate replaces the current
                # best only when it is at least as accurate AND has a lower log loss (it dominates).
                if (scores["val_accuracy"] >= best_scores["val_accuracy"]
                        and scores["val_log_loss"] < best_scores["val_log_loss"]):
                    best, best_scores, best_name, best_params = fitted, scores, name, params
            best, refit = self._refit(best, best_name, best_params, decisions, everything, deadline, run, context)
        for d in decisions:
            d["chosen"] = d["strategy"] == best_name and d.get("ran", False)
        details = {"chosen": best_name, "decisions": decisions, "budget_seconds": budget,
                   "examples_per_class": round(per_class, 1), "device": str(context.device),
                   "backbone_params": backbone.spec.n_params, "step_seconds_per_16": round(step, 3) if step is not None else None,
                   "n_val": len(val) if val is not None else 0, **refit,
                   "chosen_details": best.details, "C": best.details.get("C")}
        return FittedModel(backbone=best.backbone, head=best.head, classes=best.classes, strategy=self.name,
                           params=dict(self.params), details=details, backbone_changed=best.backbone_changed,
                           oof=best.oof, oof_data=best.oof_data)

    @staticmethod
    def _refit(best: FittedModel, name: str, params: dict[str, Any], decisions: list[dict[str, Any]],
               everything: Dataset, deadline: float, run: Any, context: FitContext) -> tuple[FittedModel, dict[str, Any]]:
        """The winner again on every label (the validation split only served the choice).

        The probe and fine-tuning winners are refitted whole (fine-tuning only when the budget
        allows); a ``contrastive`` winner keeps its validated encoder and refits its head (the
        cheap part) on every label's embeddings.
        """
        if name == "contrastive":
            t0 = time.monotonic()
            head = Contrastive.fit_head(best.backbone, everything, context, best.params.get("class_weight"))
            refitted = FittedModel(backbone=best.backbone, head=head.head, classes=head.classes, strategy=name,
                                   params=best.params, backbone_changed=True,
                                   details={**best.details, "C": head.details["C"], "n_train_head": len(everything)})
            return refitted, {"refitted": "head", "refit_seconds": round(time.monotonic() - t0, 2),
                              "n_refit": len(everything)}
        seconds = next(d["seconds"] for d in decisions if d["strategy"] == name and d.get("ran"))
        n_train = next(d["n_train"] for d in decisions if d["strategy"] == name and d.get("ran"))
        estimate = seconds * len(everything) / max(1, n_train)
        left = deadline - time.monotonic()
        if name != "linear-probe" and estimate > left:
            return best, {"refitted": False, "refit_skipped": f"refitting on all {len(everything)} examples "
                                                               f"needs ~{estimate:.0f}s, {left:.0f}s left"}
        t0 = time.monotonic()
        refitted = run(name, params, everything)
        return refitted, {"refitted": True, "refit_seconds": round(time.monotonic() - t0, 2),
                          "n_refit": len(everything)}

    @staticmethod
    def _estimate(name: str, params: dict[str, Any], step: float, n_train: int, n_val: int) -> float:
        """Seconds a candidate should take: training steps plus embedding passes (forward ≈ 1/3 step)."""
        embed = (n_train + n_val) / 16 * step / 3
        if name == "contrastive":
            # In-batch pairs: ``steps`` batches of 16 texts at half the tokens, then the probe.
            return params.get("steps", 20) * step * 0.6 + embed
        batches = max(1, n_train / 16)
        per_epoch = batches * step * (0.7 if name == "lora" else 0.8)
        return params.get("epochs", 10) * per_epoch + embed

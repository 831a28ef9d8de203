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
3. The probe is left only for a candidate whose paired gain over it, on the same held-out items,
   is larger than those items can fake (:func:`headstart.evaluation.paired.significant_gain`:
   more than two standard errors and at least five items net), or whose gain is positive but
   too small to prove where the benchmark suite's paired evidence says it wins (the modality's
   :meth:`~headstart.modalities.base.Modality.auto_prior`: text, pair training at up to 16
   labels per class); a proven gain ranks first, then the larger one.
   - ``contrastive``, whose cost does not grow with the data, is judged by 3-fold stratified
     cross-validation on every label: on each fold the candidate and the probe train on the
     other folds and answer the held-out items, so every label is judged once (issue 15: a
     16-item split kept the probe 3 points below pair training).
   - Fine-tuning candidates train on all but a validation split (given, or 15% held out when
     every class has at least 10 examples) *without* early stopping (a fixed recipe), against
     the probe on the same part; with fewer examples they are skipped, with why.
4. The winner is fitted again on every label (a fine-tuning winner when the budget allows);
   without one, the probe on every label is the model.
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
from headstart.evaluation.paired import significant_gain
from headstart.features import embed_batches
from headstart.modalities import get_modality
from headstart.strategies.base import (
    STRATEGIES,
    FitContext,
    FittedModel,
    Strategy,
    register_strategy,
)
from headstart.strategies.finetune import MIN_PER_CLASS_TO_CARVE, carve_validation
from headstart.strategies.settings import CLASS_WEIGHT, Setting

logger = logging.getLogger(__name__)

# Candidates judged by cross-validation on every label rather than one held-out split: their cost
# does not grow with the data (``contrastive`` trains a fixed number of pair steps), so a few folds
# are affordable, and at a few labels per class one split cannot tell a better model from a lucky one.
CROSS_VALIDATED = ("contrastive",)
CV_FOLDS = 3


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


def _correct(proba: np.ndarray, model: FittedModel, data: Dataset) -> np.ndarray:
    """Per item of ``data``: 1.0 where ``model`` (whose probabilities these are) is right."""
    classes = [str(c) for c in model.classes]
    y = np.array([classes.index(str(v)) if str(v) in classes else -1 for v in data.labels])
    return (proba.argmax(1) == y).astype(np.float64)


def _item_weights(data: Dataset, class_weight: str | None) -> np.ndarray:
    """1 per item, or (``"balanced"``) weights whose mean correctness is balanced accuracy."""
    labels = [str(v) for v in data.labels]
    if class_weight is None:
        return np.ones(len(labels))
    counts = {c: labels.count(c) for c in set(labels)}
    return np.array([len(labels) / (len(counts) * counts[v]) for v in labels])


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
        per_class = len(everything) / max(1, len(set(everything.labels)))
        plan = candidates(backbone.spec.modality, per_class, context.device)
        modality = get_modality(backbone.spec.modality)
        folds = min(CV_FOLDS, min(everything.class_counts().values()))
        # Only candidates that can be judged need an untouched copy and a timed step.
        judged = any((name in CROSS_VALIDATED and folds >= 2) or val is not None for name, _, _ in plan)
        pristine = copy.deepcopy(backbone) if judged else backbone
        step = _step_seconds(pristine, everything, context.device) if judged else None
        calibration = 1.0  # measured / estimated seconds of the candidates so far
        class_weight = self.params["class_weight"]
        weights = _item_weights(everything, class_weight)

        def run(name: str, params: dict[str, Any], data: Dataset) -> FittedModel:
            sub = FitContext(embed=context.embed, seed=context.seed, device=context.device,
                             callbacks=context.callbacks, embed_with=context.embed_with, deadline=deadline)
            if name in ("linear-probe", "contrastive"):
                return STRATEGIES[name](**params, class_weight=class_weight).fit(copy.deepcopy(pristine), data,
                                                                                 None, sub)
            # A fixed recipe (no early stopping): the held-out items only judge.
            return STRATEGIES[name](**params, class_weight=class_weight, val_fraction=0.0).fit(
                copy.deepcopy(pristine), data, None, sub)

        def probe_on(data: Dataset) -> FittedModel:
            return STRATEGIES["linear-probe"](class_weight=class_weight).fit(backbone, data, None, context)

        t0 = time.monotonic()
        floor_model = probe_on(everything)
        decisions: list[dict[str, Any]] = [{"strategy": "linear-probe", "reason": "the cheap floor: frozen cached "
                                            "features", "seconds": round(time.monotonic() - t0, 2), "ran": True,
                                            "n_train": len(everything)}]
        split_probe: dict[str, Any] = {}  # the probe on the split's training part, scored on its held-out part
        winner: tuple[str, dict[str, Any], tuple[bool, float], FittedModel | None] | None = None
        for name, params, reason in plan:
            decision: dict[str, Any] = {"strategy": name, "params": params, "reason": reason}
            decisions.append(decision)
            cross = name in CROSS_VALIDATED and folds >= 2
            if not cross and val is None:
                decision.update(ran=False, skipped=(
                    f"under {MIN_PER_CLASS_TO_CARVE} examples in a class: no validation split to judge it by; "
                    f"choose it with --strategy {name} if you accept the risk"))
                continue
            n = len(everything)
            if cross:  # every fold, then (should it win) once more on every label
                judging = folds * self._estimate(name, params, step, n - n // folds, n // folds)
                estimate = (judging + self._estimate(name, params, step, n, 0)) * calibration
            else:
                judging = self._estimate(name, params, step, len(train), len(val))
                estimate = judging * calibration
            left = deadline - time.monotonic()
            decision.update(estimated_seconds=round(estimate, 1), budget_left_seconds=round(left, 1))
            if estimate > left:
                decision.update(ran=False, skipped="estimated time exceeds the budget left")
                continue
            t0 = time.monotonic()
            if cross:
                new, base = self._cross_validate(name, params, everything, folds, run, probe_on, context)
                new, base, fitted = new * weights, base * weights, None
                decision.update(judged_by=f"{folds}-fold stratified cross-validation on all {n} labels, paired "
                                          "with the probe on the same folds", cv_accuracy=round(float(new.mean()), 4),
                                probe_cv_accuracy=round(float(base.mean()), 4))
            else:
                if not split_probe:
                    probe = probe_on(train)
                    split_probe["correct"] = _correct(probe.head.predict_proba(context.embed(val)), probe, val)
                fitted = run(name, params, train)
                proba = fitted.head.predict_proba(embed_batches(fitted.backbone, val.items, val.locators,
                                                                device=context.device))
                new, base = _correct(proba, fitted, val), split_probe["correct"]
                w = _item_weights(val, class_weight)
                new, base = new * w, base * w
                decision.update(judged_by=f"a held-out split of {len(val)}, paired with the probe on the rest",
                                n_train=len(train), val_accuracy=round(float(new.mean()), 4),
                                probe_val_accuracy=round(float(base.mean()), 4))
            seconds = time.monotonic() - t0
            calibration = seconds / max(judging, 1e-6)
            test = significant_gain(new, base)
            decision.update(ran=True, seconds=round(seconds, 2), gain=round(test["gain"], 4),
                            standard_error=round(test["se"] or 0.0, 4), needed=round(test["needed"] or 0.0, 4),
                            significant=test["significant"])
            # The probe is left only on a gain larger than these few held-out items can fake, or on a
            # positive one where the benchmark suite's paired evidence says the candidate wins here.
            prior = (None if test["significant"] or test["gain"] <= 0
                     else modality.auto_prior(name, per_class, everything.items))
            if prior:
                decision["prior"] = prior
            if (test["significant"] or prior) and (winner is None or (test["significant"], test["gain"]) > winner[2]):
                winner = (name, params, (test["significant"], test["gain"]), fitted)
        best, best_name = floor_model, "linear-probe"
        refit: dict[str, Any] = {"refitted": False}
        if winner is not None:
            best, best_name, refit = self._refit(winner, decisions, everything, deadline, run)
        for d in decisions:
            d["chosen"] = d["strategy"] == best_name and d.get("ran", False)
        details = {"chosen": best_name, "decisions": decisions, "budget_seconds": budget,
                   "examples_per_class": round(per_class, 1), "device": str(context.device),
                   "backbone_params": backbone.spec.n_params, "step_seconds_per_16": round(step, 3) if step is not None else None,
                   "n_val": len(val) if val is not None else 0, "cv_folds": folds if folds >= 2 else None, **refit,
                   "chosen_details": best.details, "C": best.details.get("C")}
        return FittedModel(backbone=best.backbone, head=best.head, classes=best.classes, strategy=self.name,
                           params=dict(self.params), details=details, backbone_changed=best.backbone_changed,
                           oof=best.oof, oof_data=best.oof_data)

    @staticmethod
    def _cross_validate(name: str, params: dict[str, Any], data: Dataset, folds: int, run: Any, probe_on: Any,
                        context: FitContext) -> tuple[np.ndarray, np.ndarray]:
        """Per item, held out: is the candidate right, is the probe right (both fitted on the same other folds)."""
        from sklearn.model_selection import StratifiedKFold

        labels = [str(v) for v in data.labels]
        new, base = np.zeros(len(data)), np.zeros(len(data))
        for fit_idx, held_idx in StratifiedKFold(folds, shuffle=True, random_state=context.seed).split(labels, labels):
            part, held = data.subset(fit_idx), data.subset(held_idx)
            probe = probe_on(part)
            base[held_idx] = _correct(probe.head.predict_proba(context.embed(held)), probe, held)
            fitted = run(name, params, part)
            proba = fitted.head.predict_proba(embed_batches(fitted.backbone, held.items, held.locators,
                                                            device=context.device))
            new[held_idx] = _correct(proba, fitted, held)
        return new, base

    @staticmethod
    def _refit(winner: tuple[str, dict[str, Any], tuple[bool, float], FittedModel | None], decisions: list[dict[str, Any]],
               everything: Dataset, deadline: float, run: Any) -> tuple[FittedModel, str, dict[str, Any]]:
        """The winner again on every label (the held-out items only served the choice).

        A cross-validated winner has no model yet: it is fitted on every label (its time was
        budgeted with the folds). A winner of the held-out split is refitted whole when the budget
        allows, and kept as trained otherwise.
        """
        name, params, _, fitted = winner
        decision = next(d for d in decisions if d["strategy"] == name and d.get("ran"))
        if fitted is not None:
            estimate = decision["seconds"] * len(everything) / max(1, decision["n_train"])
            left = deadline - time.monotonic()
            if estimate > left:
                return fitted, name, {"refitted": False, "refit_skipped": f"refitting on all {len(everything)} "
                                                                          f"examples needs ~{estimate:.0f}s, "
                                                                          f"{left:.0f}s left"}
        t0 = time.monotonic()
        refitted = run(name, params, everything)
        return refitted, name, {"refitted": True, "refit_seconds": round(time.monotonic() - t0, 2),
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

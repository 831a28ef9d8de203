"""What every fine-tuning strategy shares.

The recipe (LP-FT, Kumar et al. 2022): fit the linear probe on cached features first and
start fine-tuning from that head, so training begins at the probe's accuracy instead of
wrecking pretrained features with gradients from a random head. Subclasses only say which
parameters train in which phase, at which learning rate (:meth:`FineTuneStrategy.phases`).

With a validation split, the fine-tuned model replaces the probe only when it beats the
probe's start on the validation items by more than that split can fake
(:func:`headstart.evaluation.paired.significant_gain`); otherwise the result is the probe,
refitted on every label, on the unchanged backbone.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from headstart.backbones.base import Backbone, LayerGroup
from headstart.data.dataset import Dataset, concat
from headstart.data.splits import assign_splits
from headstart.errors import ConfigError
from headstart.evaluation.paired import SIGNIFICANCE_SE, significant_gain
from headstart.features import embed_batches
from headstart.modalities import get_modality
from headstart.strategies.base import FitContext, FittedModel, Strategy
from headstart.strategies.linear_probe import LinearProbe
from headstart.strategies.settings import CLASS_WEIGHT, Setting
from headstart.training.loop import ClassifierModel, Examples, TrainConfig, fit_fingerprint
from headstart.training.loop import train as run_training

logger = logging.getLogger(__name__)


@dataclass
class Phase:
    """One stretch of training: which layer groups train, at which learning rates."""

    name: str
    lrs: dict[str, float]  # group name ("head" or a layer group's name) -> learning rate
    epochs: int
    early_stopping: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def named_groups(backbone: Backbone) -> list[tuple[LayerGroup, list[tuple[str, nn.Parameter]]]]:
    """Each layer group with its (name, parameter) pairs, input → output."""
    params = dict(backbone.named_parameters())
    return [(g, [(f"backbone.{n}", params[n]) for n in g.param_names if n in params]) for g in backbone.layer_groups()]


def decayed_lrs(groups: list[LayerGroup], top_lr: float, decay: float, top_k: int | None = None) -> dict[str, float]:
    """Layer-wise learning-rate decay from the head down: the group just below the head gets
    ``top_lr * decay``, the one below ``top_lr * decay**2``... Only the top ``top_k`` groups
    train when given."""
    chosen = groups if top_k is None else groups[len(groups) - top_k:]
    return {g.name: top_lr * decay ** (len(chosen) - i) for i, g in enumerate(chosen)}


MIN_PER_CLASS_TO_CARVE = 10


def carve_validation(train: Dataset, val: Dataset | None, fraction: float, seed: int,
                     min_per_class: int = 0) -> tuple[Dataset, Dataset | None]:
    """Use the given validation split, or hold out a stratified ``fraction`` of training data.

    Returns no validation split when ``fraction`` is 0 or when the smallest class has fewer than ``min_per_class``
    examples: a validation set of one or two items per class decides nothing and costs a
    sizeable share of the training data.
    """
    if val is not None and len(val):
        return train, val
    if fraction <= 0:
        return train, None
    if min(train.class_counts().values()) < min_per_class:
        logger.info("no validation split and under %d examples in a class: training on all of them, "
                    "without early stopping", min_per_class)
        return train, None
    carved = Dataset(items=train.items, labels=train.labels, modality=train.modality, splits=None,
                     slices=train.slices, locators=train.locators, source=train.source, _hashes=train._hashes)
    carved = assign_splits(carved, val_fraction=fraction, test_fraction=0.0, seed=seed)
    logger.info("no validation split: held out %d of %d training items for early stopping",
                carved.split_counts()["val"], len(train))
    return carved.split("train"), carved.split("val")


class FineTuneStrategy(Strategy):
    """Base for strategies that train backbone weights. Subclasses implement :meth:`phases`.

    Args:
        epochs: maximum epochs (early stopping usually ends sooner).
        lr: learning rate of the head; backbone groups get less (see ``layer_decay``).
            ``None``: 5e-4 for images, 1e-4 for text.
        layer_decay: each layer group below the head trains at this fraction of the one above.
        batch_size: examples per step (times ``grad_accum`` per optimizer step).
        grad_accum: micro-batches per optimizer step.
        weight_decay: AdamW weight decay (not on biases and norms).
        schedule: ``cosine`` (warmup then cosine), ``one-cycle`` or ``constant``.
        warmup: fraction of steps spent warming up.
        patience: epochs without improvement before stopping.
        loss: ``cross-entropy`` or ``focal``.
        label_smoothing: label smoothing of the loss.
        class_weight: ``None`` or ``"balanced"``.
        augment: training-time augmentation; ``None``: on for images, off for text.
        val_fraction: share of training data held out for early stopping when there is no
            validation split (0: none held out, every epoch runs).
        freeze_bn: keep BatchNorm layers in eval mode (pretrained running statistics; their
            scale and shift still train in trainable groups).
        mixed_precision: ``auto`` (bf16/fp16 on GPUs), ``no``, ``fp16``, ``bf16``.
    """

    settings = (
        Setting("epochs", int, 10, "maximum epochs (early stopping usually ends sooner)", range="[1, inf)"),
        Setting("lr", float, None, "learning rate of the head (backbone groups get less); None: 5e-4 for "
                "images, 1e-4 for text", range="(0, inf)", nullable=True),
        Setting("layer_decay", float, 0.75, "each layer group below the head trains at this fraction of the "
                "one above", range="(0, 1]"),
        Setting("batch_size", int, 16, "examples per step", range="[1, inf)"),
        Setting("grad_accum", int, 1, "micro-batches per optimizer step", range="[1, inf)"),
        Setting("weight_decay", float, 0.01, "AdamW weight decay (not on biases and norms)", range="[0, inf)"),
        Setting("schedule", str, "cosine", "learning-rate schedule", choices=("cosine", "one-cycle", "constant")),
        Setting("warmup", float, 0.1, "fraction of steps spent warming up", range="[0, 1)"),
        Setting("patience", int, 3, "epochs without improvement before stopping", range="[1, inf)"),
        Setting("loss", str, "cross-entropy", "training loss", choices=("cross-entropy", "focal")),
        Setting("label_smoothing", float, 0.0, "label smoothing of the loss", range="[0, 1)"),
        CLASS_WEIGHT,
        Setting("augment", bool, None, "training-time augmentation; None: on for images, off for text",
                nullable=True),
        Setting("val_fraction", float, 0.15, "held out for early stopping when there is no validation split "
                "(0: none, every epoch runs)", range="[0, 1)"),
        Setting("freeze_bn", bool, True, "keep BatchNorm layers on their pretrained statistics"),
        Setting("mixed_precision", str, "auto", "bf16/fp16 on GPUs with auto",
                choices=("auto", "no", "fp16", "bf16")),
    )

    def __init__(
        self,
        epochs: int = 10,
        lr: float | None = None,
        layer_decay: float = 0.75,
        batch_size: int = 16,
        grad_accum: int = 1,
        weight_decay: float = 0.01,
        schedule: str = "cosine",
        warmup: float = 0.1,
        patience: int = 3,
        loss: str = "cross-entropy",
        label_smoothing: float = 0.0,
        class_weight: str | None = None,
        augment: bool | None = None,
        val_fraction: float = 0.15,
        freeze_bn: bool = True,
        mixed_precision: str = "auto",
        **extra: Any,
    ) -> None:
        super().__init__(epochs=epochs, lr=lr, layer_decay=layer_decay, batch_size=batch_size, grad_accum=grad_accum,
                         weight_decay=weight_decay, schedule=schedule, warmup=warmup, patience=patience, loss=loss,
                         label_smoothing=label_smoothing, class_weight=class_weight, augment=augment,
                         val_fraction=val_fraction, freeze_bn=freeze_bn, mixed_precision=mixed_precision, **extra)
        self.train_config(epochs, None)  # validate everything now, all problems at once

    def train_config(self, epochs: int, modality: str | None, early_stopping: bool = True) -> TrainConfig:
        """The training loop's settings; ``augment=None`` follows the modality's ``augment_by_default``
        (no modality: off)."""
        p = self.params
        augment = p["augment"]
        if augment is None:
            augment = get_modality(modality).augment_by_default if modality is not None else False
        return TrainConfig(
            epochs=epochs, batch_size=p["batch_size"], grad_accum=p["grad_accum"], weight_decay=p["weight_decay"],
            schedule=p["schedule"], warmup=p["warmup"], patience=p["patience"] if early_stopping else epochs,
            loss=p["loss"], label_smoothing=p["label_smoothing"], class_weight=p["class_weight"],
            augment=augment, mixed_precision=p["mixed_precision"],
        )

    def lr(self, modality: str) -> float:
        """The head's learning rate: the ``lr`` setting, or the modality's ``finetune_lr``."""
        return self.params["lr"] or get_modality(modality).finetune_lr

    def phases(self, backbone: Backbone) -> list[Phase]:
        raise NotImplementedError

    def prepare(self, backbone: Backbone) -> None:
        """Change the backbone before training (LoRA injects adapters here)."""

    def select_trainable(self, model: ClassifierModel, groups: list, phase: Phase) -> list:
        """Freeze all but what ``phase`` trains; returns (name, named params, lr) optimizer groups."""
        return _apply_freeze(model, groups, phase.lrs)

    def finish(self, model: ClassifierModel) -> dict[str, Any]:
        """Tidy the trained model (LoRA merges here); returns details to record."""
        return {}

    def fit(self, backbone: Backbone, train: Dataset, val: Dataset | None, context: FitContext) -> FittedModel:
        train, val = carve_validation(train, val, self.params["val_fraction"], context.seed, MIN_PER_CLASS_TO_CARVE)
        pristine = copy.deepcopy(backbone) if val is not None else None
        probe = LinearProbe(class_weight=self.params["class_weight"]).fit(backbone, train, None, context)
        classes = probe.classes
        # The start, judged against the result at the end: training moves probe.head in place.
        start_head = copy.deepcopy(probe.head) if val is not None else None
        self.prepare(backbone)
        model = ClassifierModel(backbone, probe.head)
        train_ex = _examples(train, classes)
        val_ex = _examples(val, classes) if val is not None else None
        groups = named_groups(backbone)
        history, resume = [], context.resume
        resume_index = _checkpoint_phase(context) if resume else None
        for index, phase in enumerate(self.phases(backbone)):
            if resume_index is not None and index < resume_index:
                continue  # finished before the interruption; its weights are in the checkpoint
            if history and context.deadline is not None and time.monotonic() > context.deadline:
                logger.info("time budget: skipping phase %s and later ones", phase.name)
                history.append({"phase": phase.name, "skipped": "time budget reached"})
                break
            lr_groups = self.select_trainable(model, groups, phase)
            on_train_mode = _batchnorm_eval if self.params["freeze_bn"] else None
            config = self.train_config(phase.epochs, backbone.spec.modality, phase.early_stopping and val is not None)
            fingerprint = fit_fingerprint(config, {"strategy": self.name, "params": self.params, "phase": index,
                                                   "data": train.fingerprint(),
                                                   "val": val.fingerprint() if val is not None else None})
            result = run_training(
                model, lr_groups, train_ex, val_ex, config, seed=context.seed + index, device=context.device,
                n_classes=len(classes), run_dir=context.run_dir,
                resume=resume and resume_index == index, phase={"phase": index, "phase_name": phase.name},
                fingerprint=fingerprint, callbacks=context.callbacks, on_train_mode=on_train_mode,
                deadline=context.deadline,
            )
            history.append({"phase": phase.name, "lrs": phase.lrs, **asdict(result)})
        for p in model.parameters():
            p.requires_grad_(False)
        finished = self.finish(model)
        judged = None
        if pristine is not None and val is not None and any("best_epoch" in h for h in history):
            # The final model against its start, not the phases' best epochs: after a resume the
            # phases run before the interruption are not in ``history``, and an epoch that beat
            # the start on a handful of items is what selection alone produces.
            judged = self._judge(model, start_head, pristine, val_ex, val, context)
            if not judged["left_probe"]:
                return self._keep_probe(pristine, train, val, history, context, judged)
        details = {"lp_init": {"C": probe.details["C"]}, "phases": history,
                   "n_train": len(train), "n_val": len(val) if val is not None else 0,
                   "early_stopping": val is not None, **finished}
        if judged is not None:
            details["leave_probe"] = judged
        return FittedModel(backbone=model.backbone, head=model.head, classes=classes, strategy=self.name,
                           params=dict(self.params), details=details, backbone_changed=True)

    def _judge(self, model: ClassifierModel, start_head: nn.Module, pristine: Backbone, val_ex: Examples,
               val: Dataset, context: FitContext) -> dict[str, Any]:
        """Whether the fine-tuned model leaves the probe: the paired per-item test of its validation
        accuracy against the linear-probe start's (that head on the pristine backbone's features).

        When no epoch beat the start, restore-best hands back the start itself and the gain is 0.
        """
        y = val_ex.targets.numpy()
        probe_pred = start_head.predict_proba(_pristine_features(context, pristine, val)).argmax(1)
        feats = embed_batches(model.backbone, val.items, val.locators, device=context.device)
        ft_pred = model.head.predict_proba(feats).argmax(1)
        test = significant_gain(ft_pred == y, probe_pred == y)
        decided_by = "significant-gain" if test["significant"] else "insignificant-gain"
        return {"decided_by": decided_by, "left_probe": decided_by == "significant-gain",
                "rule": f"fine-tuning replaces the linear probe only when its validation accuracy gain over the "
                        f"probe start is positive and above {SIGNIFICANCE_SE:g} standard errors of the paired "
                        "per-item difference",
                "n_val": test["n"], "val_accuracy_finetuned": test["accuracy"],
                "val_accuracy_probe": test["base_accuracy"], "gain": test["gain"], "se": test["se"],
                "needed_gain": test["needed"]}

    def _keep_probe(self, pristine: Backbone, train: Dataset, val: Dataset, history: list[dict[str, Any]],
                    context: FitContext, judged: dict[str, Any] | None = None) -> FittedModel:
        """Fine-tuning did not beat the linear-probe start on validation by more than the split can
        fake (``judged``, from :meth:`_judge`): the result is the probe itself, refitted on every
        label (the validation split served only to judge), on the unchanged pretrained backbone."""
        if judged is not None:
            gain, needed = judged["gain"], judged["needed_gain"]
            why = (f"fine-tuning's validation gain over the linear-probe start ({gain:+.3f} on {judged['n_val']} "
                   f"items) is not above {SIGNIFICANCE_SE:g} standard errors "
                   f"({'undefined' if needed is None else f'{needed:.3f}'})")
        else:
            why = "fine-tuning did not beat the linear-probe start on validation"
        logger.info("%s: %s; keeping the probe, refitted on all labels", self.name, why)
        probe_context = FitContext(embed=lambda ds: _pristine_features(context, pristine, ds), seed=context.seed,
                                   device=context.device)
        probe = LinearProbe(class_weight=self.params["class_weight"]).fit(pristine, concat(train, val), None,
                                                                          probe_context)
        details = {"kept_probe": f"{why}; the probe, refitted on train + validation, is the result "
                                 "(backbone unchanged)",
                   "lp_init": {"C": probe.details["C"]}, "C": probe.details["C"], "phases": history,
                   "n_train": len(train), "n_val": len(val), "early_stopping": True}
        if judged is not None:
            details["leave_probe"] = judged
        return FittedModel(backbone=pristine, head=probe.head, classes=probe.classes, strategy=self.name,
                           params=dict(self.params), details=details, backbone_changed=False,
                           oof=probe.oof, oof_data=probe.oof_data)


def _pristine_features(context: FitContext, pristine: Backbone, data: Dataset) -> np.ndarray:
    """Features of the untouched backbone. ``context.embed`` may close over the backbone that
    fine-tuning changed in place, so without ``embed_with`` they are computed afresh."""
    if context.embed_with is not None:
        return context.embed_with(pristine, data)
    return embed_batches(pristine, data.items, data.locators, device=context.device)


def _examples(data: Dataset, classes: list[Any]) -> Examples:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in data.labels if v not in index})
    if unknown:
        raise ConfigError(f"validation labels {', '.join(unknown)} do not occur in the training data.")
    return Examples(items=list(data.items), locators=list(data.locators),
                    targets=torch.tensor([index[v] for v in data.labels], dtype=torch.long))


def _apply_freeze(model: ClassifierModel, groups: list[tuple[LayerGroup, list]], lrs: dict[str, float]):
    """Freeze everything, then unfreeze the head and the named groups; returns optimizer groups."""
    for p in model.parameters():
        p.requires_grad_(False)
    out = []
    for group, named in groups:
        if group.name in lrs:
            for _, p in named:
                p.requires_grad_(True)
            out.append((group.name, named, lrs[group.name]))
    head = [(f"head.{n}", p) for n, p in model.head.named_parameters()]
    for _, p in head:
        p.requires_grad_(True)
    out.append(("head", head, lrs["head"]))
    return out


def _batchnorm_eval(model: ClassifierModel) -> None:
    """Keep every BatchNorm layer on its pretrained running statistics (eval mode).

    With a few hundred examples and batches of 16, batch statistics are noisy and shift the
    features the head was fitted on; the affine parameters of trainable groups still learn.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _checkpoint_phase(context: FitContext) -> int:
    from headstart.training.checkpoint import has_checkpoint, load_checkpoint

    if context.run_dir is None or not has_checkpoint(context.run_dir):
        raise ConfigError(f"nothing to resume: {context.run_dir} has no checkpoint.")
    return int(load_checkpoint(context.run_dir)["state"]["phase"].get("phase", 0))

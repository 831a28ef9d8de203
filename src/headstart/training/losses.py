"""Losses for small, often imbalanced, labeled sets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from headstart.errors import ConfigError

LOSSES = ("cross-entropy", "focal")


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): down-weights easy examples by ``(1 - p_t) ** gamma``.

    Args:
        gamma: focusing strength (0 is plain cross-entropy).
        weight: per-class weights (``alpha``), or ``None``.
        label_smoothing: as in ``nn.CrossEntropyLoss``.
    """

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight if weight is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, target, reduction="none", label_smoothing=self.label_smoothing)
        p_t = torch.exp(-F.cross_entropy(logits, target, reduction="none"))
        loss = (1 - p_t) ** self.gamma * ce
        if self.weight is not None:
            w = self.weight[target]
            return (loss * w).sum() / w.sum()
        return loss.mean()


def class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``n / (k * count)`` per class, as scikit-learn's ``class_weight="balanced"``."""
    counts = torch.bincount(labels, minlength=n_classes).float().clamp(min=1)
    return len(labels) / (n_classes * counts)


def make_loss(
    kind: str = "cross-entropy",
    *,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float = 2.0,
) -> nn.Module:
    """The training loss by name, with optional class weights and label smoothing."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing={label_smoothing}; it must be in [0, 1).")
    if kind == "cross-entropy":
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
    if kind == "focal":
        if focal_gamma < 0:
            raise ConfigError(f"focal_gamma={focal_gamma}; it must be >= 0.")
        return FocalLoss(gamma=focal_gamma, weight=weight, label_smoothing=label_smoothing)
    raise ConfigError(f"loss={kind!r}; use one of {', '.join(LOSSES)}.")

"""Optimizer parameter groups (per-layer learning rates, decay / no-decay) and LR schedules."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from headstart.errors import ConfigError

SCHEDULES = ("cosine", "one-cycle", "constant")


def _no_decay(name: str, param: nn.Parameter) -> bool:
    # Biases and normalisation scales are not regularised (standard AdamW practice).
    lowered = name.lower()
    return param.ndim <= 1 or lowered.endswith(".bias") or "norm" in lowered or ".bn" in lowered


def param_groups(
    groups: Iterable[tuple[str, list[tuple[str, nn.Parameter]], float]],
    weight_decay: float,
) -> list[dict]:
    """AdamW groups: each (name, named params, lr) is split into a decayed and a no-decay group.

    Frozen parameters (``requires_grad=False``) are left out.
    """
    out = []
    for name, named, lr in groups:
        decay = [p for n, p in named if p.requires_grad and not _no_decay(n, p)]
        plain = [p for n, p in named if p.requires_grad and _no_decay(n, p)]
        if decay:
            out.append({"params": decay, "lr": lr, "weight_decay": weight_decay, "name": f"{name}/decay"})
        if plain:
            out.append({"params": plain, "lr": lr, "weight_decay": 0.0, "name": f"{name}/no-decay"})
    if not out:
        raise ConfigError("nothing to train: every parameter is frozen.")
    return out


def make_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, total_steps: int, warmup_fraction: float = 0.1
) -> torch.optim.lr_scheduler.LRScheduler:
    """``cosine`` (linear warmup, cosine decay to 0), ``one-cycle`` or ``constant`` (after warmup)."""
    if kind not in SCHEDULES:
        raise ConfigError(f"schedule={kind!r}; use one of {', '.join(SCHEDULES)}.")
    if not 0.0 <= warmup_fraction < 1.0:
        raise ConfigError(f"warmup={warmup_fraction}; it must be a fraction of training in [0, 1).")
    total_steps = max(1, total_steps)
    if kind == "one-cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total_steps,
            pct_start=max(warmup_fraction, 0.05), anneal_strategy="cos",
        )
    warmup = round(total_steps * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

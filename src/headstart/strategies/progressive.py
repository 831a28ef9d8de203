"""``progressive``: gradual unfreezing with discriminative learning rates (ULMFiT / fastai).

First the head trains with the backbone frozen; then one more layer group from the top is
unfrozen per stage, each group at ``1/2.6`` of the learning rate of the group above it
(Howard & Ruder, 2018); the last stage trains everything with early stopping.
"""

from __future__ import annotations

from typing import Any

from headstart.backbones.base import Backbone
from headstart.errors import ConfigError
from headstart.strategies.base import register_strategy
from headstart.strategies.finetune import FineTuneStrategy, Phase, decayed_lrs


@register_strategy
class Progressive(FineTuneStrategy):
    """Head first, then unfreeze group by group.

    Args:
        epochs_per_stage: epochs of each intermediate stage.
        max_groups: unfreeze at most this many groups from the top (``None``: all).
        discriminative: ratio between the learning rates of adjacent groups (ULMFiT: 2.6).
    """

    name = "progressive"
    description = "Head first with the backbone frozen, then unfreeze one layer group per stage (ULMFiT)."

    def __init__(self, epochs_per_stage: int = 1, max_groups: int | None = None, discriminative: float = 2.6,
                 **params: Any) -> None:
        if epochs_per_stage < 1:
            raise ConfigError(f"epochs_per_stage={epochs_per_stage}; it must be at least 1.")
        if discriminative < 1:
            raise ConfigError(f"discriminative={discriminative}; it must be >= 1.")
        super().__init__(epochs_per_stage=epochs_per_stage, max_groups=max_groups, discriminative=discriminative,
                         **params)

    def phases(self, backbone: Backbone) -> list[Phase]:
        groups = backbone.layer_groups()
        n = len(groups) if self.params["max_groups"] is None else min(self.params["max_groups"], len(groups))
        lr, decay = self.lr(backbone.spec.modality), 1.0 / self.params["discriminative"]
        stages = [Phase("head", {"head": lr}, self.params["epochs_per_stage"], early_stopping=False)]
        for k in range(1, n + 1):
            last = k == n
            stages.append(Phase(f"top-{k}", {"head": lr, **decayed_lrs(groups, lr, decay, k)},
                                self.params["epochs"] if last else self.params["epochs_per_stage"],
                                early_stopping=last))
        return stages

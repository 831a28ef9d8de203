"""``progressive``: gradual unfreezing with discriminative learning rates (ULMFiT / fastai).

First the head trains with the backbone frozen; then more layer groups from the top are
unfrozen at each stage, each group at ``1/2.6`` of the learning rate of the group above it
(Howard & Ruder, 2018); the last stage trains everything with early stopping.
"""

from __future__ import annotations

from typing import Any

from headstart.backbones.base import Backbone
from headstart.strategies.base import register_strategy
from headstart.strategies.finetune import FineTuneStrategy, Phase, decayed_lrs
from headstart.strategies.settings import Setting


@register_strategy
class Progressive(FineTuneStrategy):
    """Head first, then unfreeze from the top, stage by stage.

    Args:
        epochs_per_stage: epochs of each intermediate stage.
        stages: unfreezing stages after the head stage; the layer groups are split into this
            many blocks from the top (one group per stage when there are few groups).
        max_groups: unfreeze at most this many groups from the top (``None``: all).
        discriminative: ratio between the learning rates of adjacent groups (ULMFiT: 2.6).
    """

    name = "progressive"
    description = "Head first with the backbone frozen, then unfreeze layer groups from the top, stage by stage (ULMFiT)."
    settings = (
        Setting("epochs_per_stage", int, 1, "epochs of each intermediate stage", range="[1, inf)"),
        Setting("stages", int, 3, "unfreezing stages after the head stage", range="[1, inf)"),
        Setting("max_groups", int, None, "unfreeze at most this many groups from the top; None: all",
                range="[1, inf)", nullable=True),
        Setting("discriminative", float, 2.6, "ratio between the learning rates of adjacent groups",
                range="[1, inf)"),
        *FineTuneStrategy.settings,
    )

    def __init__(self, epochs_per_stage: int = 1, stages: int = 3, max_groups: int | None = None,
                 discriminative: float = 2.6, **params: Any) -> None:
        super().__init__(epochs_per_stage=epochs_per_stage, stages=stages, max_groups=max_groups,
                         discriminative=discriminative, **params)

    def phases(self, backbone: Backbone) -> list[Phase]:
        groups = backbone.layer_groups()
        n = len(groups) if self.params["max_groups"] is None else min(self.params["max_groups"], len(groups))
        n_stages = min(self.params["stages"], n)
        # Group counts unfrozen after each stage, e.g. 8 groups in 3 stages -> 3, 6, 8.
        counts = sorted({round(n * (i + 1) / n_stages) for i in range(n_stages)})
        lr, decay = self.lr(backbone.spec.modality), 1.0 / self.params["discriminative"]
        stages = [Phase("head", {"head": lr}, self.params["epochs_per_stage"], early_stopping=False)]
        for k in counts:
            last = k == counts[-1]
            stages.append(Phase(f"top-{k}", {"head": lr, **decayed_lrs(groups, lr, decay, k)},
                                self.params["epochs"] if last else self.params["epochs_per_stage"],
                                early_stopping=last))
        return stages

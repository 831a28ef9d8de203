"""``partial``: train the last *k* layer groups and the head; everything below stays frozen."""

from __future__ import annotations

from typing import Any

from headstart.backbones.base import Backbone
from headstart.strategies.base import register_strategy
from headstart.strategies.finetune import FineTuneStrategy, Phase, decayed_lrs
from headstart.strategies.settings import Setting


@register_strategy
class Partial(FineTuneStrategy):
    """Fine-tune the top ``unfreeze`` layer groups (with layer-wise decayed learning rates)."""

    name = "partial"
    description = "Last k layer groups + head train; lower layers (and their BatchNorm statistics) stay frozen."
    settings = (Setting("unfreeze", int, 2, "how many top layer groups train", range="[1, inf)"),
                *FineTuneStrategy.settings)

    def __init__(self, unfreeze: int = 2, **params: Any) -> None:
        super().__init__(unfreeze=unfreeze, **params)

    def phases(self, backbone: Backbone) -> list[Phase]:
        groups = backbone.layer_groups()
        k = min(self.params["unfreeze"], len(groups))
        lr = self.lr(backbone.spec.modality)
        return [Phase("partial", {"head": lr, **decayed_lrs(groups, lr, self.params["layer_decay"], k)},
                      self.params["epochs"])]

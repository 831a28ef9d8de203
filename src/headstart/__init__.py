"""headstart: transfer learning on small labeled datasets.

Example:
    >>> from headstart import TransferClassifier, load
    >>> clf = TransferClassifier(backbone="minilm", random_state=0).fit(texts, labels)  # doctest: +SKIP
    >>> clf.save("runs/spam")                                                         # doctest: +SKIP
    >>> load("runs/spam").predict(["win a free cruise"])                              # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

# ``headstart.audit`` is the function (the public API); its modules stay importable as
# ``from headstart.audit.base import ...``.
from headstart.audit import audit
from headstart.backbones import create_backbone, list_backbones
from headstart.classifier import TransferClassifier
from headstart.data import Dataset, load_data
from headstart.errors import (
    BackboneError,
    BundleError,
    CacheError,
    ConfigError,
    DataError,
    HeadstartError,
    NotFittedError,
)

__version__ = "0.1.0"

__all__ = [
    "BackboneError",
    "BundleError",
    "CacheError",
    "ConfigError",
    "DataError",
    "Dataset",
    "HeadstartError",
    "NotFittedError",
    "TransferClassifier",
    "__version__",
    "audit",
    "create_backbone",
    "list_backbones",
    "load",
    "load_data",
]


def load(path: str | Path) -> TransferClassifier:
    """Load a bundle folder written by ``fit --out`` or :meth:`TransferClassifier.save`.

    Every file's sha256 is checked against the manifest before anything is read, and only
    JSON and safetensors are read.
    """
    from headstart.bundle import load_bundle

    return load_bundle(path)

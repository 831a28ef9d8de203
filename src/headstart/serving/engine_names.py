"""The inference engines a bundle can run on, named once for the library, the CLI and the service.

Kept apart from :mod:`headstart.serving.engine` so that the CLI can offer the choice without
importing the engines (and what they import) at startup.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["ENGINES", "EngineName"]


class EngineName(str, Enum):
    """``auto`` is ``onnx`` when the bundle has been exported, else ``torch``; ``onnx-int8`` is the
    dynamically quantized model (``export --quantize int8``)."""

    auto = "auto"
    torch = "torch"
    onnx = "onnx"
    onnx_int8 = "onnx-int8"


ENGINES: tuple[str, ...] = tuple(e.value for e in EngineName)

"""A third modality written against ``headstart.modalities.base.Modality`` alone: fixed-length
numeric vectors (sensor readings, precomputed descriptors), with a tiny local MLP backbone.

Nothing under ``src/`` knows it. ``tests/test_toy_modality.py`` loads it the way a user's plugin
is loaded (``HEADSTART_MODALITIES=toy_modality``) and runs every entry point on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from headstart.errors import DataError, RequestError
from headstart.modalities import register_modality
from headstart.modalities.base import ExportInputs, Modality, Reject

DIM = 6
NAME = "vectors"
BACKBONE = "toy-mlp"


def as_vector(value: Any, where: str) -> np.ndarray:
    """A cell, list or array as a float32 vector of DIM finite numbers, or a DataError naming it."""
    if isinstance(value, str):
        try:
            value = [float(v) for v in value.replace(",", " ").split()]
        except ValueError as e:
            raise DataError(f"{where}: {value[:40]!r} is not numbers separated by spaces or commas.") from e
    try:
        arr = np.asarray(value, dtype=np.float32).ravel()
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: expected {DIM} numbers, got {type(value).__name__}.") from e
    if arr.shape != (DIM,) or not np.isfinite(arr).all():
        raise DataError(f"{where}: expected {DIM} finite numbers, got {arr.size}.")
    return arr


class VectorModality(Modality):
    name = NAME
    plural = "vectors"
    default_backbone = BACKBONE
    column_guesses = ("vector",)
    classic_name = "classic: logistic regression on the raw vector"
    classic_note = f"{DIM} values"

    def claims(self, items: Sequence[Any]) -> int:
        first = items[0]
        return 2 if isinstance(first, np.ndarray) and first.ndim == 1 else 0

    def from_memory(self, items: list[Any], source: str) -> list[Any]:
        return [as_vector(v, f"{source}[{i}]") for i, v in enumerate(items)]

    def from_column(self, values: list[Any], table: Path, column: str, reject: Reject) -> list[Any]:
        out: list[Any] = []
        bad: list[int] = []
        for i, v in enumerate(values):
            try:
                out.append(as_vector(v, f"{table} row {i + 1}"))
            except DataError:
                bad.append(i)
                out.append(None)
        if bad:
            reject(bad, "unreadable-files", f"column {column!r} is not {DIM} numbers",
                   f"{table}: rows {[i + 1 for i in bad[:5]]} of column {column!r} are not {DIM} numbers.")
        return out

    def register_backbones(self) -> None:
        from headstart.backbones.registry import BackboneInfo, register

        register(BackboneInfo(name=BACKBONE, factory=create_toy_mlp, modality=NAME, feature_dim=16,
                              n_params=DIM * 16 + 16 + 16 * 16 + 16, license="MIT", source="random init",
                              description="a 2-layer MLP on 6 numbers (tests)", for_tests=True))

    def describe(self, item: Any, locator: str) -> str:
        return "[" + ", ".join(f"{v:.2f}" for v in np.asarray(item)[:3]) + ", …]"

    def export_inputs(self, backbone: Any, items: list[Any], folder: Path) -> ExportInputs:
        return ExportInputs(batch={"values": backbone.preprocess(items)}, axes={"values": {0: "batch"}},
                            preprocessing={"kind": NAME, "dim": DIM, "dtype": "float32"})

    def pack(self, tensors: dict[str, Any]) -> Any:
        return tensors["values"]

    def preprocessor(self, description: dict[str, Any], folder: Path) -> Any:
        dim = int(description["dim"])
        return lambda items: {"values": np.stack([np.asarray(v, np.float32).reshape(dim) for v in items])}

    def decode(self, item: Any, index: int) -> Any:
        return as_vector(item, f"item {index}")

    def item_schema(self, limits: Any) -> dict[str, Any]:
        return {"type": "array", "minItems": DIM, "maxItems": DIM, "items": {"type": "number"},
                "description": f"{DIM} numbers."}

    def request_example(self) -> dict[str, Any]:
        return {"vectors": [[0.0] * DIM]}

    def read_json_item(self, value: Any, where: str, limits: Any) -> Any:
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise RequestError(422, "invalid_item", f"{where} must be an array of {DIM} numbers.")
        try:
            return as_vector(value, where)
        except DataError as e:
            raise RequestError(422, "invalid_item", str(e)) from e


register_modality(VectorModality())


def create_toy_mlp(seed: int = 0, width: int = 16) -> Any:
    """The backbone, built on demand: importing this plugin never imports torch (the ONNX engine
    process loads it too)."""
    import torch
    from torch import nn

    from headstart.backbones.base import Backbone, BackboneSpec, LayerGroup

    class ToyMLP(Backbone):
        def __init__(self) -> None:
            super().__init__()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.first = nn.Linear(DIM, width)
                self.second = nn.Linear(width, width)
            self.spec = BackboneSpec(name=BACKBONE, modality=NAME, feature_dim=width,
                                     preprocessing={"dim": DIM}, source="random init (tests)", license="MIT",
                                     n_params=sum(p.numel() for p in self.parameters()), offline=True,
                                     build={"name": BACKBONE, "kwargs": {"seed": seed, "width": width}})

        def preprocess(self, items: Sequence[Any], locators: Sequence[str] | None = None, *,
                       augment: bool = False) -> torch.Tensor:
            return torch.from_numpy(np.stack([as_vector(v, f"item {i}") for i, v in enumerate(items)]))

        def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
            return self.second(torch.tanh(self.first(batch)))

        def layer_groups(self) -> list[LayerGroup]:
            return [LayerGroup("first", ("first.weight", "first.bias")),
                    LayerGroup("second", ("second.weight", "second.bias"))]

    return ToyMLP()



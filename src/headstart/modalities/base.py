"""The one contract every modality follows: what core modules ask instead of comparing names.

A modality declares data (names, default backbone, preprocessing as data) and answers questions
about its items (read, check, describe, preview, fingerprint, batch for serving). It does not
train anything and never imports upward (no cli, workflow, evaluation, serving): baselines that
train stay in :mod:`headstart.evaluation`, which asks the modality for their inputs.

Every method has a default that suits a modality whose items are plain in-memory values; a new
modality overrides what differs. :mod:`headstart.modalities.text` and
:mod:`headstart.modalities.image` are the built-in examples; ``tests/toy_modality.py`` is a
third (fixed-length numeric vectors) written against this contract alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import torch

Reject = Callable[[list[int], str, str, str], None]
"""``reject(rows, check, detail, message)``: the table loader drops the rows (audit) or raises ``message``."""


@dataclass
class ExportInputs:
    """What ``headstart export`` needs from a modality to trace the graph and describe its inputs.

    Attributes:
        batch: example input tensors by name (the graph's inputs, in order).
        axes: per input, its dynamic axes (axis index -> label, e.g. ``{0: "batch"}``).
        limits: the largest value of each dynamic axis label other than ``batch``.
        preprocessing: how raw items become ``batch``, as data (``"kind"`` = the modality's name),
            replayed without torch by :meth:`Modality.preprocessor`.
        files: files written beside the graph that the preprocessing reads (e.g. ``tokenizer.json``).
    """

    batch: dict[str, torch.Tensor]
    axes: dict[str, dict[int, str]]
    preprocessing: dict[str, Any]
    limits: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


class Modality:
    """Base class of modalities (text, image, plugins). Subclass, set the class attributes, override
    what differs, and register an instance with :func:`headstart.modalities.register_modality`."""

    name: ClassVar[str] = ""
    plural: ClassVar[str] = ""
    """The items' plural (``texts``): the service's JSON field and messages."""
    default_backbone: ClassVar[str] = ""
    """The backbone ``fit`` uses when none is named (a registered name that works offline)."""
    column_guesses: ClassVar[tuple[str, ...]] = ()
    """Table columns that hold this modality's items when no column is named, in order of preference."""
    file_suffixes: ClassVar[frozenset[str]] = frozenset()
    """Suffixes of files that hold one item each (class folders, predict inputs); empty: none."""
    reads_files: ClassVar[bool] = False
    """Items are files read at training time (they can be missing or damaged: the audit decodes them)."""
    augment_by_default: ClassVar[bool] = False
    """Whether fine-tuning augments training items unless told otherwise."""
    finetune_lr: ClassVar[float] = 1e-4
    """The learning rate of fine-tuning strategies when none is given."""
    lora_lr: ClassVar[float] = 1e-3
    """The learning rate of the ``lora`` strategy when none is given (adapters start at zero and
    need a larger step than full fine-tuning: about 10x)."""
    scratch_lr: ClassVar[float] = 3e-4
    """The learning rate of the from-scratch baseline."""
    classic_recipe: ClassVar[str] = "dense"
    """The classic baseline: ``"tfidf"`` (TF-IDF of :meth:`classic_inputs` + logistic regression) or
    ``"dense"`` (the linear probe on the vectors :meth:`classic_inputs` returns)."""
    classic_name: ClassVar[str] = "classic: logistic regression on the raw values"
    classic_note: ClassVar[str] = "raw values"
    quantization: ClassVar[str] = "dynamic"
    """int8 export: ``"dynamic"`` (weights only) or ``"static"`` (activations calibrated on training items)."""
    multipart: ClassVar[bool] = False
    """The service also accepts ``multipart/form-data`` file uploads (one ``files`` part per item)."""
    upload_types: ClassVar[str] = "application/octet-stream"
    """The media types of multipart uploads, as the OpenAPI ``contentType`` lists them."""
    near_key_how: ClassVar[str] = "normalised"
    near_fingerprint_how: ClassVar[str] = "fingerprint"
    near_without_backbone: ClassVar[str] = ""
    """What the near-duplicate search finds with no backbone (``""``: nothing)."""

    # ------------------------------------------------------------------ reading
    @property
    def table_option(self) -> str:
        """How the command line names a table's column of these items, placeholder included, as messages
        show it: ``--col vectors=COLUMN`` (the generic option; the built-ins: ``--text-col NAME``)."""
        return f"--col {self.name}=COLUMN"

    def claims(self, items: Sequence[Any]) -> bool:
        """Whether in-memory items given without a modality are this modality's (a cheap look)."""
        return False

    def from_memory(self, items: list[Any], source: str) -> list[Any]:
        """In-memory items checked and normalised (a DataError names the bad positions)."""
        return items

    def from_column(self, values: list[Any], table: Path, column: str, reject: Reject) -> list[Any]:
        """A table column's cells as items; cells that are not items go to ``reject``."""
        return values

    def item_from_file(self, path: Path) -> Any:
        """The item a file in a class folder holds (default: the path, read when needed)."""
        return path

    def read_input(self, path: Path) -> tuple[list[Any], list[str]]:
        """Items and locators of a file or folder given to ``headstart predict`` (not a table)."""
        from headstart.data.images import collect_files

        if not self.file_suffixes:
            from headstart.errors import DataError

            raise DataError(f"{path}: a {self.name} model reads its items from a table (pass {self.table_option}).")
        files = collect_files([path], self.file_suffixes, self.name)
        return [self.item_from_file(f) for f in files], [str(f) for f in files]

    def from_lines(self, lines: list[tuple[int, str]], source: str) -> tuple[list[Any], list[str]]:
        """Items and locators of lines read from stdin (default: each line names a file)."""
        from headstart.data.images import collect_files

        files = collect_files([line for _, line in lines], self.file_suffixes, self.name)
        return [self.item_from_file(f) for f in files], [str(f) for f in files]

    # ------------------------------------------------------------------ showing
    def describe(self, item: Any, locator: str) -> str:
        """A short text for the item in tables and messages."""
        return locator

    def preview(self, item: Any, locator: str) -> dict[str, Any]:
        """The report's preview of an item: ``{"kind": "text", "text": ...}`` or
        ``{"kind": "image", "data_uri": "data:image/png;base64,..."}`` (never raises)."""
        return {"kind": "text", "text": self.describe(item, locator)}

    def sort_key(self, item: Any) -> float:
        """Items with close keys batch well together (texts: length); 0 keeps input order."""
        return 0.0

    # ------------------------------------------------------------------ model
    def backbone_options(self, max_length: int | None, windows: int | None = None) -> dict[str, Any]:
        """Keyword arguments for ``create_backbone`` from the estimator's settings (``windows`` is
        passed only when set)."""
        return {}

    def register_backbones(self) -> None:
        """Register this modality's own backbones with :func:`headstart.backbones.register`. Called once,
        the first time a backbone name is looked up, so that importing a plugin never imports torch
        (the ONNX engine loads plugins too). Built-in backbones register themselves."""

    def auto_candidates(self, per_class: float, gpu: bool) -> list[tuple[str, dict[str, Any], str]]:
        """``(strategy, settings, reason)`` the ``auto`` strategy tries after its linear-probe floor."""
        return [("partial", {"unfreeze": 2, "epochs": 4}, "the top layer groups adapt; the lower ones stay general")]

    def auto_prior(self, strategy: str, per_class: float, items: Sequence[Any]) -> str | None:
        """Why ``strategy`` is expected to beat the probe on these training ``items`` at ``per_class``
        labels per class (the benchmark suite's paired evidence), or ``None``. ``auto`` takes such a
        candidate when its cross-validated gain is positive but too small for those few labels to prove."""
        return None

    def classic_inputs(self, items: Sequence[Any], locators: Sequence[str]) -> Any:
        """The classic baseline's inputs: a list of strings (``tfidf``) or a 2-D array (``dense``)."""
        import numpy as np

        return np.stack([np.asarray(item, dtype=np.float32).ravel() for item in items])

    # ------------------------------------------------------------------ audit
    def inspect(self, item: Any, locator: str) -> dict[str, Any]:
        """What the audit learns by reading one item: ``{"error": None or why it cannot be read}``,
        plus a ``"fingerprint"`` unit vector for the no-backbone near-duplicate search, if any."""
        return {"error": None}

    def near_key(self, item: Any) -> str | None:
        """A key equal for items that are the same up to trivia (case, whitespace), or ``None``."""
        return None

    def same_content(self, a: Any, b: Any) -> bool:
        """Whether two items whose embeddings are close hold the same content (texts: shared shingles)."""
        return True

    # ------------------------------------------------------------------ export and serving
    def export_inputs(self, backbone: Any, items: list[Any], folder: Path) -> ExportInputs:
        """Example graph inputs from real items, via the backbone's own preprocessing, and their description."""
        raise NotImplementedError(f"the {self.name} modality does not describe an ONNX export")

    def pack(self, tensors: dict[str, Any]) -> Any:
        """Graph inputs by name -> what ``backbone.forward_features`` takes (default: the dict)."""
        return tensors

    def preprocessor(self, description: dict[str, Any], folder: Path) -> Callable[[list[Any]], dict[str, np.ndarray]]:
        """Replays an export's preprocessing description with numpy only: items -> graph inputs."""
        raise NotImplementedError(f"the {self.name} modality does not replay an ONNX export")

    def check_items(self, items: list[Any]) -> None:
        """Refuse items an engine cannot take, naming the first (a DataError): called before any batch."""

    def decode(self, item: Any, index: int) -> Any:
        """One item as the engine's preprocessing takes it (images: decoded); errors name ``index``."""
        return item

    def item_schema(self, limits: Any) -> dict[str, Any]:
        """JSON Schema of one item of a ``POST /predict`` JSON body."""
        return {"description": f"One {self.name} item."}

    def request_example(self) -> dict[str, Any]:
        """An example JSON body for ``POST /predict`` (error messages show it; the OpenAPI schema
        includes it when the service would accept it)."""
        return {self.plural: ["..."]}

    def read_json_item(self, value: Any, where: str, limits: Any) -> Any:
        """One item of a JSON request, checked (a :class:`headstart.errors.RequestError` says why not)."""
        return value

    def serve_batches(self, items: list[Any], field: str, limits: Any, most: int) -> Iterator[tuple[list[int], list[Any]]]:
        """``(indices, engine-ready items)`` a batch at a time for the service (images: decoded a few at
        a time, within the pixel budget)."""
        for start in range(0, len(items), most):
            idx = list(range(start, min(start + most, len(items))))
            yield idx, [self.decode(items[i], i) for i in idx]

    def __repr__(self) -> str:
        return f"<modality {self.name}>"


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
               float: "a number", type(None): "null"}


def json_type(value: Any) -> str:
    """How JSON calls a decoded value's type (for messages)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)

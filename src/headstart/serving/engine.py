"""Inference engines: one interface over a bundle's PyTorch model and its ONNX export.

``load_engine(bundle)`` returns an :class:`Engine` whose ``predict_proba(items)`` gives class
probabilities, columns in ``engine.classes`` order, whichever runtime runs underneath:

- ``torch``: the bundle loaded with :func:`headstart.load` (any bundle).
- ``onnx``: ``model.onnx`` written by ``headstart export`` on onnxruntime, with preprocessing
  replayed by the bundle's modality (:meth:`headstart.modalities.base.Modality.preprocessor`).
- ``onnx-int8``: the dynamically quantized ``model.int8.onnx`` (``export --quantize int8``).
- ``auto``: ``onnx`` when the bundle has been exported, else ``torch``.

Importing this module, and loading and running an ONNX engine, never imports torch, timm,
transformers or scikit-learn: a prediction process starts in a fraction of a second.

Example:
    >>> from headstart.serving.engine import load_engine
    >>> engine = load_engine("runs/spam")                       # doctest: +SKIP
    >>> engine.name, engine.classes                             # doctest: +SKIP
    ('onnx', ['ham', 'spam'])
    >>> engine.predict_proba(["win a free cruise"]).round(3)    # doctest: +SKIP
    array([[0.021, 0.979]])
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from headstart.bundle import read_manifest
from headstart.errors import BundleError, ConfigError, DataError
from headstart.hybrid import read_hybrid
from headstart.modalities import get_modality
from headstart.serving.engine_names import ENGINES

logger = logging.getLogger(__name__)

OUTPUT = "probabilities"
MAX_ROWS_PER_RUN = 64  # graph rows (texts' windows) per onnxruntime run when a batch has more than one item


class Engine:
    """A bundle ready to predict.

    Attributes:
        name: ``"torch"``, ``"onnx"`` or ``"onnx-int8"``.
        modality: the bundle's modality name (``"text"``, ``"image"`` or a plugin's).
        classes: the labels, in the order of ``predict_proba``'s columns (JSON-plain values).
        metadata: labels, backbone, strategy, test metrics, verdict, bundle path, engine, created.
        batch_size: items per forward pass.
    """

    name: str = ""

    def __init__(self, folder: Path, manifest: dict[str, Any], *, batch_size: int) -> None:
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r}; give a positive integer.")
        self.folder = folder
        self.batch_size = int(batch_size)
        self.modality = str(manifest["modality"])
        self._items = get_modality(self.modality)  # what the items are: checked, ordered, decoded by it
        self.classes = list(manifest["labels"])
        self.metadata = engine_metadata(folder, manifest, self.name)

    def predict_proba(self, items: Sequence[Any]) -> np.ndarray:
        """Class probabilities, shape ``(len(items), len(classes))``, rows in input order.

        Items are texts (``str``) for a text bundle; for an image bundle file paths, PIL
        images, arrays or encoded PNG/JPEG bytes; for a plugin modality what it reads. A bad
        item raises :class:`DataError` naming its index.
        """
        if isinstance(items, (str, bytes)):
            raise DataError("items must be a list; wrap a single item: [item].")
        items = list(items)
        kind = self._items
        kind.check_items(items)
        # Items with close sort keys batch together (texts by length: less padding, same results);
        # the sort is stable, so equal keys (images: all 0) keep their input order.
        order = sorted(range(len(items)), key=lambda i: kind.sort_key(items[i]))
        out = np.zeros((len(items), len(self.classes)), dtype=np.float64)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            out[idx] = self._predict_batch([kind.decode(items[i], i) for i in idx])
        return out

    def predict(self, items: Sequence[Any]) -> list[Any]:
        """The most probable label for each item."""
        proba = self.predict_proba(items)
        return [self.classes[i] for i in proba.argmax(axis=1)]

    def _predict_batch(self, batch: list[Any]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the runtime (nothing to do for either engine; here for servers' shutdown hooks)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bundle={str(self.folder)!r}, modality={self.modality!r}, classes={self.classes!r})"


class TorchEngine(Engine):
    """The bundle's PyTorch model (``headstart.load``)."""

    name = "torch"

    def __init__(self, folder: Path, manifest: dict[str, Any], *, batch_size: int, device: str = "auto",
                 cache: bool | str | Path = False, classifier: Any = None) -> None:
        super().__init__(folder, manifest, batch_size=batch_size)
        if classifier is None:
            from headstart.classifier import load_bundle

            classifier = load_bundle(folder)
        # Serving never writes to the embedding cache unless asked (`predict` passes its --cache-dir).
        classifier.set_params(batch_size=self.batch_size, device=device, cache=cache)
        self.classifier = classifier

    def _predict_batch(self, batch: list[Any]) -> np.ndarray:
        return self.classifier.predict_proba(batch)


class OnnxEngine(Engine):
    """``model.onnx`` (or ``model.int8.onnx``) on onnxruntime, preprocessing replayed from the manifest.

    ``threads`` sets onnxruntime's intra-op thread count (``None``: its default, one per core).
    """

    def __init__(self, folder: Path, manifest: dict[str, Any], *, batch_size: int, quantized: bool = False,
                 threads: int | None = None) -> None:
        self.name = "onnx-int8" if quantized else "onnx"
        super().__init__(folder, manifest, batch_size=batch_size)
        import onnxruntime as ort

        entry = onnx_entry(folder, manifest, quantized=quantized)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # onnxruntime's warnings are not the user's business
        if threads:
            options.intra_op_num_threads = int(threads)
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(folder / entry["file"]), options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.preprocess = _preprocessor(manifest["onnx"]["preprocessing"], folder)
        # The ONNX graph is the transfer model; a hybrid's classic part is replayed in NumPy.
        self.hybrid = read_hybrid(folder, manifest)

    def _predict_batch(self, batch: list[Any]) -> np.ndarray:
        feeds = self.preprocess(batch)
        rows = max((feeds[name].shape[0] for name in self.input_names if feeds[name].ndim), default=0)
        if rows > MAX_ROWS_PER_RUN and len(batch) > 1:
            # Items that expand into many graph rows (the windows of long texts): run them in halves
            # so one run's activations stay bounded, as the torch engine's chunked encoder does.
            half = len(batch) // 2
            return np.concatenate([self._predict_batch(batch[:half]), self._predict_batch(batch[half:])])
        proba = self.session.run([OUTPUT], {name: feeds[name] for name in self.input_names})[0].astype(np.float64)
        if self.hybrid is not None:
            proba = self.hybrid.blend(proba, get_modality(self.modality).classic_inputs(batch, [""] * len(batch)))
        return proba


def _preprocessor(description: dict[str, Any], folder: Path) -> Any:
    """The export's preprocessing replayed by the modality it names (``description["kind"]``)."""
    kind = description.get("kind")
    try:
        modality = get_modality(kind) if isinstance(kind, str) else None
    except ConfigError as e:  # a plugin's bundle where that plugin is not installed
        raise BundleError(f"{folder}: unknown preprocessing kind {kind!r} in the ONNX entry ({e}); install the "
                          "plugin of that modality, or re-export the bundle.") from e
    if modality is None:
        raise BundleError(f"{folder}: unknown preprocessing kind {kind!r} in the ONNX entry; re-export the bundle.")
    return modality.preprocessor(description, folder)


def onnx_entry(folder: Path, manifest: dict[str, Any], *, quantized: bool) -> dict[str, Any]:
    """The manifest's record of the (quantized) ONNX file, or a BundleError saying how to make it."""
    entry = manifest.get("onnx")
    if not entry:
        raise BundleError(f"{folder} has no ONNX model; create it with: headstart export {folder}")
    if quantized:
        entry = entry.get("int8")
        if not entry:
            raise BundleError(f"{folder} has no int8 model; create it with: headstart export {folder} --quantize int8")
    if entry["file"] not in manifest.get("files", {}):
        raise BundleError(f"{folder}: {entry['file']} is not among the bundle's verified files; re-export it.")
    return entry


def engine_metadata(folder: Path, manifest: dict[str, Any], engine: str) -> dict[str, Any]:
    """What a client may want to know about the model behind an engine (JSON-plain)."""
    backbone = manifest.get("backbone", {})
    verdict = ((manifest.get("report") or {}).get("verdict") or {}).get("label")
    onnx = manifest.get("onnx") or {}
    return {
        "labels": list(manifest["labels"]),
        "modality": manifest["modality"],
        "backbone": {k: backbone.get(k) for k in ("name", "modality", "feature_dim", "n_params", "source", "license")},
        "strategy": (manifest.get("strategy") or {}).get("name"),
        "metrics": (manifest.get("metrics") or {}).get("test", {}),
        "verdict": verdict,
        "bundle": str(folder),
        "engine": engine,
        "created": (manifest.get("fit") or {}).get("created"),
        "onnx": {"exported": bool(onnx), "int8": bool(onnx.get("int8")),
                 "parity_max_abs_diff": (onnx.get("parity") or {}).get("max_abs_diff")},
    }


def load_engine(bundle: str | Path, engine: str = "auto", *, batch_size: int = 32, device: str = "auto",
                cache: bool | str | Path = False, threads: int | None = None) -> Engine:
    """Load a bundle for inference on the chosen runtime.

    The bundle is verified first (format, manifest digest, the sha256 of every file).

    Args:
        bundle: a bundle folder (``headstart fit --out``).
        engine: ``"auto"`` (ONNX when the bundle has ``model.onnx``, else torch), ``"torch"``,
            ``"onnx"`` or ``"onnx-int8"``.
        batch_size: items per forward pass.
        device: torch engine only: ``"auto"``, ``"cpu"``, ``"cuda"``...
        cache: torch engine only: use the embedding cache (``True``, a folder) or not.
        threads: ONNX engines only: onnxruntime's intra-op threads (default: one per core; give
            ``cores // workers`` when several serving processes share the machine).

    Example:
        >>> engine = load_engine("runs/shapes", "onnx")                  # doctest: +SKIP
        >>> engine.predict_proba(["a.png", open("b.png", "rb").read()])  # doctest: +SKIP
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r}; use one of {', '.join(ENGINES)}.")
    folder = Path(bundle)
    manifest = read_manifest(folder)
    if engine == "auto":
        engine = "onnx" if manifest.get("onnx") else "torch"
    if engine == "torch":
        return TorchEngine(folder, manifest, batch_size=batch_size, device=device, cache=cache)
    return OnnxEngine(folder, manifest, batch_size=batch_size, quantized=engine == "onnx-int8", threads=threads)

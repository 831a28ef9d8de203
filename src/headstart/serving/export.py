"""``headstart export``: the whole inference graph to ONNX, checked against PyTorch, optionally int8.

The graph is the bundle's fitted backbone (fine-tuned weights, LoRA already merged at fit
time) + the linear head (with its feature standardisation) + softmax, from preprocessed
tensors to probabilities, with a dynamic batch axis (and the modality's other dynamic axes, such
as the sequence of a text). What cannot live in the graph (image decoding, resize, crop and
normalisation; tokenisation) is described in the manifest by the modality
(:meth:`headstart.modalities.base.Modality.export_inputs`) and replayed by the ONNX engine
(:meth:`headstart.modalities.base.Modality.preprocessor`).

After exporting, both engines predict the same real items and the export fails, leaving the
bundle untouched, when any probability differs by more than :data:`PARITY_TOLERANCE`. The
bundle is updated like it is written: in a copy beside it, verified, then swapped in by
renames, so a reader sees the old bundle or the new one, never half of one.

Example:
    >>> from headstart.serving.export import export_onnx
    >>> summary = export_onnx("runs/spam", quantize="int8")       # doctest: +SKIP
    >>> summary["parity"]["max_abs_diff"] <= 1e-4                 # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import io
import logging
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from headstart.atomic import atomic_folder
from headstart.bundle import fit_split_settings, read_manifest, recreate_fit_split
from headstart.classifier import load_bundle
from headstart.data import Dataset, load_data
from headstart.errors import BundleError, ConfigError, DataError
from headstart.manifest import file_sha256, write_manifest
from headstart.modalities import get_modality
from headstart.provenance import utc_now
from headstart.serving.engine import OUTPUT, Engine, OnnxEngine, TorchEngine

logger = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
QUANTIZE = ("int8",)
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
CALIBRATION_ITEMS = 128  # items that calibrate static int8 activation ranges (images)


class InferenceGraph(nn.Module):
    """Preprocessed tensors -> class probabilities: backbone features, head, softmax."""

    def __init__(self, backbone: nn.Module, head: nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.input_names = input_names
        self.modality = get_modality(backbone.spec.modality)  # packs the named inputs as the backbone takes them

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        batch = self.modality.pack(dict(zip(self.input_names, tensors)))
        return torch.softmax(self.head(self.backbone.forward_features(batch)), dim=1)


def export_onnx(bundle: str | Path, *, quantize: str | None = None, data: str | Path | None = None,
                opset: int | None = None, parity_items: int = 32) -> dict[str, Any]:
    """Add ``model.onnx`` (and with ``quantize="int8"`` ``model.int8.onnx``) to a bundle.

    Args:
        bundle: a bundle folder.
        quantize: ``"int8"`` for an int8 model as well (text: onnxruntime dynamic quantization;
            images: static QDQ quantization calibrated on training images, see
            :mod:`headstart.serving.quantize`); ``None`` for fp32 only (an int8 file from an
            earlier export is then removed: it no longer matches).
        data: real items for the parity check and the int8 accuracy (a table or image folder like
            the fit's); default: the data the bundle was fitted on, if it is still there.
        opset: ONNX opset (default: the exporter's).
        parity_items: how many real items the parity check compares.

    Returns:
        A summary: files and sizes, the parity check, batch-1 latency per engine and, for int8,
        the size, speed and held-out accuracy changes.

    Raises:
        BundleError: parity fails (the bundle is left unchanged), or no real data is found.
    """
    started = time.perf_counter()
    if quantize not in (None, *QUANTIZE):
        raise ConfigError(f"quantize={quantize!r}; use one of {', '.join(QUANTIZE)} or None.")
    if parity_items < 2:
        raise ConfigError(f"parity_items={parity_items}; compare at least 2 items.")
    folder = Path(bundle)
    manifest = read_manifest(folder)
    dataset, data_note = _real_data(folder, manifest, data)
    clf = load_bundle(folder)
    torch_engine = TorchEngine(folder, manifest, batch_size=32, device="cpu", cache=False, classifier=clf)
    # Everything is written into a copy, verified, then swapped in by renames (the shared writer).
    with atomic_folder(folder, start_from=folder) as tmp:
        summary = _export_into(tmp, manifest, torch_engine, dataset, data_note, quantize=quantize, opset=opset,
                               parity_items=parity_items)
        read_manifest(tmp)  # what a reader will verify, before it replaces the bundle
    logger.info("exported %s (parity %.2e)", folder / ONNX_FILE, summary["parity"]["max_abs_diff"])
    return {"bundle": str(folder), **summary, "seconds": round(time.perf_counter() - started, 1)}


def _export_into(tmp: Path, manifest: dict[str, Any], torch_engine: TorchEngine, dataset: Dataset, note: str, *,
                 quantize: str | None, opset: int | None, parity_items: int) -> dict[str, Any]:
    """Export, check parity, quantize and rewrite the manifest, all inside the copy ``tmp``."""
    items = _spread(dataset, parity_items)
    reference = torch_engine.predict_proba(items)
    previous = manifest.get("onnx") or {}
    entry = _export_graph(torch_engine.classifier, tmp, items[:2], opset)
    written = entry["preprocessing_files"]
    # Files of an earlier export that this one does not write again are forgotten and deleted
    # (only names the verified manifest lists: never a path from elsewhere).
    stale = [name for name in previous.get("preprocessing_files") or []
             if name in manifest["files"] and name not in written] + ([] if quantize else [INT8_FILE])
    for name in (ONNX_FILE, INT8_FILE, *stale):
        manifest["files"].pop(name, None)
    for name in stale:
        (tmp / name).unlink(missing_ok=True)
    manifest["onnx"] = entry
    _list_files(manifest, tmp, [ONNX_FILE, *written])
    entry.update(manifest["files"][ONNX_FILE])
    onnx_engine = OnnxEngine(tmp, manifest, batch_size=5)  # odd size: the last batch is ragged
    parity = entry["parity"] = _parity(reference, onnx_engine.predict_proba(items), len(items), note)
    if parity["max_abs_diff"] > PARITY_TOLERANCE:
        raise BundleError(
            f"ONNX export of {torch_engine.folder} failed the parity check: probabilities differ from "
            f"PyTorch's by up to {parity['max_abs_diff']:.2e} (> {PARITY_TOLERANCE:g}) on {len(items)} items "
            f"of {note}. The bundle is unchanged; use --engine torch, and report this with the bundle's "
            "backbone name."
        )
    speed_items = items[: min(16, len(items))]
    speed = {"torch": _latency_ms(torch_engine, speed_items), "onnx": _latency_ms(onnx_engine, speed_items)}
    int8 = _quantize(tmp, manifest, dataset, note, onnx_engine, speed_items, speed) if quantize else None
    entry["speed"] = {"batch1_ms": speed}
    _write_manifest(tmp, manifest)
    return {
        "files": {name: f["bytes"] for name, f in manifest["files"].items()},
        "onnx": {k: entry[k] for k in ("file", "bytes", "opset", "exporter", "inputs")},
        "parity": parity,
        "speed": {"batch1_ms": speed, "onnx_speedup_vs_torch": round(speed["torch"] / speed["onnx"], 2)},
        "int8": int8,
    }


# ------------------------------------------------------------------ the graph
def _export_graph(clf: Any, folder: Path, example: list[Any], opset: int | None) -> dict[str, Any]:
    """Write ``model.onnx`` (+ the files its preprocessing reads, e.g. ``tokenizer.json``) into
    ``folder``; return the manifest entry."""
    import onnx

    backbone, head = clf.backbone_.to("cpu").eval(), clf.head_.to("cpu").eval()
    modality = get_modality(backbone.spec.modality)
    # The torch path's own preprocessing of real items: the example inputs, and its description.
    inputs = modality.export_inputs(backbone, list(example), folder)
    batch, axes = inputs.batch, inputs.axes
    missing = [name for name in inputs.files if not (folder / name).is_file()]
    if missing:
        raise BundleError(f"the {modality.name} modality's export names {', '.join(missing)} among the files its "
                          "preprocessing reads but did not write them; fix its export_inputs.")
    names = list(batch)
    graph = InferenceGraph(backbone, head, names).eval()
    dims = {"batch": torch.export.Dim("batch", min=1, max=1 << 16)}
    for label in sorted({label for name in names for label in axes[name].values()} - {"batch"}):
        most = inputs.limits.get(label)  # the sequence of a text: the backbone's max_length
        dims[label] = torch.export.Dim(label, min=1, max=int(most) if most else None)
    shapes = tuple({axis: dims[label] for axis, label in axes[name].items()} for name in names)
    path = folder / ONNX_FILE
    chatter = io.StringIO()
    # dynamo=True (torch.export + onnxscript) writes one self-contained file (external_data=False: a
    # bundle holds no .data side files); the batch (and other dynamic) axes stay symbolic.
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(chatter):
        warnings.simplefilter("always")
        try:
            torch.onnx.export(graph, tuple(batch[n] for n in names), str(path), dynamo=True, external_data=False,
                              input_names=names, output_names=[OUTPUT], dynamic_shapes={"tensors": shapes},
                              opset_version=opset, verbose=False)
        except Exception as e:  # torch.export / onnxscript raise many kinds
            summary = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BundleError(f"torch.onnx could not export backbone {backbone.spec.name!r}: {summary}. "
                              "Use --engine torch for this bundle.") from e
    for w in caught:
        logger.debug("torch.onnx: %s", w.message)
    logger.debug("torch.onnx output: %s", chatter.getvalue())
    model = onnx.load(str(path), load_external_data=False)
    return {
        "file": ONNX_FILE,
        "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
        "created": utc_now(),
        "inputs": [{"name": n, "dtype": str(batch[n].dtype).replace("torch.", ""),
                    "shape": [axes[n].get(i, int(s)) for i, s in enumerate(batch[n].shape)]} for n in names],
        "output": {"name": OUTPUT, "dtype": "float32", "shape": ["batch", int(head.n_classes)],
                   "meaning": "softmax probabilities, columns in the manifest's label order"},
        "preprocessing": inputs.preprocessing,
        "preprocessing_files": list(inputs.files),
    }


def _list_files(manifest: dict[str, Any], folder: Path, names: list[str]) -> None:
    for name in names:
        manifest["files"][name] = {"sha256": file_sha256(folder / name), "bytes": (folder / name).stat().st_size}


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    write_manifest(folder, manifest, files=list(manifest["files"]))


# ------------------------------------------------------------------ real items
def _real_data(folder: Path, manifest: dict[str, Any], data: str | Path | None) -> tuple[Dataset, str]:
    """The data for parity and accuracy: ``data``, else the fit's data if it is still there."""
    loader = manifest.get("loader") or {}
    if data is None:
        recorded = [p for p in (loader.get("path"), (manifest.get("data") or {}).get("source")) if p]
        found = next((Path(p) for p in recorded if Path(p).exists()), None)
        if found is None:
            if not loader.get("path") and all(str(p).startswith("<") for p in recorded):
                # Fitted from Python on items in memory: they were never copied into the bundle.
                raise BundleError(
                    f"export checks the ONNX model against PyTorch on real items, but {folder} was fitted on data "
                    "given in memory (from Python), and headstart never copies your data into a bundle. Pass "
                    "some with --data DATA (Python: data=DATA): a table or image folder like the fit's items, "
                    "labeled if you want the int8 accuracy."
                )
            where = f" ({recorded[-1]})" if recorded else ""
            raise BundleError(
                f"export checks the ONNX model against PyTorch on real items, but the data {folder} was fitted "
                f"on{where} is not found here. Pass some with --data DATA (a table or image folder like the "
                "fit's; labeled if you want the int8 accuracy)."
            )
        data = found
    source = Path(data)
    options: dict[str, Any] = {}
    if not source.is_dir():
        options = {"text_col": loader.get("text_col"), "image_col": loader.get("image_col"),
                   "columns": loader.get("columns") or None,
                   "split_col": loader.get("split_col"), "group_col": loader.get("group_col"),
                   "time_col": loader.get("time_col"), "require_labels": False}
    dataset = load_data(source, label_col=loader.get("label_col") or "label", **options)
    if dataset.modality != manifest["modality"]:
        raise DataError(f"{source} holds {dataset.modality} but {folder} takes {manifest['modality']}; "
                        "pass data like the fit's with --data.")
    return dataset, str(source)


def _spread(dataset: Dataset, n: int) -> list[Any]:
    """``n`` items spread over the data in its modality's sort order (texts: over their lengths, so the
    longest, truncated one is in; images: in order, the sort is stable)."""
    modality = get_modality(dataset.modality)
    order = sorted(range(len(dataset)), key=lambda i: modality.sort_key(dataset.items[i]))
    picks = sorted({order[round(float(j))] for j in np.linspace(0, len(order) - 1, min(n, len(order)))})
    return [dataset.items[i] for i in picks]


def _held_out(manifest: dict[str, Any], dataset: Dataset, note: str) -> tuple[Dataset | None, str]:
    """The fit's held-out test split (re-created from the manifest when the data had no split of
    its own), a labeled data set's own test split, or all of other labeled data."""
    if dataset.labels is None:
        return None, f"{note} has no labels"
    fingerprint = (manifest.get("data") or {}).get("fingerprint")
    if dataset.splits is not None:
        test, same = dataset.split("test"), dataset.fingerprint() == fingerprint
        if len(test):
            fit = "; the fit's held-out split: fingerprint matches" if same else ""
            return test, f"the test split of {note} ({len(test)} items{fit})"
        if same:
            return None, f"the fit had no held-out test split ({note})"
        return dataset, f"all {len(dataset)} items of {note} (it has no test split)"
    try:
        test = recreate_fit_split(dataset, manifest).split("test")
    except DataError:
        return dataset, (f"all {len(dataset)} items of {note} (not the data the bundle was fitted on, or split "
                         "differently: fingerprints differ, so its held-out split cannot be re-created)")
    if not len(test):
        return None, f"the fit had no held-out test split ({note})"
    split = fit_split_settings(manifest)
    defaults = "" if split["recorded"] else " (fit's defaults: bundle predates recording them)"
    return test, (f"the fit's held-out test split of {note}, re-created ({len(test)} items; seed {split['seed']}, "
                  f"val {split['val_fraction']}, test {split['test_fraction']}{defaults}; fingerprint matches)")


def _parity(reference: np.ndarray, onnx: np.ndarray, n: int, note: str) -> dict[str, Any]:
    return {
        "max_abs_diff": float(np.abs(reference - onnx).max()),
        "tolerance": PARITY_TOLERANCE,
        "items": n,
        "labels_agree": float((reference.argmax(1) == onnx.argmax(1)).mean()),
        "data": note,
    }


def _latency_ms(engine: Engine, items: list[Any], warmup: int = 2) -> float:
    """Median wall time of ``predict_proba([item])`` (preprocessing included), in milliseconds."""
    for item in items[:warmup]:
        engine.predict_proba([item])
    times = []
    for item in items:
        t = time.perf_counter()
        engine.predict_proba([item])
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1000, 3)


# ------------------------------------------------------------------ int8
def _quantize(folder: Path, manifest: dict[str, Any], dataset: Dataset, note: str, fp32: OnnxEngine,
              speed_items: list[Any], speed: dict[str, float]) -> dict[str, Any]:
    """``model.int8.onnx`` (see :mod:`headstart.serving.quantize`): size, batch-1 speed and held-out
    accuracy change against fp32 ONNX."""
    from headstart.serving.quantize import quantize_dynamic_int8, quantize_static_int8

    test, where = _held_out(manifest, dataset, note)
    modality = get_modality(manifest["modality"])
    if modality.quantization == "static":
        # Calibrate activation ranges on training items only (the fit's train split when it was re-created).
        pool = dataset.split("train") if dataset.splits is not None else dataset
        items = _spread(pool, CALIBRATION_ITEMS)
        feeds = [fp32.preprocess([modality.decode(item, i) for i, item in enumerate(items[k:k + 16], k)])
                 for k in range(0, len(items), 16)]
        method = quantize_static_int8(folder / ONNX_FILE, folder / INT8_FILE, feeds)
    else:
        method = quantize_dynamic_int8(folder / ONNX_FILE, folder / INT8_FILE)
    _list_files(manifest, folder, [INT8_FILE])
    fp32_bytes, int8_bytes = manifest["files"][ONNX_FILE]["bytes"], manifest["files"][INT8_FILE]["bytes"]
    entry = {"file": INT8_FILE, **manifest["files"][INT8_FILE], "method": method}
    manifest["onnx"]["int8"] = entry
    int8 = OnnxEngine(folder, manifest, batch_size=32, quantized=True)
    speed["onnx-int8"] = _latency_ms(int8, speed_items)
    entry["size_ratio"] = round(int8_bytes / fp32_bytes, 3)
    entry["speedup_vs_onnx"] = round(speed["onnx"] / speed["onnx-int8"], 2)
    if test is None:
        entry["accuracy"] = {"available": False, "reason": f"no labeled held-out data: {where}; pass --data "
                             "with labeled items to measure it."}
    else:
        labels = [str(v) for v in test.labels]
        p32, p8 = fp32.predict_proba(test.items), int8.predict_proba(test.items)
        pred32 = [str(fp32.classes[i]) for i in p32.argmax(1)]
        pred8 = [str(fp32.classes[i]) for i in p8.argmax(1)]
        acc32 = float(np.mean([a == b for a, b in zip(pred32, labels)]))
        acc8 = float(np.mean([a == b for a, b in zip(pred8, labels)]))
        entry["accuracy"] = {"available": True, "evaluated_on": where, "items": len(labels), "onnx": acc32,
                             "onnx-int8": acc8, "delta": acc8 - acc32,
                             "agreement": float(np.mean([a == b for a, b in zip(pred32, pred8)])),
                             "max_abs_diff": float(np.abs(p32 - p8).max())}
    return {k: v for k, v in entry.items() if k != "sha256"}

"""Model bundles: a folder with ``headstart.json`` and ``model.safetensors``.

``headstart.json`` records the format version, task, labels, the backbone's spec and how
to rebuild it, the strategy and its choices, preprocessing, metrics, seed, package
versions, the data fingerprint and the sha256 of every file. A bundle is written into a
temporary folder and renamed into place, so a failed or interrupted save leaves no half
bundle. Loading verifies every hash and the format version, and reads only JSON and
safetensors: nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from headstart.atomic import swap_into_place
from headstart.errors import BundleError

logger = logging.getLogger(__name__)

FORMAT_NAME = "headstart-bundle"
FORMAT_VERSION = 1
MANIFEST = "headstart.json"
WEIGHTS = "model.safetensors"
# Bundle files are data, never code: these are the only kinds a bundle may list.
ALLOWED_SUFFIXES = (".safetensors", ".json", ".onnx", ".html", ".svg", ".png")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, without its own ``manifest_sha256`` field.

    It catches accidental edits and damage (a changed label list would silently mislabel
    every prediction); it is an integrity check, not a signature.
    """
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _manifest(clf: Any, extra: dict[str, Any]) -> dict[str, Any]:
    spec = clf.backbone_.spec
    return _jsonable({
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "task": "classification",
        "modality": spec.modality,
        "labels": list(clf.classes_),
        "backbone": {
            **spec.to_dict(),
            "weights_sha256": clf.backbone_.weights_sha256(),
            "weights_in_bundle": bool(clf.backbone_changed_),
        },
        "head": {"type": "linear", "in_features": clf.head_.in_features, "n_classes": clf.head_.n_classes,
                 "standardize": True, "output": "softmax"},
        "preprocessing": spec.preprocessing,
        "strategy": clf.strategy_details_,
        "params": clf.get_params(),
        "metrics": clf.metrics_,
        "seed": clf.fit_info_.get("seed"),
        "fit": clf.fit_info_,
        "data": clf.fit_info_.get("data", {}),
        **extra,
    })


def check_destination(path: str | Path, *, resuming: bool = False) -> Path:
    """Refuse a destination that holds something other than a bundle (before any work is done).

    A folder holding an interrupted fit's checkpoint is accepted only when resuming it.
    """
    from headstart.training.checkpoint import has_checkpoint

    out = Path(path)
    if resuming:
        if not has_checkpoint(out):
            raise BundleError(f"{out} holds no interrupted fit to resume (no checkpoint); run fit without --resume.")
        return out
    if has_checkpoint(out):
        raise BundleError(f"{out} holds an interrupted fit: continue it with --resume {out}, or choose another --out.")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise BundleError(f"{out} exists and is not a headstart bundle; choose another --out folder.")
    return out


def save_bundle(clf: Any, path: str | Path, *, extra: dict[str, Any] | None = None,
                attachments: dict[str, str] | None = None) -> Path:
    """Write a fitted classifier to ``path`` atomically.

    An existing bundle at ``path`` is replaced; any other non-empty folder is refused.
    ``attachments`` (file name -> text, e.g. ``report.html``) are written into the same folder
    in the same atomic step; they are views derived from the manifest, not model data, so they
    are not part of the verified file list.
    """
    from safetensors.torch import save_file

    from headstart.training.checkpoint import has_checkpoint

    out = check_destination(path, resuming=has_checkpoint(path))
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"head.{k}": v.detach().cpu().contiguous() for k, v in clf.head_.state_dict().items()}
    if clf.backbone_changed_:
        tensors.update({f"backbone.{k}": v.detach().cpu().contiguous() for k, v in clf.backbone_.state_dict().items()})
    manifest = _manifest(clf, extra or {})
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": FORMAT_NAME})
        manifest["files"] = {WEIGHTS: {"sha256": file_sha256(tmp / WEIGHTS), "bytes": (tmp / WEIGHTS).stat().st_size}}
        manifest["manifest_sha256"] = manifest_digest(json.loads(json.dumps(manifest, default=str)))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        for name, text in (attachments or {}).items():
            if Path(name).name != name or not name.endswith(ALLOWED_SUFFIXES) or name in (MANIFEST, WEIGHTS):
                raise BundleError(f"cannot attach {name!r} to a bundle: a plain .html/.svg/.png/.json name is needed.")
            (tmp / name).write_text(text, encoding="utf-8")
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("bundle written to %s", out)
    return out


def read_manifest(path: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """The bundle's ``headstart.json``, after checking format, version and file hashes."""
    folder = Path(path)
    manifest_path = folder / MANIFEST
    if not folder.is_dir() or not manifest_path.is_file():
        raise BundleError(f"{folder} is not a headstart bundle (no {MANIFEST}); pass the folder `fit --out` wrote.")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(f"{manifest_path} is not valid JSON ({e}); the bundle is damaged, refit or restore it.") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise BundleError(f"{manifest_path} is not a headstart bundle manifest.")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(
            f"{folder} has bundle format {version!r}, newer than this headstart reads ({FORMAT_VERSION}); "
            "upgrade headstart (pip install -U headstart)."
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or WEIGHTS not in files:
        raise BundleError(f"{manifest_path} lists no {WEIGHTS}; the bundle is incomplete.")
    if verify:
        if manifest.get("manifest_sha256") != manifest_digest(manifest):
            raise BundleError(
                f"{manifest_path} was edited or damaged after the bundle was written (its content does "
                "not match its recorded sha256). Refit, or restore the bundle from a good copy."
            )
        for name, entry in files.items():
            file = folder / name
            if Path(name).name != name or not name.endswith(ALLOWED_SUFFIXES):
                raise BundleError(f"{folder} lists {name!r}, which a bundle may not hold; refusing to load it.")
            if not file.is_file():
                raise BundleError(f"{folder} is incomplete: {name} is missing.")
            if file_sha256(file) != entry.get("sha256"):
                raise BundleError(
                    f"{file} does not match the sha256 recorded in {MANIFEST}: it was modified or damaged "
                    "after the bundle was written. Refit, or restore the bundle from a good copy."
                )
    return manifest


def load_bundle(path: str | Path) -> Any:
    """Load a bundle written by :meth:`TransferClassifier.save` (verifying it first)."""
    from safetensors.torch import load_file

    from headstart.backbones import create_backbone
    from headstart.classifier import TransferClassifier
    from headstart.heads import LinearHead

    folder = Path(path)
    manifest = read_manifest(folder)
    tensors = load_file(str(folder / WEIGHTS))
    spec = manifest["backbone"]
    build = spec.get("build") or {"name": spec["name"], "kwargs": {}}
    backbone = create_backbone(build["name"], **build.get("kwargs", {}))
    if spec.get("weights_in_bundle"):
        state = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
        missing, unexpected = backbone.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BundleError(f"{folder}: backbone weights do not fit {build['name']} ({len(missing)} missing).")
    elif backbone.weights_sha256() != spec.get("weights_sha256"):
        raise BundleError(
            f"the installed weights of backbone {build['name']!r} differ from those {folder} was trained "
            "with (sha256 mismatch), so its predictions would be wrong. Install the package versions "
            f"recorded in {MANIFEST} ('fit.versions'), or refit."
        )
    head_cfg = manifest["head"]
    head = LinearHead(int(head_cfg["in_features"]), int(head_cfg["n_classes"]))
    head_state = {k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")}
    try:
        head.load_state_dict(head_state, strict=True)
    except RuntimeError as e:
        raise BundleError(f"{folder}: the head weights do not match the manifest ({e}).") from e
    head.eval()
    params = TransferClassifier().get_params()
    params.update({k: v for k, v in manifest.get("params", {}).items() if k in params})
    clf = TransferClassifier(**params)
    clf._set_fitted(backbone, head, manifest["labels"], manifest)
    clf.bundle_path_ = folder
    return clf

"""Model bundles: a folder with ``headstart.json`` and ``model.safetensors``.

``headstart.json`` records the format version, task, labels, the backbone's spec and how
to rebuild it, the strategy and its choices, preprocessing, metrics, seed, package
versions, the data fingerprint and the sha256 of every file the model uses (all inside the
folder). A bundle is written with :func:`headstart.atomic.atomic_folder` (a temporary folder
renamed into place), so a failed or interrupted save leaves the old bundle or the new one,
never half of one; the manifest is written and read by :mod:`headstart.manifest`. Loading
verifies every hash, the format version, the types of the fields it uses and that the labels
fit the head, and reads only JSON and safetensors: nothing is ever unpickled.

Writing a bundle replaces its whole folder, so :func:`check_destination` refuses, before any
work, a folder holding anything that is not the bundle's (the user's notes, data...).

:func:`recreate_fit_split` re-creates, from the manifest, the train/val/test split fit made of
data that had none of its own (``evaluate --split``, the int8 accuracy of ``export``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.atomic import (
    atomic_folder,
    check_writable,
    clean_stale,
    is_temporary,
    recover,
    write_file,
)
from headstart.errors import BundleError, DataError, HeadstartError
from headstart.jsonable import jsonable
from headstart.manifest import (
    ALLOWED_SUFFIXES,
    MANIFEST,
    file_sha256,
    load_json,
    manifest_digest,
    read_manifest_file,
    verify_manifest,
    write_manifest,
)

if TYPE_CHECKING:
    from headstart.data import Dataset

__all__ = ["ALLOWED_SUFFIXES", "FORMAT_NAME", "FORMAT_VERSION", "MANIFEST", "WEIGHTS", "check_destination",
           "check_labels", "file_sha256", "fit_split_settings", "foreign_files", "manifest_digest", "read_bundle",
           "read_manifest", "recreate_fit_split", "save_bundle"]

logger = logging.getLogger(__name__)

FORMAT_NAME = "headstart-bundle"
FORMAT_VERSION = 2  # 2: the head may L2-normalise features ('head.normalize'); 1 still loads
WEIGHTS = "model.safetensors"
REPORT = "report.html"  # `headstart report` writes it into the bundle folder by default
_LABEL_TYPES = (str, int, float, bool)
_MAX_LISTED = 10  # foreign files named in a message

# The manifest fields loading and serving use: (dotted path, accepted types, required when the
# enclosing object is present). ``int`` never accepts ``bool`` here.
_FIELDS: tuple[tuple[str, tuple[type, ...], bool], ...] = (
    ("task", (str,), False),
    ("modality", (str,), True),
    ("labels", (list,), True),
    ("head", (dict,), True),
    ("head.in_features", (int,), True),
    ("head.n_classes", (int,), True),
    ("backbone", (dict,), True),
    ("backbone.name", (str,), True),
    ("backbone.build", (dict,), False),
    ("backbone.build.name", (str,), True),
    ("backbone.build.kwargs", (dict,), False),
    ("backbone.weights_in_bundle", (bool,), False),
    ("backbone.weights_sha256", (str, type(None)), False),
    ("preprocessing", (dict,), False),
    ("strategy", (dict,), False),
    ("params", (dict,), False),
    ("metrics", (dict,), False),
    ("fit", (dict,), False),
    ("data", (dict,), False),
    ("loader", (dict,), False),
    ("report", (dict,), False),
    ("attachments", (list,), False),
    ("onnx", (dict,), False),
    ("onnx.file", (str,), True),
    ("onnx.preprocessing", (dict,), True),
    ("onnx.int8", (dict,), False),
    ("onnx.int8.file", (str,), True),
)
# Manifest fields naming a file the model uses: each must be one of the verified ``files``.
_FILE_FIELDS = ("onnx.file", "onnx.int8.file", "onnx.preprocessing.tokenizer", "hybrid.vocabulary")


def _manifest(clf: Any, extra: dict[str, Any]) -> dict[str, Any]:
    spec = clf.backbone_.spec
    return jsonable({
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
        "head": clf.head_.config(),
        **({"hybrid": clf.hybrid_.manifest()} if getattr(clf, "hybrid_", None) is not None else {}),
        "preprocessing": spec.preprocessing,
        "strategy": clf.strategy_details_,
        "params": clf.get_params(),
        "metrics": clf.metrics_,
        "seed": clf.fit_info_.get("seed"),
        "fit": clf.fit_info_,
        "data": clf.fit_info_.get("data", {}),
        **extra,
    })


# ------------------------------------------------------------------ checks
def check_labels(labels: Any, n_classes: Any, where: str) -> None:
    """The label list must be distinct scalars, one per output of the head."""
    fix = "Write the bundle again (refit), or restore it from a good copy."
    if not isinstance(labels, list) or not labels:
        raise BundleError(f"{where}: 'labels' must be a non-empty list of class labels, got {labels!r:.80}. {fix}")
    odd = [v for v in labels if not isinstance(v, _LABEL_TYPES)]
    if odd:
        raise BundleError(f"{where}: labels must be strings or numbers; found {odd[0]!r:.80}. {fix}")
    seen: dict[str, int] = {}
    for v in labels:
        # The rule of headstart.data.labels.label_key (1 and 1.0 are one class), without importing
        # the data package into the torch-free serving path.
        key = str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
        seen[key] = seen.get(key, 0) + 1
    duplicated = [k for k, n in seen.items() if n > 1]
    if duplicated:
        raise BundleError(f"{where}: the label list names {', '.join(map(repr, duplicated[:5]))} more than once; "
                          f"each output of the model needs its own label. {fix}")
    if len(labels) != n_classes:
        raise BundleError(f"{where}: the label list has {len(labels)} labels but the model's head has "
                          f"{n_classes} outputs, so predictions could not be named. {fix}")


def _field(manifest: dict[str, Any], dotted: str) -> tuple[bool, bool, Any]:
    """(enclosing object present, field present, value) of a dotted field."""
    node: Any = manifest
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return False, False, None
    return True, last in node, node.get(last)


def check_bundle_fields(manifest: dict[str, Any], path: Path) -> None:
    """The fields loading and serving read have the right types, and labels fit the head."""
    for dotted, types, required in _FIELDS:
        parent, present, value = _field(manifest, dotted)
        if not parent or not present:
            if parent and required:
                raise BundleError(f"{path} lacks the field '{dotted}'; the bundle is incomplete or damaged. "
                                  "Refit, or restore it from a good copy.")
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise BundleError(f"{path}: the field '{dotted}' must be {names}, got {value!r:.80}; the bundle is "
                              "damaged. Refit, or restore it from a good copy.")
    n_classes, in_features = manifest["head"]["n_classes"], manifest["head"]["in_features"]
    if in_features < 1 or n_classes < 1:
        raise BundleError(f"{path}: the head has {in_features} inputs and {n_classes} outputs; the bundle is damaged.")
    check_labels(manifest["labels"], n_classes, str(path))
    files = manifest["files"]
    for dotted in _FILE_FIELDS:
        _, present, value = _field(manifest, dotted)
        if present and (not isinstance(value, str) or value not in files):
            raise BundleError(f"{path}: '{dotted}' names {value!r:.120}, which is not one of the bundle's verified "
                              f"files ({', '.join(files)}); every file a bundle uses must be inside it and "
                              "hashed. Export it again (headstart export).")
    _, present, listed = _field(manifest, "onnx.preprocessing_files")
    for value in (listed if present and isinstance(listed, list) else [listed] if present else []):
        if not isinstance(value, str) or value not in files:
            raise BundleError(f"{path}: 'onnx.preprocessing_files' names {value!r:.120}, which is not one of the "
                              f"bundle's verified files ({', '.join(files)}); every file a bundle uses must be inside "
                              "it and hashed. Export it again (headstart export).")


def foreign_files(folder: str | Path) -> list[str]:
    """What ``folder`` holds besides a bundle (relative paths): what replacing it would delete."""
    from headstart.training.checkpoint import NAME as CHECKPOINT
    from headstart.training.checkpoint import is_checkpoint_folder

    folder = Path(folder)
    if not folder.is_dir():
        return []
    own = {MANIFEST, WEIGHTS, REPORT}
    if (folder / MANIFEST).is_file():
        try:
            manifest = load_json(folder / MANIFEST, what="bundle")
        except HeadstartError:
            manifest = None
        if isinstance(manifest, dict):
            for key in ("files", "attachments"):
                listed = manifest.get(key)
                if isinstance(listed, (dict, list)):
                    own |= {n for n in listed if isinstance(n, str)}
    found: list[str] = []
    for entry in sorted(folder.iterdir()):
        if len(found) > _MAX_LISTED:
            break
        if is_temporary(entry.name) or (entry.name == CHECKPOINT and is_checkpoint_folder(entry)):
            continue
        if entry.name in own and entry.is_file() and not entry.is_symlink():
            continue
        if entry.is_dir() and not entry.is_symlink():
            inner = []
            for root, dirs, names in os.walk(entry):
                inner += [os.path.relpath(os.path.join(root, n), folder) for n in sorted(names + [
                    d for d in dirs if os.path.islink(os.path.join(root, d))])]
                if len(inner) > _MAX_LISTED:
                    break
            found += inner or [entry.name + "/"]
        else:
            found.append(entry.name)
    return found


def check_destination(path: str | Path, *, resuming: bool = False) -> Path:
    """Refuse, before any work, an ``--out`` folder a fit could not write or would damage.

    It must be writable (not under a file, not on a read-only or virtual file system), hold an
    interrupted fit's checkpoint exactly when resuming, and hold nothing but a bundle: writing the
    bundle replaces the whole folder, so any other file in it would be lost. An interrupted
    replacement of the folder is finished or rolled back first, and temporary folders that killed
    processes left in it are removed.

    Example:
        >>> check_destination("runs/spam")  # doctest: +SKIP
        PosixPath('runs/spam')
    """
    from headstart.training.checkpoint import has_checkpoint

    out = Path(path)
    recover(out)
    if out.is_dir():
        clean_stale(out)
    if os.path.lexists(out) and not out.is_dir():
        raise BundleError(f"{out} exists and is not a folder; choose another --out folder.")
    check_writable(out, fix="choose another --out folder")
    if resuming:
        if not has_checkpoint(out):
            raise BundleError(
                f"{out} holds no interrupted fit to resume (no complete checkpoint: a fit writes one at the end "
                "of each training epoch, so one stopped before its first epoch ended has nothing to continue). "
                "Run the same command without --resume: it starts over."
            )
        return _refuse_foreign(out)
    if has_checkpoint(out):
        raise BundleError(
            f"{out} holds an interrupted fit: continue it with --resume {out} (Python: fit(..., resume=True)), "
            f"start over after deleting {out / 'checkpoint'}, or choose another --out folder."
        )
    return _refuse_foreign(out)


def _refuse_foreign(out: Path) -> Path:
    foreign = foreign_files(out)
    if not foreign:
        return out
    listed = ", ".join(foreign[:_MAX_LISTED]) + (", ..." if len(foreign) > _MAX_LISTED else "")
    what = "a headstart bundle that also holds" if (out / MANIFEST).is_file() else "not a headstart bundle: it holds"
    raise BundleError(
        f"{out} is {what} files that are not the bundle's ({listed}). Writing the bundle replaces the whole "
        f"folder, which would delete them: choose another --out folder, or move those files out of {out}."
    )


# ------------------------------------------------------------------ write / read
def save_bundle(clf: Any, path: str | Path, *, extra: dict[str, Any] | None = None,
                attachments: dict[str, str] | None = None) -> Path:
    """Write a fitted classifier to ``path`` atomically.

    An existing bundle at ``path`` is replaced; a folder holding anything else is refused.
    ``attachments`` (file name -> text, e.g. ``report.html``) are written into the same folder
    in the same atomic step; they are views derived from the manifest, not model data, so they
    are listed (``attachments``) but not part of the verified file list.
    """
    from safetensors.torch import save_file

    from headstart.training.checkpoint import has_checkpoint

    out = check_destination(path, resuming=has_checkpoint(path))
    tensors = {f"head.{k}": v.detach().cpu().contiguous() for k, v in clf.head_.state_dict().items()}
    if clf.backbone_changed_:
        tensors.update({f"backbone.{k}": v.detach().cpu().contiguous() for k, v in clf.backbone_.state_dict().items()})
    hybrid = getattr(clf, "hybrid_", None)
    files: dict[str, str | None] = {WEIGHTS: None}  # name -> text to write (the weights are written apart)
    if hybrid is not None:
        import json

        import numpy as np
        import torch

        tensors.update({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in hybrid.tensors().items()})
        files[hybrid.manifest()["vocabulary"]] = json.dumps(hybrid.classic.vocabulary, ensure_ascii=False)
    manifest = _manifest(clf, extra or {})
    check_labels(manifest["labels"], manifest["head"]["n_classes"], f"the model to be saved in {out}")
    attachments = dict(attachments or {})
    for name in attachments:
        if Path(name).name != name or not name.endswith(ALLOWED_SUFFIXES) or name in (MANIFEST, *files):
            raise BundleError(f"cannot attach {name!r} to a bundle: a plain .html/.svg/.png/.json name is needed.")
    manifest["attachments"] = sorted(attachments)
    with atomic_folder(out) as tmp:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": FORMAT_NAME})
        for name, text in [*attachments.items(), *((n, t) for n, t in files.items() if t is not None)]:
            write_file(tmp / name, text)
        write_manifest(tmp, manifest, files=list(files))
    logger.info("bundle written to %s", out)
    return out


def read_manifest(path: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """The bundle's ``headstart.json``, after checking format, version, fields and file hashes.

    An interrupted replacement of the folder is finished or rolled back first.

    Raises:
        BundleError: the folder is not a bundle, is damaged, tampered with or from a newer version.
    """
    folder = Path(path)
    manifest = read_manifest_file(folder, format=FORMAT_NAME, version=FORMAT_VERSION, verify=False)
    if WEIGHTS not in manifest["files"]:
        raise BundleError(f"{folder / MANIFEST} lists no {WEIGHTS}; the bundle is incomplete.")
    if verify:
        verify_manifest(folder, manifest)
    check_bundle_fields(manifest, folder / MANIFEST)
    return manifest


def read_bundle(path: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    """The verified backbone, head and manifest of a bundle written by :meth:`TransferClassifier.save`.

    Only the stored parts are rebuilt here; :func:`headstart.classifier.load_bundle` puts them
    into an estimator, so this module never imports the estimator (which imports it to save).

    Raises:
        BundleError: the folder is not a bundle, is damaged, or its weights do not fit.
    """
    from safetensors.torch import load_file

    from headstart.backbones import rebuild_backbone
    from headstart.heads import NORMALIZATIONS, LinearHead

    folder = Path(path)
    manifest = read_manifest(folder)
    try:
        tensors = load_file(str(folder / WEIGHTS))
    except Exception as e:  # safetensors raises its own kinds for damaged files
        raise BundleError(f"{folder / WEIGHTS} cannot be read ({e}); restore the bundle or refit.") from e
    spec = manifest["backbone"]
    build = spec.get("build") or {"name": spec["name"], "kwargs": {}}
    try:
        backbone = rebuild_backbone(build, spec.get("preprocessing") or {})
    except (TypeError, ValueError) as e:
        raise BundleError(f"{folder}: the backbone cannot be rebuilt from {MANIFEST} ('backbone.build': {e}); "
                          "the bundle is damaged or from another headstart version. Refit it.") from e
    if spec.get("weights_in_bundle"):
        state = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
        try:
            missing, unexpected = backbone.load_state_dict(state, strict=False)
        except RuntimeError as e:
            raise BundleError(f"{folder}: backbone weights do not fit {build['name']} ({str(e)[:200]}).") from e
        if missing or unexpected:
            raise BundleError(f"{folder}: backbone weights do not fit {build['name']} ({len(missing)} missing).")
    elif backbone.weights_sha256() != spec.get("weights_sha256"):
        raise BundleError(
            f"the installed weights of backbone {build['name']!r} differ from those {folder} was trained "
            "with (sha256 mismatch), so its predictions would be wrong. Install the package versions "
            f"recorded in {MANIFEST} ('fit.versions'), or refit."
        )
    head_cfg = manifest["head"]
    shape = tuple(tensors["head.linear.weight"].shape) if "head.linear.weight" in tensors else None
    if shape != (head_cfg["n_classes"], head_cfg["in_features"]):
        raise BundleError(f"{folder}: the head's weights have shape {shape} (classes, features), but {MANIFEST} "
                          f"describes {head_cfg['n_classes']} labels and {head_cfg['in_features']} features; the "
                          "bundle is damaged. Refit, or restore it from a good copy.")
    normalize = head_cfg.get("normalize", "none")  # format 1 bundles predate the setting: none
    if normalize not in NORMALIZATIONS:
        raise BundleError(f"{folder}: {MANIFEST} 'head.normalize' is {normalize!r}, not one of {NORMALIZATIONS}; "
                          "the bundle is damaged or from a newer headstart. Refit, or upgrade headstart.")
    head = LinearHead(int(head_cfg["in_features"]), int(head_cfg["n_classes"]), normalize=normalize)
    head_state = {k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")}
    try:
        head.load_state_dict(head_state, strict=True)
    except RuntimeError as e:
        raise BundleError(f"{folder}: the head weights do not match the manifest ({e}).") from e
    head.eval()
    return backbone, head, manifest


# ------------------------------------------------------------- the fit's split
# Split shares `headstart fit` used before bundles recorded them (its defaults then and now).
DEFAULT_FRACTIONS = {"val_fraction": 0.1, "test_fraction": 0.2}
_RECREATE_FIX = ("Give data with a split of its own (a split column or train/ val/ test/ folders), or the data "
                 "the bundle was fitted on, loaded with the same label, group and time columns.")


def fit_split_settings(manifest: dict[str, Any]) -> dict[str, Any]:
    """How ``fit`` split data that had no split of its own, as its manifest records it.

    Returns:
        ``seed``, ``val_fraction``, ``test_fraction`` and ``recorded`` (``False`` when the bundle
        predates recording the shares, so fit's defaults, :data:`DEFAULT_FRACTIONS`, are used).

    Raises:
        BundleError: a recorded value is not a number.
    """
    loader = manifest.get("loader") or {}
    settings = {"seed": manifest.get("seed") or 0, **{k: loader.get(k, v) for k, v in DEFAULT_FRACTIONS.items()}}
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (name == "seed" and value != int(value)):
            field = name if name == "seed" else f"loader.{name}"
            raise BundleError(f"{MANIFEST}: '{field}' is {value!r}, not a number, so the split fit made cannot be "
                              "re-created; the bundle is damaged: restore it or refit.")
    settings["seed"] = int(settings["seed"])
    settings["recorded"] = all(k in loader for k in DEFAULT_FRACTIONS)
    return settings


def recreate_fit_split(dataset: Dataset, manifest: dict[str, Any], *, fix: str = _RECREATE_FIX) -> Dataset:
    """The data with the train/val/test split ``fit`` made of it, re-created from the bundle's manifest.

    ``fit`` splits data without a split of its own by its seed and shares (and the group and time
    columns, which must be loaded with the data, as the manifest's ``loader`` records), all in
    the manifest. The same data split the same way has the fingerprint the manifest records;
    that is checked, so other or edited data is an error, never a silently different split.

    Args:
        dataset: the data the bundle was fitted on, loaded like at fit. Its ``splits`` are
            filled in place (and left ``None`` when the split cannot be re-created). Data with
            a split of its own is only checked.
        manifest: the bundle's manifest (:func:`read_manifest`).
        fix: what the user can do instead, ending the error's message.

    Returns:
        ``dataset``, with the fit's split.

    Raises:
        DataError: the data is not the data the bundle was fitted on (its fingerprint differs,
            or it cannot be split the way fit split it), naming both and ``fix``.
        BundleError: the manifest's seed or shares are damaged.

    Example:
        >>> from headstart.data import load_data
        >>> data = load_data("spam.csv", text_col="text")                            # doctest: +SKIP
        >>> test = recreate_fit_split(data, read_manifest("runs/spam")).split("test")  # doctest: +SKIP
    """
    from headstart.data import assign_splits

    recorded = manifest.get("data") or {}
    settings = fit_split_settings(manifest)
    cannot = f"The train/val/test split fit made cannot be re-created on {dataset.source}"
    if not recorded.get("fingerprint"):
        raise DataError(f"{cannot}: the bundle records no fingerprint of the data it was fitted on to check it "
                        f"against. {fix}")
    own_split = dataset.splits is not None
    reason = "its fingerprint differs"
    if not own_split:
        try:
            assign_splits(dataset, seed=settings["seed"], val_fraction=settings["val_fraction"],
                          test_fraction=settings["test_fraction"])
        except DataError:  # data fit could split but this cannot be: other data, said below
            reason = "it cannot be split the way that data was"
            dataset.splits = None
    if dataset.splits is not None and dataset.fingerprint() == recorded["fingerprint"]:
        return dataset
    if not own_split:
        dataset.splits = None
    fitted_on = f" ({recorded['source']})" if recorded.get("source") else ""
    raise DataError(f"{cannot}: it is not the data the bundle was fitted on{fitted_on}: {reason}. {fix}")

"""Training checkpoints: everything needed to continue a fit exactly where it stopped.

``DIR/checkpoint/`` holds ``model.safetensors`` (current weights), ``best.safetensors`` (the
best weights so far, for restore-best), ``optimizer.safetensors`` (every tensor of the optimizer
and scheduler state) and ``checkpoint.json``, the manifest (:mod:`headstart.manifest`): the
sha256 of those files, the rest of the optimizer and scheduler state as JSON (numbers, lists,
tuples, dicts, with the tensors' places), and the loop's state (epoch, step, phase, early-stopping
state, which parameters train, RNG states, and a fingerprint of the data and configuration so a
resume cannot silently mix two different fits). Only JSON and safetensors are read back: a
checkpoint folder someone hands to ``--resume`` can never run code.

The folder is written with :func:`headstart.atomic.atomic_folder` after every epoch, so a kill at
any moment leaves the previous checkpoint or the new one, never half of one; a fit killed before
its first checkpoint was complete has nothing to resume and is simply run again (its temporary
folder is removed by the next command that touches the run folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from headstart.atomic import atomic_folder, recover
from headstart.errors import BundleError, ConfigError
from headstart.manifest import read_manifest_file, write_manifest

NAME = "checkpoint"
MANIFEST = "checkpoint.json"
FORMAT = "headstart-checkpoint"
FORMAT_VERSION = 1
MODEL, BEST, OPTIMIZER = "model.safetensors", "best.safetensors", "optimizer.safetensors"
_LEGACY = "state.json"  # headstart <= 0.1 checkpoints (optimizer state in a pickle-based optimizer.pt)


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / NAME


def is_checkpoint_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is a checkpoint folder headstart wrote (this version's or an older one's)."""
    folder = Path(folder)
    return (folder / MANIFEST).is_file() or (folder / _LEGACY).is_file()


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a complete checkpoint (an interrupted write is finished first)."""
    folder = checkpoint_path(run_dir)
    if Path(run_dir).is_dir():
        recover(folder)
    return is_checkpoint_folder(folder)


def save_checkpoint(
    run_dir: str | Path,
    *,
    model_state: dict[str, torch.Tensor],
    best_state: dict[str, torch.Tensor] | None,
    optimizer_state: dict[str, Any],
    state: dict[str, Any],
) -> None:
    """Write ``run_dir/checkpoint`` atomically (replacing the previous one)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    structure = _to_json(optimizer_state, tensors, "optimizer_state")
    with atomic_folder(checkpoint_path(run_dir)) as tmp:
        save_file(_contiguous(model_state), str(tmp / MODEL))
        files = [MODEL]
        if best_state is not None:
            save_file(_contiguous(best_state), str(tmp / BEST))
            files.append(BEST)
        save_file(_contiguous(tensors), str(tmp / OPTIMIZER))
        files.append(OPTIMIZER)
        write_manifest(tmp, {"format": FORMAT, "format_version": FORMAT_VERSION, "state": state,
                             "optimizer": structure}, files=files, name=MANIFEST)


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """The saved pieces: ``model``, ``best`` (or None), ``optimizer``, ``state`` (all verified)."""
    from safetensors.torch import load_file

    folder = checkpoint_path(run_dir)
    if not has_checkpoint(run_dir):
        raise ConfigError(f"{run_dir} has no checkpoint to resume from (no complete {NAME}/{MANIFEST}); run the "
                          "fit without resume: it starts over.")
    if not (folder / MANIFEST).is_file():
        raise ConfigError(f"{folder} was written by an older headstart, whose optimizer state is a pickle-based "
                          f"file that is no longer read. It cannot be resumed: delete {folder} and run the fit "
                          "again without resume.")
    manifest = read_manifest_file(folder, format=FORMAT, version=FORMAT_VERSION, name=MANIFEST,
                                  what="checkpoint", fix="pass the run folder of an interrupted fit")
    files, state = manifest["files"], manifest.get("state")
    if MODEL not in files or OPTIMIZER not in files or not isinstance(state, dict):
        raise BundleError(f"{folder / MANIFEST} is incomplete (no {MODEL}, {OPTIMIZER} or state); delete {folder} "
                          "and run the fit again without resume.")
    try:
        return {
            "model": load_file(str(folder / MODEL)),
            "best": load_file(str(folder / BEST)) if BEST in files else None,
            "optimizer": _from_json(manifest.get("optimizer"), load_file(str(folder / OPTIMIZER))),
            "state": state,
        }
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise BundleError(f"{folder} cannot be read back ({e}); delete it and run the fit again without "
                          "resume.") from e


# Optimizer and scheduler state as JSON + tensors: dicts keep their key types (int parameter ids),
# tuples stay tuples, tensors are stored by name in optimizer.safetensors.
def _to_json(value: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value
        return {"tensor": key}
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise ConfigError(f"cannot checkpoint {where}: key {k!r} is neither a string nor an integer.")
        return {"dict": [[k, _to_json(v, tensors, f"{where}[{k!r}]")] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"tuple": [_to_json(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_to_json(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ConfigError(f"cannot checkpoint {where}: a {type(value).__name__} is not a tensor, number, string, list, "
                      "tuple or dict.")


def _from_json(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_from_json(v, tensors) for v in value]
    if isinstance(value, dict):
        if set(value) == {"tensor"}:
            return tensors[value["tensor"]]
        if set(value) == {"tuple"} and isinstance(value["tuple"], list):
            return tuple(_from_json(v, tensors) for v in value["tuple"])
        if set(value) == {"dict"} and isinstance(value["dict"], list):
            return {k: _from_json(v, tensors) for k, v in value["dict"]}
        raise ValueError(f"unexpected entry {sorted(value)[:3]} in the optimizer state")
    return value


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage: clone so tied weights are saved as separate tensors.
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def rng_state() -> dict[str, Any]:
    import random

    py = random.getstate()
    out = {"torch": torch.get_rng_state().tolist(), "python": [py[0], list(py[1]), py[2]]}
    if torch.cuda.is_available():
        out["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(saved: dict[str, Any]) -> None:
    import random

    torch.set_rng_state(torch.tensor(saved["torch"], dtype=torch.uint8))
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in saved["cuda"]])

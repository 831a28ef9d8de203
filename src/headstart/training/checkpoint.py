"""Training checkpoints: everything needed to continue a fit exactly where it stopped.

``DIR/checkpoint/`` holds ``model.safetensors`` (current weights), ``best.safetensors`` (the
best weights so far, for restore-best), ``optimizer.pt`` (optimizer + scheduler state:
tensors and numbers only, read back with ``weights_only=True``) and ``state.json`` (epoch,
step, phase, early-stopping state, which parameters train, RNG states, and a fingerprint of
the data and configuration so a resume cannot silently mix two different fits). The folder
is written beside the old one and renamed into place, so a kill at any moment leaves either
the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from headstart.atomic import swap_into_place
from headstart.errors import ConfigError

NAME = "checkpoint"


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / NAME


def has_checkpoint(run_dir: str | Path) -> bool:
    return (checkpoint_path(run_dir) / "state.json").is_file()


def save_checkpoint(
    run_dir: str | Path,
    *,
    model_state: dict[str, torch.Tensor],
    best_state: dict[str, torch.Tensor] | None,
    optimizer_state: dict[str, Any],
    state: dict[str, Any],
) -> None:
    from safetensors.torch import save_file

    final = checkpoint_path(run_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{NAME}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file(_contiguous(model_state), str(tmp / "model.safetensors"))
        if best_state is not None:
            save_file(_contiguous(best_state), str(tmp / "best.safetensors"))
        torch.save(optimizer_state, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(state))
        swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """The saved pieces: ``model``, ``best`` (or None), ``optimizer``, ``state``."""
    from safetensors.torch import load_file

    folder = checkpoint_path(run_dir)
    if not (folder / "state.json").is_file():
        raise ConfigError(f"{run_dir} has no checkpoint to resume from (no {NAME}/state.json).")
    best = folder / "best.safetensors"
    return {
        "model": load_file(str(folder / "model.safetensors")),
        "best": load_file(str(best)) if best.is_file() else None,
        # Written by headstart itself; weights_only=True still refuses anything but tensors/numbers.
        "optimizer": torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True),
        "state": json.loads((folder / "state.json").read_text()),
    }


def remove_checkpoint(run_dir: str | Path) -> None:
    shutil.rmtree(checkpoint_path(run_dir), ignore_errors=True)


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

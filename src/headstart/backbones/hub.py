"""Reaching the Hugging Face hub, and failing fast with a useful message when it can't be reached."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from headstart.errors import BackboneError

OFFLINE_HINT = (
    "Offline, use an embedded backbone (minilm, efficientnet_lite0; see `headstart backbones`), "
    "a local folder saved with save_pretrained (config.json + model.safetensors), or an "
    "architecture with a local checkpoint: --backbone timm:ARCH --weights FILE.safetensors."
)


def _offline_env() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached, or ``None`` when it may be.

    Without this check a download from a machine with no network retries for about a
    minute before failing; a DNS lookup tells the same thing in milliseconds.
    """
    if _offline_env():
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # a proxy resolves names for us
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        return f"{host} cannot be reached ({e})"
    return None


def cached_hub_file(repo_id: str, filename: str) -> str | None:
    """A file of a hub repository already in the local Hugging Face cache, if any."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return found if isinstance(found, str) else None


def hub_error(what: str, error: Exception) -> BackboneError:
    return BackboneError(f"could not load {what}: {type(error).__name__}: {str(error)[:300]}. {OFFLINE_HINT}")


PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth",
                   "pytorch_model.pt", "pytorch_model.pth")


def require_safetensors(folder: Path, kind: str = "transformers") -> None:
    """Refuse a local model folder whose weights are not in safetensors files.

    headstart never unpickles a file it is given (unpickling can run arbitrary code), so a
    folder with only ``pytorch_model.bin`` (or ``*.pt``/``*.pth``) is refused with the
    one-line conversion, instead of being handed to ``torch.load``.
    """
    if (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file():
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.name in PICKLED_WEIGHTS or p.suffix in (".bin", ".pt", ".pth"))
    found = f"holds its weights as {', '.join(pickled[:3])} (a pickle)" if pickled else "has no model.safetensors"
    if kind == "timm":
        convert = (f"python -c \"import torch, safetensors.torch as s; s.save_file(torch.load('{folder}/"
                   f"{pickled[0] if pickled else 'pytorch_model.bin'}', weights_only=True), '{folder}/model.safetensors')\"")
    else:
        convert = (f"python -c \"from transformers import AutoModel; AutoModel.from_pretrained('{folder}')"
                   f".save_pretrained('{folder}', safe_serialization=True)\"")
    raise BackboneError(
        f"{folder} {found}; headstart loads weights from a folder you give it only from .safetensors files "
        f"(it never unpickles them: unpickling can run code). If you trust the files, convert them once: {convert}"
    )

"""Reaching the Hugging Face hub, and failing fast with a useful message when it can't be reached."""

from __future__ import annotations

import os
import socket
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

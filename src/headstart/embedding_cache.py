"""A content-addressed, on-disk cache of feature vectors.

Layout: ``ROOT/<backbone identity>/shard-*.safetensors``. The identity is a hash of the
backbone's weights and preprocessing, so a changed model or preprocessing never reads
stale vectors. Each shard holds ``keys`` (the items' sha256 digests, N×32 bytes) and
``embeddings`` (N×D float32), plus a sha256 of both in its metadata: a shard that fails to
parse or to verify is deleted and its items recomputed, never trusted. Shards are written
with :func:`headstart.atomic.write_file` (a temporary file renamed into place), so readers never
see half a shard; temporary files that killed processes left behind are removed on the next write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from headstart.atomic import clean_stale, write_file
from headstart.errors import CacheError

logger = logging.getLogger(__name__)

FORMAT = "headstart-embeddings-v1"
_COMPACT_AFTER = 32  # merge shards when a backbone has more than this many


def default_cache_dir() -> Path:
    """``$HEADSTART_CACHE``, else ``$XDG_CACHE_HOME/headstart``, else ``~/.cache/headstart``."""
    if os.environ.get("HEADSTART_CACHE"):
        return Path(os.environ["HEADSTART_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "headstart"


def _digest(keys: np.ndarray, embeddings: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(keys).tobytes())
    h.update(np.ascontiguousarray(embeddings).tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """Feature vectors by (backbone identity, item sha256).

    Args:
        root: the cache folder; ``None`` uses :func:`default_cache_dir`.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self._tidied: set[Path] = set()  # folders already rid of abandoned temporary files

    def _dir(self, identity: str) -> Path:
        return self.root / "embeddings" / identity[:32]

    def lookup(self, identity: str, item_hashes: list[str]) -> dict[str, np.ndarray]:
        """Cached vectors for the given items (missing ones are simply absent)."""
        wanted = set(item_hashes)
        found: dict[str, np.ndarray] = {}
        for shard in self._shards(identity):
            loaded = self._read_shard(shard)
            if loaded is None:
                continue
            keys, embeddings = loaded
            for i, key in enumerate(keys):
                hexkey = key.tobytes().hex()
                if hexkey in wanted:
                    found[hexkey] = embeddings[i]
        return found

    def store(self, identity: str, item_hashes: list[str], embeddings: np.ndarray, describe: dict[str, Any]) -> None:
        """Add vectors for items (one shard, written atomically)."""
        if len(item_hashes) == 0:
            return
        folder = self._dir(identity)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if folder not in self._tidied:
                clean_stale(folder)
                self._tidied.add(folder)
            info = folder / "backbone.json"
            if not info.exists():
                write_file(info, json.dumps({"identity": identity, **describe}, indent=2, default=str))
        except OSError as e:
            raise CacheError(
                f"cannot write the embedding cache at {self.root}: {_reason(e)}. Point --cache-dir "
                "(or HEADSTART_CACHE) at a writable folder, or pass --no-cache."
            ) from e
        keys = np.frombuffer(b"".join(bytes.fromhex(h) for h in item_hashes), dtype=np.uint8).reshape(-1, 32)
        self._write_shard(folder / f"shard-{uuid.uuid4().hex}.safetensors", keys, np.asarray(embeddings, np.float32))
        if len(self._shards(identity)) > _COMPACT_AFTER:
            self.compact(identity)

    def compact(self, identity: str) -> None:
        """Merge a backbone's shards into one (duplicates dropped)."""
        shards = self._shards(identity)
        merged: dict[bytes, np.ndarray] = {}
        for shard in shards:
            loaded = self._read_shard(shard)
            if loaded is not None:
                for key, emb in zip(*loaded):
                    merged[key.tobytes()] = emb
        if not merged:
            return
        keys = np.frombuffer(b"".join(merged), dtype=np.uint8).reshape(-1, 32)
        self._write_shard(self._dir(identity) / f"shard-{uuid.uuid4().hex}.safetensors", keys,
                          np.stack(list(merged.values())))
        for shard in shards:
            shard.unlink(missing_ok=True)

    def info(self) -> list[dict[str, Any]]:
        """One row per backbone: name, items, bytes, shards."""
        rows = []
        base = self.root / "embeddings"
        if not base.is_dir():
            return rows
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            meta: dict[str, Any] = {}
            if (folder / "backbone.json").is_file():
                try:
                    meta = json.loads((folder / "backbone.json").read_text())
                except (OSError, ValueError):
                    meta = {}
            shards = sorted(folder.glob("shard-*.safetensors"))
            n_items = 0
            for shard in shards:
                loaded = self._read_shard(shard)
                n_items += 0 if loaded is None else len(loaded[0])
            rows.append({
                "identity": folder.name,
                "backbone": meta.get("backbone", "?"),
                "feature_dim": meta.get("feature_dim"),
                "items": n_items,
                "shards": len(shards),
                "bytes": sum(p.stat().st_size for p in folder.iterdir() if p.is_file()),
            })
        return rows

    def clear(self, backbone: str | None = None) -> int:
        """Delete cached vectors (all, or one backbone's by name or identity); returns folders removed."""
        base = self.root / "embeddings"
        if not base.is_dir():
            return 0
        removed = 0
        for row in self.info():
            if backbone is None or backbone in (row["backbone"], row["identity"]):
                shutil.rmtree(base / row["identity"], ignore_errors=True)
                removed += 1
        return removed

    def _shards(self, identity: str) -> list[Path]:
        folder = self._dir(identity)
        return sorted(folder.glob("shard-*.safetensors")) if folder.is_dir() else []

    def _read_shard(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="np") as f:
                meta = f.metadata() or {}
                keys = f.get_tensor("keys")
                embeddings = f.get_tensor("embeddings")
            problem = None
            if meta.get("format") != FORMAT or keys.shape[0] != embeddings.shape[0]:
                problem = "not a headstart shard"
            elif meta.get("sha256") != _digest(keys, embeddings):
                problem = "checksum mismatch"
        except Exception as e:  # any parse failure means the file cannot be trusted
            problem = f"unreadable: {e}"
        if problem:
            logger.warning("embedding cache shard %s is damaged (%s); deleting it, its items will be "
                           "recomputed", path, problem)
            path.unlink(missing_ok=True)
            return None
        return keys, embeddings

    def _write_shard(self, path: Path, keys: np.ndarray, embeddings: np.ndarray) -> None:
        from safetensors.numpy import save

        data = save(
            {"keys": np.ascontiguousarray(keys), "embeddings": np.ascontiguousarray(embeddings)},
            metadata={"format": FORMAT, "sha256": _digest(keys, embeddings)},
        )
        try:
            write_file(path, data)
        except OSError as e:
            raise CacheError(f"cannot write {path}: {_reason(e)}. Use --cache-dir or --no-cache.") from e


def _reason(e: OSError) -> str:
    """The OS's words for a failed write (an OutputError keeps them in ``reason``)."""
    return getattr(e, "reason", None) or e.strerror or str(e)

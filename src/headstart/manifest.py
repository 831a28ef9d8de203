"""The one reader and writer of headstart's JSON manifests (bundles, checkpoints).

A manifest is a JSON object in a folder. It names its ``format`` and ``format_version``, lists
the folder's files under ``files`` (name -> sha256 and size) and carries the sha256 of its own
canonical JSON (``manifest_sha256``: an integrity check against damage and accidental edits, not
a signature). :func:`write_manifest` hashes the files and writes it; :func:`read_manifest_file`
parses it defensively (size, UTF-8, nesting, types) and verifies it: the digest, and every listed
file, which must be a plain name inside the folder (no path, no ``..``, no link leading out) whose
sha256 matches. Whatever the bytes, reading gives a manifest or a :class:`HeadstartError`.

Example:
    >>> write_manifest(folder, {"format": "x", "format_version": 1}, files=["model.safetensors"])  # doctest: +SKIP
    >>> read_manifest_file(folder, format="x", version=1)                                       # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from headstart.atomic import recover, write_file
from headstart.errors import BundleError, HeadstartError

MANIFEST = "headstart.json"
MAX_MANIFEST_BYTES = 256 << 20  # far above any real manifest; refuses a file that would exhaust memory
# Files a manifest may list are data, never code.
ALLOWED_SUFFIXES = (".safetensors", ".json", ".onnx", ".html", ".svg", ".png")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, without its own ``manifest_sha256`` field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def check_file_name(name: Any, folder: Path, *, error: type[HeadstartError] = BundleError) -> str:
    """``name`` if it is a plain file name a manifest may list (no folder part, an allowed suffix)."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or "\0" in name or not name.endswith(ALLOWED_SUFFIXES)):
        raise error(f"{folder} lists {name!r}, which it may not hold (only plain .safetensors/.json/.onnx/"
                    ".html/.svg/.png names inside the folder); refusing to load it.")
    return name


def contained_file(folder: str | Path, name: Any, *, error: type[HeadstartError] = BundleError) -> Path:
    """The path of file ``name`` inside ``folder``, refusing any name or link that leads out of it."""
    folder = Path(folder)
    check_file_name(name, folder, error=error)
    path = folder / name
    if path.is_symlink():
        raise error(f"{path} is a symbolic link; a headstart folder holds its own files, so it is refused. "
                    "Replace the link by the file itself.")
    if not path.is_file():
        raise error(f"{folder} is incomplete: {name} is missing.")
    return path


def load_json(path: Path, *, what: str, error: type[HeadstartError] = BundleError) -> Any:
    """Parse a JSON file defensively: size-bounded, strict UTF-8, any nesting."""
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise error(f"{path} is {size / 1e6:.0f} MB, too large for a {what} manifest; the {what} is "
                        "damaged: restore or rewrite it.")
        raw = path.read_bytes()
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or e}.") from e
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
        raise error(f"{path} is not valid JSON ({reason}); the {what} is damaged: restore it from a good "
                    "copy or write it again.") from None


def write_manifest(folder: str | Path, manifest: dict[str, Any], *, files: Iterable[str],
                   name: str = MANIFEST) -> dict[str, Any]:
    """List ``files`` (inside ``folder``) with their sha256, add the digest, write ``name``.

    ``manifest`` is updated in place (``files``, ``manifest_sha256``) and returned.
    """
    folder = Path(folder)
    manifest.pop("manifest_sha256", None)
    manifest["files"] = {}
    for file in files:
        path = contained_file(folder, file)
        manifest["files"][file] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    canonical = json.loads(json.dumps(manifest, default=str))
    manifest["manifest_sha256"] = manifest_digest(canonical)
    write_file(folder / name, json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def read_manifest_file(folder: str | Path, *, format: str, version: int, name: str = MANIFEST,
                       verify: bool = True, what: str = "bundle", error: type[HeadstartError] = BundleError,
                       fix: str = "pass the folder `fit --out` wrote") -> dict[str, Any]:
    """The manifest ``name`` in ``folder``, after checking its format, version and (``verify``) hashes.

    Args:
        folder: the folder the manifest describes.
        format: the expected ``format`` value.
        version: the newest ``format_version`` this code reads.
        name: the manifest's file name.
        verify: check the digest and every listed file's sha256.
        what: what the folder is, for messages ("bundle", "checkpoint").
        error: the exception class raised.
        fix: what to do when the folder holds no manifest.

    Raises:
        HeadstartError: ``error``, naming the file, what is wrong and what to do.
    """
    folder = Path(folder)
    recover(folder)  # a write interrupted while replacing the folder is finished or rolled back first
    path = folder / name
    if not folder.is_dir() or not path.is_file():
        raise error(f"{folder} is not a headstart {what} (no {name}); {fix}.")
    manifest = load_json(path, what=what, error=error)
    if not isinstance(manifest, dict) or manifest.get("format") != format:
        raise error(f"{path} is not a headstart {what} manifest (its 'format' is not {format!r}).")
    found = manifest.get("format_version")
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        raise error(f"{path} has no valid 'format_version' ({found!r}); the {what} is damaged.")
    if found > version:
        raise error(f"{folder} has {what} format {found}, newer than this headstart reads ({version}); "
                    "upgrade headstart (pip install -U headstart).")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(e, dict) for e in files.values()):
        raise error(f"{path} has no valid 'files' list; the {what} is damaged.")
    for file in files:
        check_file_name(file, folder, error=error)
    if verify:
        verify_manifest(folder, manifest, name=name, what=what, error=error)
    return manifest


def verify_manifest(folder: Path, manifest: dict[str, Any], *, name: str = MANIFEST, what: str = "bundle",
                    error: type[HeadstartError] = BundleError) -> None:
    """Check the manifest's digest and the sha256 of every file it lists."""
    try:
        digest = manifest_digest(manifest)
    except (RecursionError, ValueError) as e:
        raise error(f"{folder / name} cannot be checked ({type(e).__name__}); the {what} is damaged.") from None
    if manifest.get("manifest_sha256") != digest:
        raise error(f"{folder / name} was edited or damaged after the {what} was written (its content does "
                    f"not match its recorded sha256). Write the {what} again, or restore it from a good copy.")
    for file, entry in manifest["files"].items():
        path = contained_file(folder, file, error=error)
        if file_sha256(path) != entry.get("sha256"):
            raise error(f"{path} does not match the sha256 recorded in {name}: it was modified or damaged "
                        f"after the {what} was written. Write the {what} again, or restore it from a good copy.")

"""Writing files and folders so that readers see the old version or the new one, never half of one.

Every bundle, checkpoint, export, report and cache entry headstart writes goes through here.

A folder (:func:`atomic_folder`) is written into ``.NAME.tmp-PID-HOST-RAND`` beside ``NAME``.
When it is complete, its files are flushed to disk and the folder is renamed
``.NAME.new-PID-HOST-RAND`` (the name says "complete"); then ``NAME`` (if any) is renamed
``.NAME.old-...``, the new folder is renamed ``NAME`` and the old one deleted. A file
(:func:`write_file`) is written to ``.NAME.tmp-...`` and renamed over ``NAME``.

A process killed in the middle leaves one of those hidden siblings. The next command that reads
or writes ``NAME`` calls :func:`recover`, which finishes the job: a complete ``.new`` folder takes
``NAME``'s place (the swap is finished); without one, a lone ``.old`` folder goes back to ``NAME``
when ``NAME`` is missing (the swap is rolled back); temporary entries whose writer is dead (its PID
is in the name) or that are older than :data:`STALE_AFTER_S` are deleted.

Everything is created with the process's umask, like any file a tool writes: some writers (e.g.
safetensors) create 0600 files, so the folder writer resets the modes before the swap.

Example:
    >>> with atomic_folder("runs/spam") as tmp:          # doctest: +SKIP
    ...     (tmp / "headstart.json").write_text("{}")
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from headstart.errors import HeadstartError, OutputError

logger = logging.getLogger(__name__)

STALE_AFTER_S = 24 * 3600  # a temporary entry this old is abandoned, whoever wrote it
_SETTLE_S = 60  # an owner we cannot check (another host) has finished a swap after this long
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# .NAME.KIND-PID-HOST-RAND; older headstart versions wrote .NAME.KIND-RAND (no owner).
_SIBLING = re.compile(
    r"^\.(?P<name>.+)\.(?P<kind>tmp|new|old|export)-(?:(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-)?(?P<rand>[0-9a-f]{8})$"
)
_UMASK_LOCK = threading.Lock()


@dataclass
class _Sibling:
    path: Path
    name: str
    kind: str
    pid: int | None
    host: str | None

    @property
    def age(self) -> float:
        try:
            return time.time() - self.path.lstat().st_mtime
        except OSError:
            return 0.0


def is_temporary(name: str) -> bool:
    """Whether a folder entry's name is one of this module's temporary names."""
    return _SIBLING.match(name) is not None


# ------------------------------------------------------------------ writing
@contextlib.contextmanager
def atomic_folder(final: str | Path, *, start_from: str | Path | None = None) -> Iterator[Path]:
    """Write a folder that appears at ``final`` complete, or not at all.

    Yields an empty temporary folder beside ``final`` (or a copy of ``start_from``). When the
    block ends without an exception, the files are given umask permissions and flushed to disk,
    and the folder replaces ``final`` by renames. On an exception it is deleted and ``final`` is
    left as it was.

    Raises:
        OutputError: the folder cannot be written there (the message names the path and the fix);
            it is also an ``OSError``.

    Example:
        >>> with atomic_folder("runs/spam") as tmp:           # doctest: +SKIP
        ...     (tmp / "notes.json").write_text("{}")
    """
    final = _real(Path(final))
    if os.path.lexists(final) and not final.is_dir():
        raise OutputError(f"cannot write the folder {final}: a file of that name is in the way. "
                          "Choose another path, or move that file.")
    _make_parent(final)
    recover(final)
    rand = uuid.uuid4().hex[:8]
    tmp, ready = _temporary(final, "tmp", rand), _temporary(final, "new", rand)
    try:
        if start_from is not None:
            shutil.copytree(start_from, tmp, symlinks=True, ignore=lambda _d, names: [n for n in names if is_temporary(n)])
        else:
            tmp.mkdir()
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _output_error(final, e) from e
    try:
        yield tmp
        _settle(tmp)
        os.rename(tmp, ready)  # complete: from here on, recovery finishes the swap
        swap_into_place(ready, final)
    except BaseException as e:
        for path in (tmp, ready):
            shutil.rmtree(path, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, HeadstartError):
            raise _output_error(final, e) from e
        raise


def swap_into_place(ready: Path, final: Path) -> None:
    """Replace ``final`` (if any) by the complete folder ``ready`` with renames only."""
    old = None
    if os.path.lexists(final):
        old = _temporary(final, "old", uuid.uuid4().hex[:8])
        os.rename(final, old)
    try:
        os.rename(ready, final)
    except BaseException:
        if old is not None:
            os.rename(old, final)
        raise
    _fsync_dir(final.parent)
    if old is not None:
        _remove(old)


def write_file(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (``str`` as UTF-8) to ``path`` through a temporary file and a rename.

    The file gets umask permissions; missing parent folders are created.

    Raises:
        OutputError: the file cannot be written there (the message names the path and the fix).

    Example:
        >>> write_file("runs/animals/report.html", "<html>...</html>")  # doctest: +SKIP
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder. Give a file path (e.g. {path / 'out.html'}).")
    _make_parent(path)
    recover(path)
    tmp = _temporary(path, "tmp", uuid.uuid4().hex[:8])
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, HeadstartError):
            raise _output_error(path, e) from e
        raise
    _fsync_dir(path.parent)
    return path


def check_writable(path: str | Path, *, fix: str = "choose another location") -> Path:
    """Fail fast, before any work, when ``path`` (a file or folder to be written) cannot be.

    Creates and removes a temporary folder where ``path`` would be created (the nearest existing
    folder above it) and, when ``path`` is an existing folder, inside it: the only test that
    catches read-only and virtual file systems (``/proc``) and permissions for every user.

    Args:
        path: the file or folder that will be written.
        fix: what the user can do instead, e.g. ``"choose another --out folder"``.

    Raises:
        OutputError: naming the path, the reason and ``fix``.
    """
    path = Path(path)
    target = Path(os.path.abspath(path))
    anchor = target.parent
    while not os.path.lexists(anchor):
        anchor = anchor.parent
    if not anchor.is_dir():
        raise OutputError(f"cannot write {path}: {anchor} is a file, not a folder, so nothing can be created "
                          f"under it; {fix}.")
    for folder in [anchor] + ([target] if target.is_dir() else []):
        probe = _temporary(folder / (target.name or "probe"), "tmp", uuid.uuid4().hex[:8])
        try:
            probe.mkdir()
            (probe / "probe").write_bytes(b"")
        except OSError as e:
            raise OutputError(f"cannot write {path}: nothing can be created in {folder} "
                              f"({e.strerror or e}); {fix}, or make {folder} writable.") from e
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    return path


# ------------------------------------------------------------------ recovery
def recover(final: str | Path) -> None:
    """Finish or roll back an interrupted replacement of ``final``; delete abandoned temporaries.

    Safe to call at any time: entries whose writer is still running are left alone. Problems
    (a read-only folder...) are logged, never raised: recovery is a courtesy to the next reader.
    """
    final = Path(final)
    try:
        _recover(final)
    except OSError as e:
        logger.warning("could not tidy up after an interrupted write of %s: %s", final, e)


def clean_stale(folder: str | Path) -> None:
    """:func:`recover` every name in ``folder`` that has temporary siblings (e.g. a cache folder)."""
    folder = Path(folder)
    try:
        names = {m.group("name") for m in map(_SIBLING.match, os.listdir(folder)) if m}
    except OSError:
        return
    for name in sorted(names):
        recover(folder / name)


def _recover(final: Path) -> None:
    siblings = _siblings(final)
    if not siblings:
        return
    settled = [s for s in siblings if _settled(s)]
    news = sorted((s for s in settled if s.kind == "new"), key=lambda s: -s.age)
    olds = sorted((s for s in settled if s.kind == "old"), key=lambda s: -s.age)
    if news:
        latest = news.pop()  # the most recent complete version wins
        swap_into_place(latest.path, final)
        logger.warning("%s: finished replacing it with the complete version an interrupted write left in %s",
                       final, latest.path.name)
        olds_to_drop = olds
    elif olds and not os.path.lexists(final):
        latest = olds.pop()
        os.rename(latest.path, final)
        logger.warning("%s was missing after an interrupted write; restored the previous version from %s",
                       final, latest.path.name)
        olds_to_drop = olds
    else:
        olds_to_drop = olds if os.path.lexists(final) else []
    for s in news + olds_to_drop + [s for s in siblings if s.kind in ("tmp", "export") and _stale(s)]:
        logger.info("removing %s, left by an interrupted write", s.path)
        _remove(s.path)


def _siblings(final: Path) -> list[_Sibling]:
    parent = final.parent
    prefix = f".{final.name}."
    try:
        names = [n for n in os.listdir(parent) if n.startswith(prefix)]
    except OSError:
        return []
    out = []
    for n in names:
        m = _SIBLING.match(n)
        if m and m.group("name") == final.name:
            pid = int(m.group("pid")) if m.group("pid") else None
            out.append(_Sibling(parent / n, final.name, m.group("kind"), pid, m.group("host")))
    return out


def _owner_alive(s: _Sibling) -> bool | None:
    """True / False when the writing process is / is not running; None when it cannot be told."""
    if s.pid is None or s.host != _HOST or os.name == "nt":
        return None
    if s.pid == os.getpid():
        return True
    try:
        os.kill(s.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OSError:
        return None
    return True


def _stale(s: _Sibling) -> bool:
    """A temporary (incomplete) entry nobody will finish."""
    return _owner_alive(s) is False or s.age > STALE_AFTER_S


def _settled(s: _Sibling) -> bool:
    """A ``.new`` / ``.old`` entry whose swap is over (its writer is gone)."""
    alive = _owner_alive(s)
    if alive is None:
        return s.pid is None or s.age > _SETTLE_S  # an old headstart's, or another host's
    return not alive or s.age > STALE_AFTER_S


# ------------------------------------------------------------------ helpers
def _temporary(final: Path, kind: str, rand: str) -> Path:
    return final.parent / f".{final.name}.{kind}-{os.getpid()}-{_HOST}-{rand}"


def _real(path: Path) -> Path:
    """A symlinked destination is written where the link points (the link keeps working)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _output_error(path, e) from e


def _output_error(path: Path, e: OSError) -> OutputError:
    reason = e.strerror or str(e)
    if getattr(e, "errno", None) == 28:  # ENOSPC
        fix = "free some space or choose another location"
    else:
        fix = "choose another location, or make its folder writable"
    error = OutputError(f"cannot write {path}: {reason}; {fix}.")
    error.reason = reason
    return error


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:  # the portable way changes it for a moment
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _settle(folder: Path) -> None:
    """Give everything under ``folder`` umask permissions and flush it to disk."""
    mask = _umask()
    for root, _dirs, files in os.walk(folder):  # symlinked folders are not entered
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            os.chmod(path, (0o777 if st.st_mode & 0o111 else 0o666) & ~mask)
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()

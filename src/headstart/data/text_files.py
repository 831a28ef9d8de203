"""Plain text files and streams: one text per line, decoded the same way wherever they come from."""

from __future__ import annotations

import logging
from pathlib import Path

from headstart.errors import DataError

logger = logging.getLogger(__name__)


def decode_lines(raw: bytes, source: str) -> list[tuple[int, str]]:
    """Non-blank lines of UTF-8 bytes with their 1-based line numbers.

    A byte-order mark is dropped. Lines that are not valid UTF-8 are kept with the undecodable
    bytes replaced by U+FFFD (a text model still reads the rest of the line), and a warning
    names them and says how to convert the file, so a file and the same bytes on stdin give the
    same result.
    """
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{source} is UTF-16 text; headstart reads UTF-8. Convert it, e.g. "
                        "`iconv -f UTF-16 -t UTF-8 in.txt > out.txt`.")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines: list[tuple[int, str]] = []
    damaged: list[int] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("utf-8", errors="replace")
            damaged.append(number)
        if text.strip():
            lines.append((number, text))
    if damaged:
        shown = ", ".join(map(str, damaged[:5])) + (f" and {len(damaged) - 5} more" if len(damaged) > 5 else "")
        logger.warning(
            "%s: line%s %s %s not valid UTF-8; the undecodable bytes were replaced with '\ufffd'. Convert the "
            "input to UTF-8 (e.g. `iconv -f WINDOWS-1252 -t UTF-8 in.txt > out.txt`) for exact texts.",
            source, "s" if len(damaged) > 1 else "", shown, "are" if len(damaged) > 1 else "is",
        )
    return lines


def read_text_lines(path: str | Path) -> list[tuple[int, str]]:
    """The non-blank lines of a text file (see :func:`decode_lines`)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {p}: {e.strerror or e}. Check the path and permissions.") from e
    return decode_lines(raw, str(p))

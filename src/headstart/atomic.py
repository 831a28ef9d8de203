"""Writing folders so that readers see the old one or the new one, never half of one."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def swap_into_place(tmp: Path, final: Path) -> None:
    """Replace ``final`` (if any) by the fully written folder ``tmp`` with renames only."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

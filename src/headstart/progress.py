"""How long-running library work reports progress without printing.

The library calls a :class:`ProgressReporter`; the CLI passes one that draws rich
progress bars on stderr, and ``--quiet`` (or the Python API by default) passes none.
"""

from __future__ import annotations

from typing import Protocol


class ProgressReporter(Protocol):
    def start(self, description: str, total: int) -> None:
        """A new task of ``total`` steps begins."""

    def advance(self, n: int = 1) -> None:
        """``n`` more steps are done."""

    def finish(self) -> None:
        """The current task is over."""


class NullProgress:
    """Reports nothing."""

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass

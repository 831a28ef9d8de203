"""A training loop's time budget: a wall-clock deadline checked between batches, not only between epochs.

An epoch of a large network on a slow or busy machine can take longer than the whole budget, so a
check at epoch boundaries alone lets a run overshoot by an epoch. The loops ask :meth:`TimeBudget.passed`
after every optimizer update, and record where the budget stopped them (:meth:`TimeBudget.stop`).
"""

from __future__ import annotations

import time
from typing import Any

import torch


class TimeBudget:
    """A ``time.monotonic()`` deadline (``None``: no budget) for one call of a training loop.

    Under ``accelerate launch`` every process must stop at the same batch (gradient synchronisation
    would otherwise wait forever on the ones that stopped), so the processes agree: one past the
    deadline stops them all. Call :meth:`passed` from every process at the same point.
    """

    def __init__(self, deadline: float | None, accelerator: Any = None) -> None:
        self.deadline, self.accelerator, self.started = deadline, accelerator, time.monotonic()

    def passed(self, ahead: float = 0.0) -> bool:
        """Whether the deadline is past (or will be, ``ahead`` seconds from now)."""
        if self.deadline is None:
            return False
        late = time.monotonic() + ahead > self.deadline
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            flag = torch.tensor([float(late)], device=self.accelerator.device)
            late = bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)
        return late

    def stop(self, result: Any, **where: Any) -> None:
        """Mark ``result`` (a ``TrainResult``) stopped by the budget, ``where`` it stopped (epoch and
        batch, or step), how long after the loop started and how far past the deadline (< 0: before it)."""
        now = time.monotonic()
        result.stopped_early = result.stopped_for_time = True
        result.stopped_at = {**where, "seconds": round(now - self.started, 3),
                             "past_deadline": round(now - (self.deadline or now), 3)}

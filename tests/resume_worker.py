"""Run in a subprocess by test_training.py: a fit that SIGKILLs itself in the middle of an epoch."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import make_texts
from headstart import TransferClassifier


def main() -> None:
    run_dir, strategy, kill_epoch, kill_step = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    seen = {"epochs": 0}

    def count_epochs(event: dict) -> None:
        seen["epochs"] += 1

    def kill_mid_epoch(event: dict) -> None:
        # Epochs are counted across phases, so a multi-phase strategy dies inside a later phase.
        if seen["epochs"] == kill_epoch and event["step"] == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)

    texts, labels = make_texts(16)
    clf = TransferClassifier(backbone="tiny-bert", strategy=strategy, epochs=4, patience=10, cache=False, random_state=5)
    clf.fit(texts, labels, run_dir=run_dir,
            callbacks={"on_epoch_end": [count_epochs], "on_batch_end": [kill_mid_epoch]})


if __name__ == "__main__":
    main()

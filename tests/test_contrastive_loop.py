"""Contrastive pair training on the shared loop (``training.loop.train_steps``).

One loop, one checkpoint format: an interrupted pair training resumes at the step it reached
and ends bit for bit where an uninterrupted run ends; the numbers are those of the former
hand-written loop (golden losses); the deadline, the callbacks and the cadence of checkpoints.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_texts
from headstart import TransferClassifier
from headstart.errors import ConfigError
from headstart.training.checkpoint import has_checkpoint, load_checkpoint
from headstart.training.loop import StepConfig, _StepCheckpoints, train_steps

CPU = torch.device("cpu")


# ------------------------------------------------------------------------------ the loop
def _dropout_model() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Linear(8, 1))


BATCHES = [torch.randn(6, 4, generator=torch.Generator().manual_seed(i)) for i in range(8)]


def _loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return model(batch).pow(2).mean()  # dropout: every step draws from the seeded RNG


def _steps(model: nn.Module, run_dir: Path | None, **kwargs: Any):
    return train_steps(model, [("all", list(model.named_parameters()), 1e-2)], BATCHES, _loss, StepConfig(),
                       seed=3, device=CPU, run_dir=run_dir, fingerprint="fit-a", **kwargs)


def _interrupt_at(step: int):
    def callback(event: dict) -> None:
        if event["step"] == step:
            raise KeyboardInterrupt

    return callback


def test_interrupted_steps_resume_where_they_stopped_bit_for_bit(tmp_path: Path) -> None:
    straight = _dropout_model()
    seen: list[dict] = []
    torch.manual_seed(123)
    random.seed(123)
    caller_torch, caller_py = torch.get_rng_state(), random.getstate()
    done = _steps(straight, tmp_path / "straight", callbacks={"on_batch_end": [seen.append]})
    assert torch.equal(torch.get_rng_state(), caller_torch) and random.getstate() == caller_py
    assert done.steps_run == 8 and [e["step"] for e in seen] == list(range(8))
    assert set(seen[0]) == {"epoch", "step", "steps", "loss"} and seen[0]["steps"] == 8
    assert [h["loss"] for h in done.history] == [e["loss"] for e in seen]

    model = _dropout_model()
    # A checkpoint every 3 steps; Ctrl-C after step 4 still writes the step it reached.
    with pytest.raises(KeyboardInterrupt):
        _steps(model, tmp_path / "run", checkpoint_every=3, callbacks={"on_batch_end": [_interrupt_at(4)]})
    assert load_checkpoint(tmp_path / "run")["state"]["result"]["steps_run"] == 5
    resumed_steps: list[int] = []
    model = _dropout_model()
    result = _steps(model, tmp_path / "run", resume=True, checkpoint_every=3,
                    callbacks={"on_batch_end": [lambda e: resumed_steps.append(e["step"])]})
    assert resumed_steps == [5, 6, 7] and result.steps_run == 8
    assert result.history == done.history  # the losses of the first run came along
    for (name, a), (_, b) in zip(model.state_dict().items(), straight.state_dict().items()):
        assert torch.equal(a, b), name
    # After the last step the checkpoint is complete: a resume runs nothing more.
    again = _steps(_dropout_model(), tmp_path / "run", resume=True, callbacks={"on_batch_end": [seen.append]})
    assert again.steps_run == 8 and len(seen) == 8


def test_a_fit_stopped_at_its_deadline_is_finished_and_other_fits_are_refused(tmp_path: Path) -> None:
    import time

    result = _steps(_dropout_model(), tmp_path / "run", deadline=time.monotonic())
    assert result.steps_run == 0 and result.stopped_for_time
    assert load_checkpoint(tmp_path / "run")["state"]["result"]["stopped_for_time"] is True
    resumed = _steps(_dropout_model(), tmp_path / "run", resume=True)
    assert resumed.steps_run == 0  # like an epoch run stopped for time: the resume does not train on
    with pytest.raises(ConfigError, match="different fit"):
        train_steps(_dropout_model(), [("all", list(_dropout_model().named_parameters()), 1e-2)], BATCHES, _loss,
                    StepConfig(), seed=3, device=CPU, run_dir=tmp_path / "run", resume=True, fingerprint="fit-b")
    with pytest.raises(ConfigError, match="checkpoint_every"):
        _steps(_dropout_model(), None, checkpoint_every=0)


def test_adaptive_checkpoints_keep_writing_under_a_tenth_of_the_time() -> None:
    clock = {"now": 0.0}
    writes: list[float] = []

    def write(rng: dict) -> None:
        writes.append(clock["now"])
        clock["now"] += 1.0  # a write takes 1 s

    writer = _StepCheckpoints(write, None, clock=lambda: clock["now"])
    writer.remember(step_done=False)
    for _ in range(40):
        clock["now"] += 0.5  # a step takes 0.5 s
        writer.remember(step_done=True)
        writer.write_if_due()
    writer.flush()
    assert writes[0] == 0.5  # the first step is written at once (nothing measured yet)
    gaps = np.diff(writes[:-1])
    assert len(writes) >= 3 and (gaps >= 10.0).all() and (gaps <= 11.5).all()


# ------------------------------------------------------------------------------ the strategy
TEXTS, LABELS = make_texts(10)
# The losses of the hand-written loop this replaced, on the same seed (recorded before the change).
GOLDEN = [0.3746244013309479, 0.3674338161945343, 0.34480828046798706, 0.2964497208595276]


def _clf(**settings: Any) -> TransferClassifier:
    # windows=1: pair training reads each text's first pair_max_length tokens, as the former loop did
    # (windowed pair training: tests/test_long_documents.py).
    return TransferClassifier(backbone="tiny-bert", strategy="contrastive", cache=False, random_state=3, windows=1,
                              strategy_params={"steps": 4, "pair_max_length": 5, "warmup": 0.5, "lr": 1e-3,
                                               **settings})


def test_pair_training_gives_the_numbers_of_the_former_loop() -> None:
    losses: list[float] = []
    clf = _clf().fit(TEXTS, LABELS, callbacks={"on_batch_end": [lambda e: losses.append(e["loss"])]})
    assert losses == pytest.approx(GOLDEN, abs=1e-5)
    details = clf.strategy_details_
    assert details["steps_run"] == 4 and details["resumed_from_step"] is None and not details["stopped_for_time"]
    assert details["pair_loss_first"] == losses[0] and details["pair_loss_last"] == losses[-1]


@pytest.mark.parametrize("settings,stop_at", [({}, 1), ({"pairing": "sampled", "max_pairs": 24, "batch_size": 4}, 3)])
def test_an_interrupted_contrastive_fit_resumes_at_its_step(settings: dict, stop_at: int, tmp_path: Path) -> None:
    straight = _clf(**settings).fit(TEXTS, LABELS, run_dir=tmp_path / "straight")
    planned = straight.strategy_details_["steps_planned"]
    with pytest.raises(KeyboardInterrupt):
        _clf(**settings).fit(TEXTS, LABELS, run_dir=tmp_path / "run",
                             callbacks={"on_batch_end": [_interrupt_at(stop_at)]})
    state = load_checkpoint(tmp_path / "run")["state"]
    assert state["result"]["steps_run"] == stop_at + 1 and state["phase"] == {"phase": "pairs"}
    steps: list[int] = []
    resumed = _clf(**settings).fit(TEXTS, LABELS, run_dir=tmp_path / "run", resume=True,
                                   callbacks={"on_batch_end": [lambda e: steps.append(e["step"])]})
    assert steps == list(range(stop_at + 1, planned))  # not from step 0, not after pair training
    assert resumed.strategy_details_["resumed_from_step"] == stop_at + 1
    assert resumed.strategy_details_["steps_run"] == planned
    assert resumed.strategy_details_["pair_loss_last"] == straight.strategy_details_["pair_loss_last"]
    for (name, a), (_, b) in zip(resumed.backbone_.state_dict().items(), straight.backbone_.state_dict().items()):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(resumed.predict_proba(TEXTS), straight.predict_proba(TEXTS))


WORKER = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from conftest import make_texts
from headstart import TransferClassifier

def kill(event):
    if event["step"] == 5:
        os.kill(os.getpid(), signal.SIGKILL)

texts, labels = make_texts(10)
TransferClassifier(backbone="tiny-bert", strategy="contrastive", cache=False, random_state=3,
                   strategy_params={{"steps": 8, "batch_size": 8}}).fit(
    texts, labels, run_dir={run!r}, callbacks={{"on_batch_end": [kill]}})
"""


def test_a_killed_contrastive_fit_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to write: the resume starts at the last (adaptive) checkpoint, past step 0."""
    code = WORKER.format(tests=str(Path(__file__).parent), run=str(tmp_path / "run"))
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert has_checkpoint(tmp_path / "run")
    reached = load_checkpoint(tmp_path / "run")["state"]["result"]["steps_run"]
    assert 1 <= reached <= 6
    params: dict[str, Any] = {"backbone": "tiny-bert", "strategy": "contrastive", "cache": False, "random_state": 3,
                              "strategy_params": {"steps": 8, "batch_size": 8}}
    resumed = TransferClassifier(**params).fit(TEXTS, LABELS, run_dir=tmp_path / "run", resume=True)
    straight = TransferClassifier(**params).fit(TEXTS, LABELS)
    assert resumed.strategy_details_["resumed_from_step"] == reached
    np.testing.assert_array_equal(resumed.predict_proba(TEXTS), straight.predict_proba(TEXTS))

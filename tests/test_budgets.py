"""Time budgets hold in wall-clock time: a deadline is checked between batches, not only between
epochs, so a slow machine cannot overrun it by an epoch; the best state so far is kept, checkpoints
and resumes stay consistent, and the results record that (and where) the budget stopped training.
The scratch baseline's budget covers its whole fit, and the proof says what budget it had.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_image
from headstart import TransferClassifier
from headstart.backbones import create_backbone
from headstart.backbones.vision import TimmBackbone
from headstart.data import assign_splits, from_memory
from headstart.evaluation import baselines as B
from headstart.evaluation.proof import _scratch_budget, prove
from headstart.heads import LinearHead
from headstart.training import budget as budget_module
from headstart.training.checkpoint import load_checkpoint
from headstart.training.loop import (
    ClassifierModel,
    Examples,
    StepConfig,
    TrainConfig,
    train,
    train_steps,
)

CPU = torch.device("cpu")


class FakeClock:
    """Stands in for ``time`` inside the budget module only: the test decides when the deadline passes."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(budget_module, "time", fake)
    return fake


def _images(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    rng = np.random.default_rng(seed)
    kinds = ["disc", "square"] * n
    return [np.asarray(make_image(k, rng)) for k in kinds], kinds


def _examples(n: int, seed: int = 0) -> Examples:
    items, kinds = _images(n, seed)
    return Examples(items, [""] * len(items), torch.tensor([int(k == "square") for k in kinds]))


def _model() -> ClassifierModel:
    backbone = create_backbone("tiny-cnn")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ClassifierModel(backbone, LinearHead(backbone.spec.feature_dim, 2))


def _pass_deadline_at(clock: FakeClock, epoch: int, step: int, seen: list[dict[str, Any]]):
    def on_batch_end(event: dict[str, Any]) -> None:
        seen.append(event)
        if event["epoch"] == epoch and event["step"] == step:
            clock.now = 100.0  # the deadline (50) passes during this batch

    return on_batch_end


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------ train (epochs)
def test_a_deadline_that_passes_mid_epoch_stops_after_that_batch(clock: FakeClock) -> None:
    model = _model()
    before = _state(model)
    seen: list[dict[str, Any]] = []
    result = train(model, [("all", list(model.named_parameters()), 1e-3)], _examples(20), None,
                   TrainConfig(epochs=3, batch_size=4, augment=False), seed=0, device=CPU, n_classes=2,
                   deadline=50.0, callbacks={"on_batch_end": [_pass_deadline_at(clock, 0, 2, seen)]})
    # 10 batches an epoch: it stopped after the third, not at the end of the epoch (or of three).
    assert [(e["epoch"], e["step"]) for e in seen] == [(0, 0), (0, 1), (0, 2)]
    assert result.stopped_for_time and result.stopped_early and result.epochs_run == 1
    assert result.stopped_at == {"epoch": 0, "batch": 3, "batches": 10, "seconds": 100.0, "past_deadline": 50.0}
    assert result.history[-1]["batches_run"] == 3 and result.history[-1]["batches"] == 10
    # Without validation data the latest weights count as the best: the three steps are kept.
    assert result.best_epoch == 0 and any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_no_deadline_and_a_distant_one_run_every_batch(clock: FakeClock) -> None:
    for deadline in (None, 1e9):
        seen: list[dict[str, Any]] = []
        model = _model()
        result = train(model, [("all", list(model.named_parameters()), 1e-3)], _examples(4), None,
                       TrainConfig(epochs=2, batch_size=4, augment=False), seed=0, device=CPU, n_classes=2,
                       deadline=deadline, callbacks={"on_batch_end": [seen.append]})
        assert len(seen) == 4 and result.epochs_run == 2
        assert not result.stopped_for_time and result.stopped_at is None
        assert all("batches_run" not in h for h in result.history)


def test_a_budget_stop_mid_epoch_keeps_the_best_state_and_a_resume_does_not_train_on(
        clock: FakeClock, tmp_path: Path) -> None:
    def run(resume: bool, seen: list[dict[str, Any]], epochs_seen: list[dict[str, Any]]):
        model = _model()
        start = _state(model)
        # A large learning rate: the steps the budget lets through are unlikely to beat the start.
        result = train(model, [("all", list(model.named_parameters()), 5.0)], _examples(12), _examples(4, seed=1),
                       TrainConfig(epochs=4, batch_size=4, augment=False), seed=0, device=CPU, n_classes=2,
                       run_dir=tmp_path / "run", resume=resume, fingerprint="fit-a", deadline=50.0,
                       callbacks={"on_batch_end": [_pass_deadline_at(clock, 1, 0, seen)],
                                  "on_epoch_end": [epochs_seen.append]})
        return model, start, result

    seen: list[dict[str, Any]] = []
    epochs_seen: list[dict[str, Any]] = []
    model, start, result = run(False, seen, epochs_seen)
    assert len(seen) == 6 + 1 and len(epochs_seen) == 2  # a whole epoch, then one batch of the second
    assert result.stopped_at["epoch"] == 1 and result.stopped_at["batch"] == 1 and result.epochs_run == 2
    assert [h["epoch"] for h in result.history] == [-1, 0, 1]  # the cut epoch was validated too
    best = result.history[[h["epoch"] for h in result.history].index(result.best_epoch)]
    assert best["val_loss"] == min(h["val_loss"] for h in result.history)
    if result.best_epoch == -1:  # restore-best: the start's weights are back
        assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())
    saved = load_checkpoint(tmp_path / "run")["state"]["result"]
    assert saved["stopped_for_time"] and saved["stopped_at"] == result.stopped_at
    # The stop is part of the run: a resume trains no further and hands back the same best weights.
    clock.now = 0.0
    resumed_batches: list[dict[str, Any]] = []
    resumed_epochs: list[dict[str, Any]] = []
    again, _, resumed = run(True, resumed_batches, resumed_epochs)
    assert resumed_batches == [] and resumed_epochs == []
    assert resumed.stopped_at == result.stopped_at and resumed.best_epoch == result.best_epoch
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in again.state_dict().items())


# --------------------------------------------------------------------------- train_steps (steps)
def test_train_steps_records_the_step_the_budget_stopped_at(clock: FakeClock) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 1))
    batches = [torch.randn(6, 4, generator=torch.Generator().manual_seed(i)) for i in range(8)]

    def on_batch_end(event: dict[str, Any]) -> None:
        if event["step"] == 2:
            clock.now = 100.0

    result = train_steps(model, [("all", list(model.named_parameters()), 1e-2)], batches,
                         lambda m, b: m(b).pow(2).mean(), StepConfig(), seed=0, device=CPU, deadline=50.0,
                         callbacks={"on_batch_end": [on_batch_end]})
    assert result.steps_run == 3 and result.stopped_for_time
    assert result.stopped_at == {"step": 3, "steps": 8, "seconds": 100.0, "past_deadline": 50.0}


# ------------------------------------------------------------------------------- scratch baseline
class SlowCNN(TimmBackbone):
    """tiny-cnn whose every forward pass takes 40 ms more: epochs that outlast a small budget."""

    def forward_features(self, batch: Any) -> torch.Tensor:
        time.sleep(0.04)
        return super().forward_features(batch)


def _slow_cnn() -> SlowCNN:
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model("test_efficientnet", pretrained=False, num_classes=10)
    return SlowCNN(model, name="slow-cnn", source="tests", license="Apache-2.0", offline=True,
                   build={"name": "slow-cnn"}, data_config={"input_size": (3, 32, 32), "crop_pct": 1.0})


def _splits(n_train: int, n_test: int):
    items, kinds = _images(n_train + n_test)
    data = from_memory(np.stack(items), kinds)
    data = assign_splits(data, val_fraction=0.0, test_fraction=n_test / (n_train + n_test), seed=0)
    return data.split("train"), data.split("test")


def test_the_scratch_baseline_stops_on_time_and_says_so() -> None:
    train_data, test_data = _splits(40, 10)
    classes = sorted(set(train_data.labels))
    # Unbounded, 30 epochs of 3 batches at >= 40 ms each (plus validation) would take 5 s and more.
    baseline = B.scratch(_slow_cnn(), train_data, test_data, classes, budget_seconds=1.5, seed=0, device=CPU)
    details, at = baseline.details, baseline.details["stopped_at"]
    assert details["stopped_for_time"] and details["budget_seconds"] == 1.5 and details["epochs_run"] < 30
    if at["past_deadline"] > at["seconds"]:  # the probe start (cross-validated) outlasted the budget on a busy
        assert (at["epoch"], at["batch"]) == (0, 1)  # machine: then training stops after its first batch
    else:  # otherwise within a batch (>= 40 ms, with its backward pass) of the deadline
        assert at["past_deadline"] < 1.0, at
    assert at["seconds_into_baseline"] < baseline.fit_seconds
    assert "1.5s budget" in baseline.note and "stopped training" in baseline.note
    assert baseline.proba.shape == (len(test_data), 2)


def test_the_scratch_baseline_reuses_the_random_features_without_changing_its_result() -> None:
    train_data, test_data = _splits(24, 8)
    classes = sorted(set(train_data.labels))
    backbone = create_backbone("tiny-cnn")
    rf, f_train, f_test = B.random_features(backbone, train_data, test_data, classes, seed=0, device=CPU)
    assert rf.details["seconds_per_item"] > 0 and rf.details["probe_seconds"] > 0
    known = B.KnownFeatures.of([(train_data, f_train), (test_data, f_test)], rf.details)
    assert known.lookup(test_data) is not None and np.array_equal(known.lookup(test_data), f_test)
    assert known.lookup(from_memory(np.stack(_images(1, seed=9)[0]), ["disc", "square"])) is None
    kwargs = {"budget_seconds": 600, "seed": 0, "device": CPU, "epochs": 3}
    reused = B.scratch(backbone, train_data, test_data, classes, known=known, **kwargs)
    computed = B.scratch(backbone, train_data, test_data, classes, **kwargs)
    assert not reused.details["stopped_for_time"] and reused.details["epochs_run"] == computed.details["epochs_run"]
    np.testing.assert_allclose(reused.proba, computed.proba, atol=1e-4)


def test_the_proof_records_the_scratch_budget_and_where_it_stopped() -> None:
    rng = np.random.default_rng(0)
    kinds = ["disc", "square"] * 12
    data = assign_splits(from_memory(np.stack([np.asarray(make_image(k, rng)) for k in kinds]), kinds),
                         val_fraction=0.0, test_fraction=0.25, seed=0)
    clf = TransferClassifier(backbone="tiny-cnn", cache=False, random_state=0).fit(data)
    report = prove(clf, data, scratch_budget=0.01, learning_curve=False)
    row = next(r for r in report["comparison"] if r["kind"] == "scratch")
    assert "0.01s budget" in row["note"] and row["details"]["budget_seconds"] == 0.01
    assert row["details"]["stopped_for_time"] and row["details"]["stopped_at"]["batch"] >= 1
    assert next(r for r in report["comparison"] if r["kind"] == "random-features")["details"]["seconds_per_item"] > 0


def test_the_default_scratch_budget_is_the_transfer_fits_time_with_a_floor() -> None:
    from types import SimpleNamespace

    clf = SimpleNamespace(fit_info_={})
    floor = B.SCRATCH_BUDGET_FLOOR
    for fit_seconds, expected in ((floor / 4, floor), (floor + 5.0, floor + 5.0), (400.0, 400.0)):
        clf.fit_info_ = {"fit_seconds": fit_seconds}
        assert _scratch_budget(clf, None) == expected
    assert _scratch_budget(clf, 7) == 7.0 and _scratch_budget(clf, 0) == 0.0

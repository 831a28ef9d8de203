"""The training loop: small and explicit, on ``accelerate`` (``accelerate launch`` scales it out).

One call of :func:`train` runs one phase: AdamW over the given parameter groups, a warmup +
cosine (or one-cycle / constant) schedule, gradient accumulation and clipping, mixed precision
on GPUs, per-epoch validation with early stopping and restore-best, a checkpoint after every
epoch, and callbacks (event name -> functions) for progress. Every random step is seeded, and
the caller's global RNG state is left as it was.

:func:`train_steps` is the same loop measured in optimizer steps instead of epochs, for
objectives that are not a classifier's loss (contrastive pairs): a fixed list of batches, a
``loss_step(model, batch)`` per batch, checkpoints at step granularity. Both share the
optimizer, schedule, clipping, mixed precision, seeding and checkpoint code below.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from headstart.backbones.base import Backbone, move_to
from headstart.errors import ConfigError
from headstart.training import checkpoint as ckpt
from headstart.training.budget import TimeBudget
from headstart.training.losses import class_weights, make_loss
from headstart.training.optim import make_scheduler, param_groups

logger = logging.getLogger(__name__)

Callbacks = dict[str, list[Callable[[dict[str, Any]], None]]]
LossStep = Callable[[nn.Module, Any], torch.Tensor]
MONITORS = ("val_loss", "val_accuracy")


@dataclass
class TrainConfig:
    """Hyperparameters of one training phase (see the CLI's ``fit --help`` for each)."""

    epochs: int = 10
    batch_size: int = 16
    grad_accum: int = 1
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup: float = 0.1
    clip_grad: float | None = 1.0
    patience: int = 3
    monitor: str = "val_loss"
    loss: str = "cross-entropy"
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    class_weight: str | None = None
    augment: bool = True
    mixed_precision: str = "auto"

    def __post_init__(self) -> None:
        problems = []
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be at least 1")
        if self.patience < 1:
            problems.append(f"patience={self.patience} must be at least 1")
        if self.monitor not in MONITORS:
            problems.append(f"monitor={self.monitor!r} must be one of {', '.join(MONITORS)}")
        if self.class_weight not in (None, "balanced"):
            problems.append(f"class_weight={self.class_weight!r} must be None or 'balanced'")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            problems.append(f"mixed_precision={self.mixed_precision!r} must be auto, no, fp16 or bf16")
        if problems:  # report every problem at once
            raise ConfigError("invalid training configuration: " + "; ".join(problems) + ".")


@dataclass
class StepConfig:
    """Hyperparameters of step-based training (:func:`train_steps`)."""

    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup: float = 0.1
    clip_grad: float | None = 1.0
    mixed_precision: str = "auto"

    def __post_init__(self) -> None:
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise ConfigError(f"mixed_precision={self.mixed_precision!r} must be auto, no, fp16 or bf16.")


class ClassifierModel(nn.Module):
    """Backbone + head as one module: what fine-tuning trains and bundles store."""

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, batch: Any) -> torch.Tensor:
        return self.head(self.backbone.forward_features(batch))


@dataclass
class Examples:
    """Items with integer targets, ready to batch."""

    items: list[Any]
    locators: list[str]
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, backbone: Backbone, idx: Sequence[int], augment: bool) -> tuple[Any, torch.Tensor]:
        items = [self.items[i] for i in idx]
        locators = [self.locators[i] for i in idx]
        return backbone.preprocess(items, locators, augment=augment), self.targets[list(idx)]


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float | None = None
    stopped_early: bool = False
    stopped_for_time: bool = False
    epochs_run: int = 0
    steps_run: int = 0  # optimizer steps done by train_steps (its history holds one entry per step)
    stopped_at: dict[str, Any] | None = None  # where and when the time budget stopped it (TimeBudget.stop)


def _mixed_precision(kind: str, device: torch.device) -> str:
    if kind != "auto":
        return kind
    if device.type != "cuda":
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _fire(callbacks: Callbacks | None, event: str, payload: dict[str, Any]) -> None:
    for fn in (callbacks or {}).get(event, []):
        fn(payload)


def fit_fingerprint(config: TrainConfig | StepConfig, extra: dict[str, Any]) -> str:
    """What must match for a resume to continue the same fit."""
    payload = json.dumps({"config": asdict(config), **extra}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@torch.no_grad()
def evaluate(model: ClassifierModel, data: Examples, batch_size: int, device: torch.device) -> dict[str, float]:
    """Validation loss and accuracy. The loss is plain cross-entropy whatever the training loss
    (focal, class weights, label smoothing), so early stopping judges every run on the same scale."""
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(data), batch_size):
        idx = list(range(start, min(start + batch_size, len(data))))
        inputs, targets = data.batch(model.backbone, idx, augment=False)
        logits = model(move_to(inputs, device)).float()
        targets = targets.to(device)
        total_loss += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
        correct += int((logits.argmax(1) == targets).sum())
    return {"val_loss": total_loss / max(1, len(data)), "val_accuracy": correct / max(1, len(data))}


def train(
    model: ClassifierModel,
    groups: list[tuple[str, list[tuple[str, nn.Parameter]], float]],
    train_data: Examples,
    val_data: Examples | None,
    config: TrainConfig,
    *,
    seed: int,
    device: torch.device,
    n_classes: int,
    run_dir: str | Path | None = None,
    resume: bool = False,
    phase: dict[str, Any] | None = None,
    fingerprint: str = "",
    callbacks: Callbacks | None = None,
    on_train_mode: Callable[[ClassifierModel], None] | None = None,
    deadline: float | None = None,
) -> TrainResult:
    """Train ``model`` in place; on return it holds the best weights seen on ``val_data``.

    Args:
        model: backbone + head; parameters with ``requires_grad=False`` stay frozen.
        groups: (name, named parameters, learning rate) per layer group.
        train_data, val_data: the examples to learn from and to stop early on; without
            validation data every epoch runs and the last weights are kept.
        config: the phase's hyperparameters.
        seed: seeds shuffling, augmentation and dropout.
        device: where to train.
        n_classes: number of classes (for class weights).
        run_dir: where checkpoints go (none when ``None``).
        resume: continue from ``run_dir``'s checkpoint.
        phase: recorded in the checkpoint (e.g. ``{"index": 2}``) so multi-phase strategies
            know where a resumed fit stands.
        fingerprint: must equal the checkpoint's for a resume.
        callbacks: ``{"on_epoch_end": [fn], "on_batch_end": [fn], ...}``.
        on_train_mode: called after ``model.train()`` each epoch (e.g. to keep frozen BatchNorm
            layers in eval mode).
        deadline: a ``time.monotonic()`` instant: no epoch starts that would, at the pace of the last
            one, end after it; one running when it passes stops after the optimizer step under way (and
            is validated like a whole one). The best weights are kept; ``stopped_at`` says where.
    """
    steps_per_epoch = math.ceil(math.ceil(len(train_data) / config.batch_size) / config.grad_accum)
    accelerator, wrapped, optimizer, scheduler = _prepare(model, groups, config, steps_per_epoch * config.epochs,
                                                          device)
    device = accelerator.device
    weight = class_weights(train_data.targets, n_classes).to(device) if config.class_weight == "balanced" else None
    loss_fn = make_loss(config.loss, weight=weight, label_smoothing=config.label_smoothing,
                        focal_gamma=config.focal_gamma).to(device)
    result, best_state, rng, budget = TrainResult(), None, None, TimeBudget(deadline, accelerator)
    if resume:
        saved = _resume(run_dir, fingerprint, model, optimizer, scheduler)
        best_state = saved["best"]
        result = TrainResult(**saved["state"]["result"])
        rng = saved["state"]["rng"]

    if not resume and val_data is not None:
        # The starting point (e.g. the linear probe's head) is the first candidate for "best":
        # an epoch must beat it on validation data, so training never hands back worse.
        start = evaluate(model, val_data, config.batch_size, device)
        result.best_score = start[config.monitor] * (-1 if config.monitor == "val_loss" else 1)
        result.best_epoch = -1
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        result.history.append({"epoch": -1, **start, "lr": 0.0, "improved": True, **(phase or {})})
    with _seeded(seed, rng, device):
        for epoch in range(result.epochs_run, 0 if result.stopped_early else config.epochs):
            epoch_started = time.monotonic()
            done, batches = _run_epoch(wrapped, model, optimizer, scheduler, loss_fn, accelerator, train_data,
                                       config, seed, epoch, callbacks, on_train_mode, budget)
            if val_data is not None:
                metrics = evaluate(model, val_data, config.batch_size, device)
                score = metrics[config.monitor] * (-1 if config.monitor == "val_loss" else 1)
            else:  # nothing to judge by: the latest epoch counts as the best
                metrics, score = {"val_loss": None, "val_accuracy": None}, float(epoch)
            improved = result.best_score is None or score > result.best_score + 1e-6
            if improved:
                result.best_score, result.best_epoch = score, epoch
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            result.history.append({"epoch": epoch, **metrics, "lr": scheduler.get_last_lr()[0],
                                   "improved": improved, **(phase or {}),
                                   **({"batches_run": done, "batches": batches} if done < batches else {})})
            result.epochs_run = epoch + 1
            bad = epoch - result.best_epoch
            result.stopped_early = bad >= config.patience and epoch + 1 < config.epochs
            if done < batches:  # the deadline passed mid-epoch
                budget.stop(result, epoch=epoch, batch=done, batches=batches)
                logger.info("time budget: stopped after batch %d of %d of epoch %d", done, batches, epoch + 1)
            elif not result.stopped_early and epoch + 1 < config.epochs and budget.passed(time.monotonic() - epoch_started):
                budget.stop(result, epoch=epoch, batch=batches, batches=batches)
                logger.info("time budget: stopping after epoch %d of %d", epoch + 1, config.epochs)
            if run_dir is not None and accelerator.is_main_process:
                _save(run_dir, model, best_state, optimizer, scheduler, fingerprint, phase, result)
            _fire(callbacks, "on_epoch_end", {"epoch": epoch, "epochs": config.epochs, **metrics,
                                               "improved": improved, "phase": phase or {}})
            if result.stopped_early:
                break
    if best_state is not None:
        model.load_state_dict(best_state)  # restore-best
    model.eval()
    return result


def train_steps(
    model: nn.Module,
    groups: list[tuple[str, list[tuple[str, nn.Parameter]], float]],
    batches: Sequence[Any],
    loss_step: LossStep,
    config: StepConfig,
    *,
    seed: int,
    device: torch.device,
    run_dir: str | Path | None = None,
    resume: bool = False,
    phase: dict[str, Any] | None = None,
    fingerprint: str = "",
    callbacks: Callbacks | None = None,
    deadline: float | None = None,
    checkpoint_every: int | None = None,
) -> TrainResult:
    """Train ``model`` in place with one optimizer step per batch of ``batches``, in order.

    The loop of :func:`train` measured in steps, for objectives that are not a classifier's loss
    over shuffled epochs (contrastive pairs). The caller makes every batch up front (a resumed run
    is given the same list) and ``loss_step(model, batch)`` returns one batch's loss; ``model`` is
    the module as ``accelerate`` prepared it, to be called, not kept. Without validation data,
    the last weights are kept. A resume continues at the step the checkpoint reached, and ends
    bit for bit where an uninterrupted run ends.

    Example:
        >>> named = list(backbone.named_parameters())
        >>> train_steps(backbone, [("encoder", named, 2e-5)], batches,
        ...             lambda model, batch: pair_loss(model(batch)), StepConfig(), seed=0,
        ...             device=torch.device("cpu"))  # doctest: +SKIP

    Args:
        model: the module to train; parameters with ``requires_grad=False`` stay frozen.
        groups: (name, named parameters, learning rate) per group.
        batches: one entry per optimizer step, whatever ``loss_step`` takes.
        loss_step: the scalar loss of one batch.
        config: weight decay, schedule (over ``len(batches)`` steps), clipping, mixed precision.
        seed: seeds dropout; the caller's RNG state is left as it was.
        device, run_dir, resume, phase, fingerprint: as in :func:`train`.
        callbacks: ``on_batch_end`` gets ``{"epoch": 0, "step", "steps", "loss"}`` after each step.
        deadline: a ``time.monotonic()`` instant after which no step starts; the run counts as
            finished then (a resume does not continue it, as in :func:`train`).
        checkpoint_every: steps between checkpoints. By default (``None``) as often as keeps their
            writing under a tenth of the time: the next one is due when the steps since the last
            took ten times as long as writing it did. The last step, and the step reached when a
            ``KeyboardInterrupt`` arrives between updates, are always written.
    """
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ConfigError(f"checkpoint_every={checkpoint_every} must be at least 1 (or None: adaptive).")
    accelerator, wrapped, optimizer, scheduler = _prepare(model, groups, config, len(batches), device)
    result, rng, budget = TrainResult(), None, TimeBudget(deadline, accelerator)
    if resume:
        saved = _resume(run_dir, fingerprint, model, optimizer, scheduler)
        result, rng = TrainResult(**saved["state"]["result"]), saved["state"]["rng"]
    write = None
    if run_dir is not None and accelerator.is_main_process:
        def write(rng_now: dict[str, Any]) -> None:
            _save(run_dir, model, None, optimizer, scheduler, fingerprint, phase, result, rng_now)
    writer = _StepCheckpoints(write, checkpoint_every)
    with _seeded(seed, rng, accelerator.device):
        wrapped.train()
        writer.remember(step_done=False)
        between_updates = True  # weights, optimizer and remembered RNG all stand after result.steps_run steps
        try:
            for step in range(result.steps_run, 0 if result.stopped_early else len(batches)):
                if budget.passed():
                    budget.stop(result, step=step, steps=len(batches))
                    writer.pending = True  # the stop is part of the state: a resume does not train on
                    logger.info("time budget: stopping after step %d of %d", step, len(batches))
                    break
                with accelerator.autocast():
                    loss = loss_step(wrapped, batches[step])
                    accelerator.backward(loss)
                between_updates = False
                _update(wrapped, optimizer, scheduler, accelerator, config.clip_grad)
                result.steps_run = step + 1
                result.history.append({"step": step, "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0]})
                writer.remember(step_done=True)
                between_updates = True
                writer.write_if_due()
                _fire(callbacks, "on_batch_end", {"epoch": 0, "step": step, "steps": len(batches),
                                                  "loss": result.history[-1]["loss"]})
        except KeyboardInterrupt:
            if between_updates:  # an interrupted run loses no finished step
                writer.flush()
            raise
        writer.flush()
    model.eval()
    return result


class _StepCheckpoints:
    """When :func:`train_steps` writes: every ``every`` steps, or (``None``) once the steps since the
    last write took ten times as long as writing it did (a checkpoint of a 22M-parameter encoder
    takes about a second on two CPU cores, a step of 16 texts under two)."""

    def __init__(self, write: Callable[[dict[str, Any]], None] | None, every: int | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.every, self.clock = write, every, clock
        self.pending, self.steps, self.took, self.last = False, 0, 0.0, clock()
        self.rng: dict[str, Any] = {}

    def remember(self, *, step_done: bool) -> None:
        """The run stands between steps (after a finished one): keep the RNG state to write with it."""
        if self.write is None:
            return
        self.rng = ckpt.rng_state()
        if step_done:
            self.pending, self.steps = True, self.steps + 1

    def write_if_due(self) -> None:
        if self.steps >= self.every if self.every else self.clock() - self.last >= 10 * self.took:
            self.flush()

    def flush(self) -> None:
        if self.write is None or not self.pending:
            return
        started = self.clock()
        self.write(self.rng)
        self.last = self.clock()
        self.took, self.pending, self.steps = self.last - started, False, 0


def _run_epoch(wrapped: nn.Module, model: ClassifierModel, optimizer: torch.optim.Optimizer,
               scheduler: Any, loss_fn: nn.Module, accelerator: Any, data: Examples, config: TrainConfig,
               seed: int, epoch: int, callbacks: Callbacks | None,
               on_train_mode: Callable[[ClassifierModel], None] | None, budget: TimeBudget) -> tuple[int, int]:
    """One epoch; returns (batches done, batches): fewer when the time budget ran out during it."""
    wrapped.train()
    if on_train_mode is not None:
        on_train_mode(model)
    # The order of an epoch depends only on (seed, epoch): a resumed epoch replays exactly.
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    batches = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    if accelerator.num_processes > 1:
        # Under `accelerate launch`, each process takes every n-th batch; all take the same
        # number so gradient synchronisation never waits on a process that has finished.
        per_process = len(batches) // accelerator.num_processes
        batches = batches[accelerator.process_index::accelerator.num_processes][:max(1, per_process)]
    optimizer.zero_grad(set_to_none=True)
    for step, idx in enumerate(batches):
        inputs, targets = data.batch(model.backbone, idx, augment=config.augment)
        inputs, targets = move_to(inputs, accelerator.device), targets.to(accelerator.device)
        last_of_group = (step + 1) % config.grad_accum == 0 or step + 1 == len(batches)
        sync = contextlib.nullcontext() if last_of_group else accelerator.no_sync(wrapped)
        with sync, accelerator.autocast():
            loss = loss_fn(wrapped(inputs).float(), targets) / config.grad_accum
            accelerator.backward(loss)
        if last_of_group:
            _update(wrapped, optimizer, scheduler, accelerator, config.clip_grad)
        _fire(callbacks, "on_batch_end", {"epoch": epoch, "step": step, "steps": len(batches),
                                          "loss": float(loss.detach()) * config.grad_accum})
        if last_of_group and step + 1 < len(batches) and budget.passed():
            return step + 1, len(batches)  # between optimizer steps: no accumulated gradient is lost
    return len(batches), len(batches)


# ---------------------------------------------------------------- shared by train and train_steps
def _prepare(model: nn.Module, groups: list, config: TrainConfig | StepConfig, total_steps: int,
             device: torch.device) -> tuple[Any, nn.Module, Any, Any]:
    """The accelerator, the prepared model, AdamW over ``groups`` and its schedule."""
    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision=_mixed_precision(config.mixed_precision, device),
                              cpu=device.type == "cpu")
    model.to(accelerator.device)
    optimizer = torch.optim.AdamW(param_groups(groups, config.weight_decay))
    scheduler = make_scheduler(optimizer, config.schedule, total_steps, config.warmup)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    return accelerator, wrapped, optimizer, scheduler


def _resume(run_dir: str | Path | None, fingerprint: str, model: nn.Module, optimizer: Any,
            scheduler: Any) -> dict[str, Any]:
    """Load ``run_dir``'s checkpoint into the model, optimizer and scheduler (after checking it is this fit's)."""
    saved = ckpt.load_checkpoint(run_dir)
    state = saved["state"]
    if state.get("fingerprint") != fingerprint:
        raise ConfigError(f"{run_dir} holds a checkpoint of a different fit (other data or settings); "
                          "resume with the same command, or start a new --out folder.")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if state.get("trainable") is not None and state["trainable"] != trainable:
        raise ConfigError(f"{run_dir}: the checkpoint trained other parameters than this phase does; "
                          "it cannot be resumed with these settings.")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"]["optimizer"])
    scheduler.load_state_dict(saved["optimizer"]["scheduler"])
    return saved


def _save(run_dir: str | Path, model: nn.Module, best_state: dict[str, torch.Tensor] | None, optimizer: Any,
          scheduler: Any, fingerprint: str, phase: dict[str, Any] | None, result: TrainResult,
          rng: dict[str, Any] | None = None) -> None:
    ckpt.save_checkpoint(
        run_dir, model_state=model.state_dict(), best_state=best_state,
        optimizer_state={"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        state={"fingerprint": fingerprint, "phase": phase or {}, "result": asdict(result),
               "rng": rng if rng is not None else ckpt.rng_state(),
               "trainable": [n for n, p in model.named_parameters() if p.requires_grad]},
    )


def _update(wrapped: nn.Module, optimizer: Any, scheduler: Any, accelerator: Any, clip_grad: float | None) -> None:
    """One optimizer step on the accumulated gradients: clip, step, advance the schedule, clear."""
    if clip_grad:
        accelerator.clip_grad_norm_(wrapped.parameters(), clip_grad)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


@contextlib.contextmanager
def _seeded(seed: int, rng: dict[str, Any] | None, device: torch.device) -> Iterator[None]:
    """Seed torch and Python (or restore a checkpoint's RNG states); the caller's are restored after."""
    py_state = random.getstate()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if rng is not None:
            ckpt.set_rng_state(rng)
        else:
            torch.manual_seed(seed)
            random.seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)

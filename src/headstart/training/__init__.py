"""The training loop and its parts: losses, optimizer groups and schedules, checkpoints."""

from headstart.training.loop import (
    ClassifierModel,
    Examples,
    StepConfig,
    TrainConfig,
    TrainResult,
    train,
    train_steps,
)

__all__ = ["ClassifierModel", "Examples", "StepConfig", "TrainConfig", "TrainResult", "train", "train_steps"]

"""The training loop and its parts: losses, optimizer groups and schedules, checkpoints."""

from headstart.training.loop import ClassifierModel, Examples, TrainConfig, TrainResult, train

__all__ = ["ClassifierModel", "Examples", "TrainConfig", "TrainResult", "train"]

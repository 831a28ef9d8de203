"""Transferability: estimate, before fine-tuning, how well a pre-trained model suits a task."""

from headstart.transferability.probes import knn_accuracy, linear_probe_accuracy
from headstart.transferability.ranking import Candidate, RankReport, rank
from headstart.transferability.scores import h_score, labels_to_int, leep, logme, nce

__all__ = [
    "Candidate",
    "RankReport",
    "h_score",
    "knn_accuracy",
    "labels_to_int",
    "leep",
    "linear_probe_accuracy",
    "logme",
    "nce",
    "rank",
]

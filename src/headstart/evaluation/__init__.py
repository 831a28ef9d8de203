"""Metrics and evaluation of fitted models."""

from headstart.evaluation.metrics import (
    SUMMARY_KEYS,
    check_known_labels,
    classification_metrics,
    slice_metrics,
)

__all__ = ["SUMMARY_KEYS", "check_known_labels", "classification_metrics", "slice_metrics"]

"""Classification metrics from predicted probabilities, as plain JSON-ready dicts."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from headstart.errors import DataError


def check_known_labels(y_true: Sequence[Any], classes: Sequence[Any], where: str) -> None:
    """Raise when the data has labels the model was never trained on."""
    known = set(classes)
    unknown = sorted({str(v) for v in y_true if v not in known})
    if unknown:
        raise DataError(
            f"{where} has labels the model does not know: {', '.join(unknown[:10])}. The model was "
            f"trained on: {', '.join(map(str, classes))}. Drop or relabel those items, or retrain."
        )


def classification_metrics(y_true: Sequence[Any], proba: np.ndarray, classes: Sequence[Any]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, ROC-AUC (one-vs-rest), log loss, per-class table
    and confusion matrix.

    Args:
        y_true: true labels (each one of ``classes``).
        proba: predicted probabilities, shape ``(n, len(classes))``, columns in ``classes`` order.
        classes: the model's classes.

    ROC-AUC is ``None`` (with a reason) when the data holds fewer than two classes.
    """
    from sklearn import metrics as skm

    classes = list(classes)
    y = np.array([classes.index(v) for v in y_true])
    pred = proba.argmax(axis=1)
    labels = np.arange(len(classes))
    out: dict[str, Any] = {
        "n": len(y),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": None,
        "macro_f1": float(skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "roc_auc": None,
        "log_loss": float(skm.log_loss(y, np.clip(proba, 1e-15, 1), labels=labels)),
    }
    present = np.unique(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["balanced_accuracy"] = float(skm.balanced_accuracy_score(y, pred))
    if len(present) < 2:
        out["roc_auc_note"] = "undefined: the data holds a single class"
    elif len(classes) == 2:
        out["roc_auc"] = float(skm.roc_auc_score(y, proba[:, 1]))
    else:
        # One-vs-rest, macro-averaged over the classes present in the data.
        aucs = [skm.roc_auc_score(y == k, proba[:, k]) for k in present]
        out["roc_auc"] = float(np.mean(aucs))
        if len(present) < len(classes):
            out["roc_auc_note"] = f"averaged over the {len(present)} classes present"
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, pred, labels=labels, zero_division=0
    )
    out["per_class"] = [
        {"label": c, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for c, p, r, f, s in zip(classes, precision, recall, f1, support)
    ]
    out["confusion_matrix"] = {
        "labels": classes,
        "matrix": skm.confusion_matrix(y, pred, labels=labels).tolist(),
        "rows": "true label",
        "columns": "predicted label",
    }
    return out


def slice_metrics(
    y_true: Sequence[Any], proba: np.ndarray, classes: Sequence[Any], slices: dict[str, Sequence[Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Accuracy and macro-F1 per value of each slice column, worst accuracy first."""
    from sklearn import metrics as skm

    classes = list(classes)
    y = np.array([classes.index(v) for v in y_true])
    pred = proba.argmax(axis=1)
    out: dict[str, list[dict[str, Any]]] = {}
    for column, values in slices.items():
        values = np.array([str(v) for v in values])
        rows = []
        for value in sorted(set(values)):
            mask = values == value
            rows.append({
                "value": value,
                "n": int(mask.sum()),
                "accuracy": float((pred[mask] == y[mask]).mean()),
                "macro_f1": float(skm.f1_score(y[mask], pred[mask], average="macro", zero_division=0)),
            })
        out[column] = sorted(rows, key=lambda r: (r["accuracy"], -r["n"]))
    return out


SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "log_loss")

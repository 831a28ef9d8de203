"""Classification metrics from predicted probabilities, as plain JSON-ready dicts."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from headstart.data.labels import label_indices, plain_label


def check_known_labels(y_true: Sequence[Any], classes: Sequence[Any], where: str) -> None:
    """Raise when the data has labels the model was never trained on.

    Labels match by their text (:func:`headstart.data.labels.label_key`): ``True`` from a JSON
    file is the class ``"True"`` of a bundle, ``1`` from a CSV the class ``1.0`` of an array.
    """
    label_indices(y_true, classes, where)


def classification_metrics(y_true: Sequence[Any], proba: np.ndarray, classes: Sequence[Any]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, ROC-AUC (one-vs-rest), log loss, expected
    calibration error (with its reliability bins), per-class table and confusion matrix.

    Args:
        y_true: true labels (each one of ``classes``).
        proba: predicted probabilities, shape ``(n, len(classes))``, columns in ``classes`` order.
        classes: the model's classes.

    ROC-AUC is ``None`` (with a reason) when the data holds fewer than two classes. When some of
    the model's classes have no item in the data, ``absent_classes`` names them and
    ``macro_f1_present`` averages F1 over the classes present only (``macro_f1`` counts each
    absent class as F1 0, which drags it far below the accuracy).
    """
    from sklearn import metrics as skm

    classes = [plain_label(c) for c in classes]
    y = label_indices(y_true, classes, "the evaluation data")
    pred = proba.argmax(axis=1)
    labels = np.arange(len(classes))
    present = np.unique(y)
    out: dict[str, Any] = {
        "n": len(y),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": None,
        "macro_f1": float(skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "roc_auc": None,
        "log_loss": float(skm.log_loss(y, np.clip(proba, 1e-15, 1), labels=labels)),
        "absent_classes": [classes[k] for k in labels if k not in set(present.tolist())],
    }
    out["macro_f1_present"] = (float(skm.f1_score(y, pred, labels=present, average="macro", zero_division=0))
                               if out["absent_classes"] else out["macro_f1"])
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
    out["ece"], out["calibration"] = calibration(y, proba)
    out["confusion_matrix"] = {
        "labels": classes,
        "matrix": skm.confusion_matrix(y, pred, labels=labels).tolist(),
        "rows": "true label",
        "columns": "predicted label",
    }
    return out


def calibration(y: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> tuple[float, dict[str, Any]]:
    """Expected calibration error of the top-class confidence, and the reliability-diagram bins.

    ECE = sum over equal-width confidence bins of (bin share) * |accuracy - mean confidence|
    (Guo et al. 2017). ``y`` holds class indices; bins are closed on the right, the first also
    on the left.
    """
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        mask = index == b
        count = int(mask.sum())
        conf = float(confidence[mask].mean()) if count else None
        acc = float(correct[mask].mean()) if count else None
        if count:
            ece += count / max(1, len(y)) * abs(acc - conf)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "confidence": conf, "accuracy": acc,
                     "count": count})
    return float(ece), {"bins": bins}


def slice_metrics(
    y_true: Sequence[Any], proba: np.ndarray, classes: Sequence[Any], slices: dict[str, Sequence[Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Accuracy and macro-F1 per value of each slice column, worst accuracy first.

    A slice is ``flagged`` when its accuracy sits more than two binomial standard errors (at the
    overall accuracy and the slice's size) and at least 5 points below the overall accuracy, with
    5 or more items: a gap that size is unlikely to be noise. It is the bias check: a model can
    inherit blind spots from its pretraining data.
    """
    from sklearn import metrics as skm

    y = label_indices(y_true, classes, "the evaluation data")
    pred = proba.argmax(axis=1)
    overall = float((pred == y).mean()) if len(y) else 0.0
    out: dict[str, list[dict[str, Any]]] = {}
    for column, values in slices.items():
        values = np.array([str(v) for v in values])
        rows = []
        for value in sorted(set(values)):
            mask = values == value
            n = int(mask.sum())
            accuracy = float((pred[mask] == y[mask]).mean())
            gap = overall - accuracy
            noise = 2 * np.sqrt(max(overall * (1 - overall), 1e-12) / n)
            rows.append({
                "value": value,
                "n": n,
                "accuracy": accuracy,
                "macro_f1": float(skm.f1_score(y[mask], pred[mask], average="macro", zero_division=0)),
                "gap": gap,
                "flagged": bool(n >= 5 and gap >= 0.05 and gap > noise),
            })
        out[column] = sorted(rows, key=lambda r: (r["accuracy"], -r["n"]))
    return out


SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "log_loss", "ece")

"""Cross-validated probes on frozen features: k-NN and linear-probe accuracy.

The expensive but direct baselines that the transferability scores
(:mod:`headstart.transferability.scores`) try to predict; ``headstart rank`` reports both beside
the scores. Labels must be integers (:func:`~headstart.transferability.scores.labels_to_int`).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from headstart.errors import ConfigError
from headstart.transferability.scores import _check_labels, _check_matrix, _check_positive_int

logger = logging.getLogger(__name__)


def _cv_splits(codes: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled, seeded folds; fewer folds when a class is smaller than ``folds``."""
    from sklearn.model_selection import StratifiedKFold

    folds = _check_positive_int(folds, "folds", 2)
    smallest = int(np.bincount(codes).min())
    n_splits = max(2, min(folds, smallest))
    if n_splits < folds:
        logger.info(
            "Using %d folds instead of %d: the smallest class has %d items.",
            n_splits,
            folds,
            smallest,
        )
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # A class with a single item cannot be in every fold; it is still scored once.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return list(splitter.split(np.zeros(len(codes)), codes))


def _knn_predict(
    train: np.ndarray, train_y: np.ndarray, test: np.ndarray, k: int, n_classes: int
) -> np.ndarray:
    """Cosine k-NN on unit rows: majority vote, ties broken by the summed similarity."""
    k = min(k, len(train))
    preds = np.empty(len(test), dtype=np.int64)
    for start in range(0, len(test), 1024):  # bounded memory: 1024 × N_train similarities
        sim = test[start : start + 1024] @ train.T
        nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        nn_sim = np.take_along_axis(sim, nn, axis=1)
        rows = np.repeat(np.arange(len(sim)), k)
        votes = np.zeros((len(sim), n_classes))
        sim_sum = np.zeros((len(sim), n_classes))
        np.add.at(votes, (rows, train_y[nn].ravel()), 1.0)
        np.add.at(sim_sum, (rows, train_y[nn].ravel()), nn_sim.ravel())
        tied = votes == votes.max(axis=1, keepdims=True)
        preds[start : start + len(sim)] = np.where(tied, sim_sum, -np.inf).argmax(axis=1)
    return preds


def knn_accuracy(
    features: np.ndarray, labels: np.ndarray, k: int = 5, folds: int = 5, seed: int = 0
) -> float:
    """Cross-validated accuracy of a cosine-similarity k-nearest-neighbour classifier.

    Rows are L2-normalised, so similarity is the cosine. Each test item gets the majority class
    of its k most similar training items, ties broken by the larger summed similarity. Folds
    are stratified and shuffled with ``seed``; with a class smaller than ``folds``, the number
    of folds drops to that class size (at least 2). Every item is predicted once, out of fold.

    Args:
        features: N×D features of the target items.
        labels: N integer class labels.
        k: Number of neighbours (capped at the training fold size).
        folds: Number of cross-validation folds (at least 2).
        seed: Seed of the fold shuffling.

    Returns:
        Out-of-fold accuracy in [0, 1].

    Raises:
        ConfigError: On malformed inputs, fewer than 2 classes, ``k < 1`` or ``folds < 2``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat([0, 1], 20)
        >>> knn_accuracy(np.eye(2)[y] + 0.1 * rng.normal(size=(40, 2)), y)
        1.0
    """
    f = _check_matrix(features, "features")
    codes = _check_labels(labels, len(f))
    k = _check_positive_int(k, "k", 1)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    correct = 0
    for train, test in _cv_splits(codes, folds, seed):
        preds = _knn_predict(f[train], codes[train], f[test], k, int(codes.max()) + 1)
        correct += int((preds == codes[test]).sum())
    return correct / len(codes)


def linear_probe_accuracy(
    features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0, C: float = 1.0
) -> float:
    """Cross-validated accuracy of StandardScaler + logistic regression on the features.

    The direct measure the cheaper scores approximate: scikit-learn's ``LogisticRegression(C=C,
    max_iter=1000)`` after standardisation (fitted on the training folds only). Folds as in
    :func:`knn_accuracy`; every item is predicted once, out of fold.

    Args:
        features: N×D features of the target items.
        labels: N integer class labels.
        folds: Number of cross-validation folds (at least 2).
        seed: Seed of the fold shuffling.
        C: Inverse L2 regularisation strength of the logistic regression (> 0).

    Returns:
        Out-of-fold accuracy in [0, 1].

    Raises:
        ConfigError: On malformed inputs, fewer than 2 classes, ``folds < 2`` or ``C <= 0``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat([0, 1], 20)
        >>> linear_probe_accuracy(np.eye(2)[y] + 0.1 * rng.normal(size=(40, 2)), y)
        1.0
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f = _check_matrix(features, "features")
    codes = _check_labels(labels, len(f))
    if isinstance(C, bool) or not isinstance(C, (int, float, np.number)) or not 0 < C < np.inf:
        raise ConfigError(
            f"C must be a positive number (inverse regularisation strength), got {C!r}."
        )
    correct = 0
    for train, test in _cv_splits(codes, folds, seed):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
        model.fit(f[train], codes[train])
        correct += int((model.predict(f[test]) == codes[test]).sum())
    return correct / len(codes)

"""Transferability scores: how well will frozen features (or a source classifier) transfer?

Each score looks at a target data set through a pre-trained model, without training the model,
and returns one float, higher meaning better expected transfer. All of them are pure numpy
(plus scikit-learn for Ledoit-Wolf shrinkage and the cross-validated probes).

- :func:`logme`: evidence of a Bayesian linear model on the features (You et al., 2021).
- :func:`h_score`: class separation relative to the feature covariance (Bao et al., 2019),
  with Ledoit-Wolf shrinkage by default (Ibrahim et al., 2022).
- :func:`nce`: negative conditional entropy of the target given the source labels
  (Tran et al., 2019).
- :func:`leep`: log expected empirical prediction of the source classifier (Nguyen et al., 2020).
- :func:`knn_accuracy`, :func:`linear_probe_accuracy`: cross-validated accuracies, the
  expensive but direct baselines the scores above try to predict.

Labels must be integers; :func:`labels_to_int` maps any hashable labels to ``0..C-1``. Only the
classes present count: labels ``{0, 2}`` are treated as two classes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from headstart.errors import ConfigError

__all__ = [
    "h_score",
    "knn_accuracy",
    "labels_to_int",
    "leep",
    "linear_probe_accuracy",
    "logme",
    "nce",
]

logger = logging.getLogger(__name__)

_EPS = np.finfo(np.float64).eps
_LOGME_MAX_ITER = 100  # fixed-point steps; each breaks early on a 0.1 % change of α/β


# --------------------------------------------------------------------------- input checks


def labels_to_int(labels: Iterable[Any]) -> tuple[np.ndarray, list[Any]]:
    """Map hashable labels to integer codes ``0..C-1``.

    Classes are sorted by their string form (then type name), so the mapping does not depend
    on the order items come in, and mixed types (``1`` and ``"1"``) stay distinct.

    Args:
        labels: One label per item (strings, ints, tuples... anything hashable).

    Returns:
        The codes (int64 array, one per item) and the classes, ``classes[code] == label``.
        numpy scalars are returned as Python values.

    Raises:
        ConfigError: If there are no labels or a label is not hashable.

    Example:
        >>> codes, classes = labels_to_int(["cat", "dog", "cat"])
        >>> codes.tolist(), classes
        ([0, 1, 0], ['cat', 'dog'])
    """
    if isinstance(labels, np.ndarray) and labels.ndim != 1:
        raise ConfigError(
            f"labels must be 1-D (one per item), got an array of shape {labels.shape}."
        )
    values = [v.item() if isinstance(v, np.generic) else v for v in labels]
    if not values:
        raise ConfigError("labels is empty: give one label per item.")
    try:
        classes = sorted(set(values), key=lambda v: (str(v), type(v).__name__))
    except TypeError as exc:
        raise ConfigError(f"labels must be hashable (str, int, tuple...): {exc}.") from exc
    index = {c: i for i, c in enumerate(classes)}
    codes = np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))
    return codes, classes


def _check_labels(
    labels: np.ndarray, n_items: int, name: str = "labels", min_classes: int = 2
) -> np.ndarray:
    """Validate integer labels and return them as codes ``0..C-1`` of the classes present."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ConfigError(f"{name} must be 1-D (one label per item), got shape {labels.shape}.")
    if len(labels) != n_items:
        raise ConfigError(
            f"{name} has {len(labels)} entries but there are {n_items} items: give exactly one "
            "label per row of the features / probabilities."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(
            f"{name} must be integers, got dtype {labels.dtype}: map them first with "
            "headstart.transferability.labels_to_int(labels)."
        )
    _, codes = np.unique(labels, return_inverse=True)
    n_classes = int(codes.max()) + 1
    if n_classes < min_classes:
        raise ConfigError(
            f"{name} has {n_classes} distinct class(es); at least {min_classes} are needed to "
            "score transferability."
        )
    return codes.reshape(-1).astype(np.int64)


def _check_matrix(x: np.ndarray, name: str) -> np.ndarray:
    """Validate a finite, non-empty 2-D float matrix and return it as float64."""
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a numeric N×D array: {exc}.") from exc
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ConfigError(
            f"{name} must be a 2-D array with at least 2 rows and 1 column, got shape {x.shape}."
        )
    if not np.isfinite(x).all():
        raise ConfigError(
            f"{name} contains NaN or infinite values: drop or impute those rows first."
        )
    return x


def _check_positive_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


# --------------------------------------------------------------------------- LogME


def _logme_class_evidence(
    x2: np.ndarray, res_x2: float, sigma: np.ndarray, n: int, d: int
) -> float:
    """Maximum log evidence / N of one target, by the fixed-point iteration of LogME.

    ``sigma`` holds the k non-zero eigenvalues of FᵀF, ``x2`` the squared projections of the
    target on the matching left singular vectors, ``res_x2`` the squared norm of the rest.
    """
    alpha, beta = 1.0, 1.0
    # The reference stops after 11 steps, enough when N > D; with N < D and weak features the
    # iteration is slower (30-50 steps) and 11 steps can under-estimate the evidence by 0.01/item.
    for _ in range(_LOGME_MAX_ITER):
        t = alpha / beta
        gamma = (sigma / (sigma + t)).sum()  # effective number of parameters
        m2 = (sigma * x2 / (t + sigma) ** 2).sum()  # ||m||² of the posterior mean
        res2 = (x2 / (1.0 + sigma / t) ** 2).sum() + res_x2  # ||F m - y||²
        alpha = gamma / (m2 + 1e-5)
        beta = (n - gamma) / (res2 + 1e-5)
        if abs(alpha / beta - t) / t <= 1e-3:
            break
    # log|A| with A = αI + βFᵀF (D×D): the D-k zero eigenvalues of FᵀF contribute log α each.
    logdet_a = np.log(alpha + beta * sigma).sum() + (d - len(sigma)) * np.log(alpha)
    evidence = (
        d / 2.0 * np.log(alpha)
        + n / 2.0 * np.log(beta)
        - 0.5 * logdet_a
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - n / 2.0 * np.log(2 * np.pi)
    )
    return float(evidence / n)


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME: mean log maximum evidence of a Bayesian linear model from features to labels.

    You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
    Learning", ICML 2021, with the fixed-point iteration of You et al., "Ranking and Tuning
    Pre-trained Models: A New Paradigm for Exploiting Model Hubs", JMLR 2022. Follows the
    reference implementation (github.com/thuml/LogME, ``LogME._fit_fixed_point``): per class,
    the one-vs-rest target y_c ∈ {0, 1} gets the model y = Fw + ε, w ~ N(0, α⁻¹I),
    ε ~ N(0, β⁻¹I); α and β maximise the evidence p(y_c | F, α, β) (fixed-point steps until
    α/β moves by less than 0.1 %). The score is the mean over classes of log evidence / N. One
    eigendecomposition of the smaller Gram matrix (FᵀF if N > D, else an SVD of F) is shared
    by all classes.

    Unlike the reference code, the D - rank(F) zero eigenvalues of FᵀF are counted in log|A|
    (thuml/LogME issue #23); this changes the score when N < D or F is rank deficient. And the
    iteration may run up to 100 steps instead of 11: identical whenever the reference
    converges, closer to the maximum when it does not (N < D with weak features).

    Features are used as given: no centring or standardisation is done here. LogME is not
    invariant to feature scale, so compare models on features prepared the same way.

    Args:
        features: N×D features of the target items.
        labels: N integer class labels.

    Returns:
        The LogME score (log evidence per item, usually in about [-2, 2]).

    Raises:
        ConfigError: On malformed inputs, fewer than 2 classes or all-zero features.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat([0, 1], 50)
        >>> good = np.eye(2)[y] + 0.1 * rng.normal(size=(100, 2))
        >>> logme(good, y) > logme(rng.normal(size=(100, 2)), y)
        True
    """
    f = _check_matrix(features, "features")
    codes = _check_labels(labels, len(f))
    n, d = f.shape
    targets = np.eye(codes.max() + 1)[codes]  # N×C one-vs-rest targets
    if n > d:  # D×D eigenproblem; projections on left singular vectors via Fᵀy
        sigma, v = np.linalg.eigh(f.T @ f)
        keep = sigma > sigma.max() * max(n, d) * _EPS
        sigma, v = sigma[keep], v[:, keep]
        x = (v.T @ (f.T @ targets)) / np.sqrt(sigma)[:, None]
    else:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        sigma = s**2
        keep = sigma > sigma.max() * max(n, d) * _EPS
        sigma, x = sigma[keep], u[:, keep].T @ targets
    if not keep.any():
        raise ConfigError(
            "features are all zero: LogME needs features with at least one non-zero value."
        )
    x2 = x**2
    res_x2 = np.maximum((targets**2).sum(axis=0) - x2.sum(axis=0), 0.0)
    evidences = [
        _logme_class_evidence(x2[:, c], res_x2[c], sigma, n, d) for c in range(targets.shape[1])
    ]
    return float(np.mean(evidences))


# --------------------------------------------------------------------------- H-score


def _trace_pinv_product(cov: np.ndarray, other: np.ndarray) -> float:
    """tr(pinv(cov) @ other) for symmetric PSD ``cov``, dropping numerically zero directions."""
    w, v = np.linalg.eigh(cov)
    keep = w > max(w.max(), 0.0) * len(w) * _EPS * 10
    if not keep.any():
        return 0.0
    v = v[:, keep]
    return float((np.einsum("ij,ij->j", v, other @ v) / w[keep]).sum())


def h_score(features: np.ndarray, labels: np.ndarray, shrinkage: bool = True) -> float:
    """H-score: tr(cov(f)⁻¹ cov(E[f | y])), how much of the feature variance the classes explain.

    Bao, Li, Huang, Wang, Zamir and Guibas, "An Information-Theoretic Approach to
    Transferability in Task Transfer Learning", ICIP 2019. With ``shrinkage=True`` (default),
    the shrinkage-based H-score of Ibrahim, Ponomareva and Mazumder, "Newer is not always
    better: Rethinking transferability metrics, their peculiarities, stability and
    performance", ECML-PKDD 2022: features are centred, cov(f) is the Ledoit-Wolf estimate
    (1-α)·cov(f) + α·μI and the between-class covariance is scaled by (1-α), which keeps the
    score stable when D is large relative to N.

    Both covariances use the 1/N normalisation (as Ledoit-Wolf does); the plain score is
    unchanged by that choice, and the inverse is a pseudo-inverse on the non-zero eigenvalues.

    Args:
        features: N×D features of the target items.
        labels: N integer class labels.
        shrinkage: Use the Ledoit-Wolf shrinkage estimate of cov(f) (recommended).

    Returns:
        The H-score, between 0 and min(D, C - 1) without shrinkage.

    Raises:
        ConfigError: On malformed inputs or fewer than 2 classes.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat([0, 1], 50)
        >>> good = np.eye(2)[y] + 0.1 * rng.normal(size=(100, 2))
        >>> h_score(good, y) > h_score(rng.normal(size=(100, 2)), y)
        True
    """
    f = _check_matrix(features, "features")
    codes = _check_labels(labels, len(f))
    f = f - f.mean(axis=0)
    counts = np.bincount(codes)
    means = np.zeros((len(counts), f.shape[1]))
    np.add.at(means, codes, f)
    means /= counts[:, None]  # class means of the centred features: deviations from the mean
    cov_between = (means.T * (counts / len(f))) @ means
    if shrinkage:
        from sklearn.covariance import LedoitWolf

        lw = LedoitWolf(store_precision=False, assume_centered=True).fit(f)
        return _trace_pinv_product(lw.covariance_, (1.0 - lw.shrinkage_) * cov_between)
    return _trace_pinv_product(f.T @ f / len(f), cov_between)


# --------------------------------------------------------------------------- NCE and LEEP


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """Negative conditional entropy -H(Y | Z) of target labels Y given source labels Z.

    Tran, Nguyen and Hassner, "Transferability and Hardness of Supervised Classification
    Tasks", ICCV 2019. Z is the source classifier's prediction (argmax) on each target item;
    the joint distribution is the empirical one. Natural logarithm (nats).

    Args:
        source_labels: N integer source-class predictions (any number of source classes).
        labels: N integer target class labels.

    Returns:
        NCE ≤ 0; 0 when the target label is a function of the source label.

    Raises:
        ConfigError: On malformed inputs or fewer than 2 target classes.

    Example:
        >>> nce(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))
        0.0
    """
    z = np.asarray(source_labels)
    if z.ndim != 1 or len(z) < 2:
        raise ConfigError(f"source_labels must be 1-D with at least 2 items, got shape {z.shape}.")
    z = _check_labels(z, len(z), name="source_labels", min_classes=1)
    y = _check_labels(labels, len(z))
    joint = np.zeros((z.max() + 1, y.max() + 1))
    np.add.at(joint, (z, y), 1.0)
    joint /= len(y)
    conditional = joint / joint.sum(axis=1, keepdims=True)  # every source class occurs
    nonzero = joint > 0
    return float(min((joint[nonzero] * np.log(conditional[nonzero])).sum(), 0.0))


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: log expected empirical prediction of the source classifier on the target labels.

    Nguyen, Hassner, Seeger and Archambeau, "LEEP: A New Measure to Evaluate Transferability of
    Learned Representations", ICML 2020. With θ(x) the source softmax over Z source classes:
    P(y, z) = mean_i θ(x_i)_z·1[y_i = y], P(y | z) = P(y, z) / P(z), and
    LEEP = mean_i log Σ_z P(y_i | z)·θ(x_i)_z, the average log-likelihood of the "expected
    empirical predictor" that re-labels source classes into target classes.

    Args:
        source_probs: N×Z source-classifier probabilities; rows must sum to 1 (±1e-3, then
            renormalised exactly).
        labels: N integer target class labels.

    Returns:
        LEEP ≤ 0; closer to 0 means better transfer.

    Raises:
        ConfigError: On malformed inputs, probabilities that are negative or do not sum to 1,
            or fewer than 2 target classes.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
        >>> round(leep(probs, np.array([0, 0, 1, 1])), 3)
        -0.295
    """
    theta = _check_matrix(source_probs, "source_probs")
    y = _check_labels(labels, len(theta))
    sums = theta.sum(axis=1)
    if (theta < 0).any() or np.abs(sums - 1.0).max() > 1e-3:
        raise ConfigError(
            "source_probs must be probabilities (non-negative, rows summing to 1): apply a softmax "
            "to the source classifier's logits first."
        )
    theta = theta / sums[:, None]
    joint = np.zeros((y.max() + 1, theta.shape[1]))
    np.add.at(joint, y, theta)
    joint /= len(y)  # P(y, z)
    marginal = joint.sum(axis=0)  # P(z)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    eep = (theta * conditional[y]).sum(axis=1)  # Σ_z P(y_i | z) θ(x_i)_z
    return float(min(np.log(eep).mean(), 0.0))


# --------------------------------------------------------------------------- cross-validated probes


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

"""Transferability scores: how well will frozen features (or a source classifier) transfer?

Each score looks at a target data set through a pre-trained model, without training the model,
and returns one float, higher meaning better expected transfer. All of them are pure numpy
(plus scikit-learn for Ledoit-Wolf shrinkage).

- :func:`logme`: evidence of a Bayesian linear model on the features (You et al., 2021).
- :func:`h_score`: class separation relative to the feature covariance (Bao et al., 2019),
  with Ledoit-Wolf shrinkage by default (Ibrahim et al., 2022).
- :func:`nce`: negative conditional entropy of the target given the source labels
  (Tran et al., 2019).
- :func:`leep`: log expected empirical prediction of the source classifier (Nguyen et al., 2020).
The expensive but direct baselines these scores try to predict, cross-validated k-NN and
linear-probe accuracies, are in :mod:`headstart.transferability.probes`.

Labels must be integers; :func:`labels_to_int` maps any hashable labels to ``0..C-1``. Only the
classes present count: labels ``{0, 2}`` are treated as two classes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np

from headstart.errors import ConfigError

__all__ = [
    "h_score",
    "labels_to_int",
    "leep",
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

"""Transferability scores: known answers on tiny synthetic data, and clear errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.covariance import LedoitWolf

from headstart.errors import ConfigError
from headstart.transferability import (
    h_score,
    knn_accuracy,
    labels_to_int,
    leep,
    linear_probe_accuracy,
    logme,
    nce,
)
from headstart.transferability.probes import _knn_predict


def separable_and_random(n: int = 120, d: int = 6, n_classes: int = 3, seed: int = 0):
    """Labels, features that separate them linearly, and random features of the same shape."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    centres = 3.0 * np.eye(n_classes, d)
    good = centres[labels] + 0.5 * rng.normal(size=(n, d))
    return labels, good, rng.normal(size=(n, d))


# --------------------------------------------------------------------------- LogME


def direct_logme(features: np.ndarray, labels: np.ndarray) -> float:
    """Slow LogME: maximise log N(y | 0, I/β + FFᵀ/α) over (α, β) numerically, per class."""
    n = len(labels)
    evidences = []
    for c in np.unique(labels):
        y = (labels == c).astype(float)

        def neg_log_evidence(log_ab: np.ndarray, y: np.ndarray = y) -> float:
            alpha, beta = np.exp(log_ab)
            cov = np.eye(n) / beta + features @ features.T / alpha
            return 0.5 * (
                n * math.log(2 * math.pi) + np.linalg.slogdet(cov)[1] + y @ np.linalg.solve(cov, y)
            )

        fits = [
            minimize(
                neg_log_evidence,
                x0,
                method="Nelder-Mead",
                options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 5000},
            )
            for x0 in [(0.0, 0.0), (3.0, 1.0), (-2.0, 2.0)]
        ]
        evidences.append(-min(fit.fun for fit in fits) / n)
    return float(np.mean(evidences))


def test_logme_prefers_separable_features():
    labels, good, random = separable_and_random()
    assert logme(good, labels) > logme(random, labels) + 0.2


# N > D (eigh of FᵀF); N < D (SVD of F), which also checks that log|αI + βFᵀF| counts the D - N
# zero eigenvalues of FᵀF; and N < D with weak features, where the fixed point needs ~30 steps.
@pytest.mark.parametrize(("n", "d", "signal"), [(30, 4, 3.0), (12, 20, 3.0), (12, 20, 2.0)])
def test_logme_is_the_maximum_evidence(n: int, d: int, signal: float):
    rng = np.random.default_rng(1)
    labels = np.arange(n) % 3
    features = rng.normal(size=(n, d)) + signal * np.eye(3, d)[labels]
    assert logme(features, labels) == pytest.approx(direct_logme(features, labels), abs=1e-3)


def test_logme_accepts_any_integer_codes_and_float32():
    labels, good, _ = separable_and_random()
    expected = logme(good, labels)
    assert logme(good.astype(np.float32), labels * 10 + 5) == pytest.approx(expected, abs=1e-5)


# --------------------------------------------------------------------------- H-score


def test_h_score_prefers_separable_features():
    labels, good, random = separable_and_random()
    for shrinkage in (True, False):
        assert (
            h_score(good, labels, shrinkage=shrinkage)
            > h_score(random, labels, shrinkage=shrinkage) + 0.5
        )


def hand_h_score(features: np.ndarray, labels: np.ndarray) -> float:
    class_means = np.zeros_like(features)
    for c in np.unique(labels):
        class_means[labels == c] = features[labels == c].mean(axis=0)
    cov_f = np.cov(features, rowvar=False)
    cov_g = np.cov(class_means, rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-10) @ cov_g))


def test_h_score_without_shrinkage_is_the_closed_form():
    rng = np.random.default_rng(2)
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    features = rng.normal(size=(10, 3)) + np.eye(3)[labels]
    assert h_score(features, labels, shrinkage=False) == pytest.approx(
        hand_h_score(features, labels), rel=1e-10
    )
    # A duplicated dimension makes cov(f) singular: the pseudo-inverse ignores the null direction.
    doubled = np.hstack([features, features[:, :1]])
    assert h_score(doubled, labels, shrinkage=False) == pytest.approx(
        hand_h_score(features, labels), rel=1e-8
    )


def test_h_score_with_shrinkage_is_the_ledoit_wolf_form():
    rng = np.random.default_rng(3)
    labels = np.arange(40) % 2
    features = rng.normal(size=(40, 5)) + np.eye(2, 5)[labels]
    lw = LedoitWolf().fit(features)
    assert 0 < lw.shrinkage_ < 1
    centred = features - features.mean(axis=0)
    cov_between = sum(
        (labels == c).mean() * np.outer(centred[labels == c].mean(0), centred[labels == c].mean(0))
        for c in (0, 1)
    )
    expected = np.trace(np.linalg.inv(lw.covariance_) @ ((1 - lw.shrinkage_) * cov_between))
    assert h_score(features, labels) == pytest.approx(expected, rel=1e-10)
    # Shrinkage pulls the score below the plain one.
    assert h_score(features, labels) < h_score(features, labels, shrinkage=False)


# --------------------------------------------------------------------------- NCE and LEEP


def test_nce_on_a_small_contingency_table():
    source = np.array([0, 0, 1, 1, 1, 2])
    target = np.array([0, 0, 1, 1, 0, 1])
    # z=0 -> y=0 twice, z=2 -> y=1: no uncertainty. z=1 -> y=1, 1, 0: P(y|z) = 2/3, 1/3.
    expected = 2 / 6 * math.log(2 / 3) + 1 / 6 * math.log(1 / 3)
    assert nce(source, target) == pytest.approx(expected, rel=1e-12)
    assert nce(source, 1 - target) == pytest.approx(
        expected, rel=1e-12
    )  # renaming classes changes nothing


def test_nce_is_zero_when_target_is_a_function_of_source():
    source = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    assert nce(source, source % 2) == 0.0
    assert nce(source % 2, source) < 0  # but not the other way round


def test_leep_matches_hand_computation():
    theta = [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]]
    labels = [0, 1, 0, 1]
    n = len(labels)
    joint = [
        [sum(theta[i][z] for i in range(n) if labels[i] == y) / n for z in range(2)]
        for y in range(2)
    ]
    p_z = [joint[0][z] + joint[1][z] for z in range(2)]
    expected = (
        sum(
            math.log(sum(joint[labels[i]][z] / p_z[z] * theta[i][z] for z in range(2)))
            for i in range(n)
        )
        / n
    )
    assert leep(np.array(theta), np.array(labels)) == pytest.approx(expected, rel=1e-12)


def test_leep_is_higher_for_informative_source_predictions():
    rng = np.random.default_rng(4)
    labels = np.arange(200) % 2
    informative = np.eye(3)[labels] * 4 + rng.normal(size=(200, 3))
    uninformative = rng.normal(size=(200, 3))

    def softmax(logits: np.ndarray) -> np.ndarray:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    good, bad = leep(softmax(informative), labels), leep(softmax(uninformative), labels)
    assert bad <= 0 and good <= 0
    assert good > bad + 0.3
    assert bad == pytest.approx(-math.log(2), abs=0.05)  # chance level for two balanced classes


# --------------------------------------------------------------------------- cross-validated probes


def blobs(
    n: int = 150, d: int = 10, n_classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    return 10.0 * np.eye(n_classes, d)[labels] + rng.normal(size=(n, d)), labels


@pytest.mark.parametrize("score", [knn_accuracy, linear_probe_accuracy])
def test_probe_accuracy_near_one_on_blobs_and_chance_on_random_labels(score):
    features, labels = blobs()
    assert score(features, labels) >= 0.98
    rng = np.random.default_rng(5)
    random_labels = rng.integers(0, 2, 300)
    assert abs(score(rng.normal(size=(300, 10)), random_labels) - 0.5) < 0.1


@pytest.mark.parametrize("score", [knn_accuracy, linear_probe_accuracy])
def test_probe_accuracy_with_tiny_classes_and_reproducible(score):
    features, labels = blobs(n=13)
    labels[-1] = 3  # a class with one item: fewer folds, no crash, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = score(features, labels, folds=5, seed=1)
    assert first == score(features, labels, folds=5, seed=1)
    assert 0.8 <= first < 1.0  # the singleton is always missed


def test_knn_majority_vote_with_ties_broken_by_similarity():
    train = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    train_y = np.array([0, 1, 1, 2])
    test = np.array([[0.9, 0.436], [1.0, 0.0]])
    test /= np.linalg.norm(test, axis=1, keepdims=True)
    # k=3: first item's neighbours are classes 0, 1, 1 -> majority 1.
    assert _knn_predict(train, train_y, test[:1], k=3, n_classes=3).tolist() == [1]
    # k=2 on [1, 0]: neighbours [1, 0] (class 0, sim 1) and [0.6, 0.8] (class 1, sim 0.6) tie -> 0.
    assert _knn_predict(train, train_y, test[1:], k=2, n_classes=3).tolist() == [0]
    # ...and with the similarities reversed the tie goes to class 1.
    assert _knn_predict(train, np.array([1, 0, 0, 2]), test[1:], k=2, n_classes=3).tolist() == [1]


# --------------------------------------------------------------------------- labels and errors


def test_labels_to_int_sorts_by_string():
    codes, classes = labels_to_int(np.array(["dog", "cat", "dog", "bird"]))
    assert classes == ["bird", "cat", "dog"]
    assert codes.tolist() == [2, 1, 2, 0]
    codes, classes = labels_to_int([10, 2, 10])
    assert classes == [10, 2] and codes.tolist() == [0, 1, 0]
    with pytest.raises(ConfigError, match="empty"):
        labels_to_int([])
    with pytest.raises(ConfigError, match="hashable"):
        labels_to_int([[1], [2]])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f, y: logme(f, y[:-1]), "one label per row"),
        (lambda f, y: logme(f, np.zeros(len(y), dtype=int)), "at least 2"),
        (lambda f, y: h_score(f, y.astype(float)), "labels_to_int"),
        (lambda f, y: h_score(f, np.array(["a", "b"] * (len(y) // 2))), "labels_to_int"),
        (lambda f, y: logme(np.where(f > 1, np.nan, f), y), "NaN"),
        (lambda f, y: logme(f[:, 0], y), "2-D"),
        (lambda f, y: logme(np.zeros_like(f), y), "all zero"),
        (lambda f, y: knn_accuracy(f, y, k=0), "k must be"),
        (lambda f, y: knn_accuracy(f, y, folds=1), "folds must be"),
        (lambda f, y: linear_probe_accuracy(f, y, C=0.0), "C must be"),
        (lambda f, y: nce(y[:-1], y), "one label per row"),
        (lambda f, y: leep(np.abs(f), y), "softmax"),
        (lambda f, y: leep(np.full((len(y), 2), 0.5), y[:, None]), "1-D"),
    ],
)
def test_bad_input_raises_a_clear_error(call, message):
    labels, features, _ = separable_and_random(n=20)
    with pytest.raises(ConfigError, match=message):
        call(features, labels)

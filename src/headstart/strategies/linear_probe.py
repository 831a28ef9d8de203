"""``linear-probe``: logistic regression on frozen, cached backbone features.

The cheapest strategy and the floor every other one must beat. The regularisation
strength ``C`` is chosen by stratified cross-validation (log loss) on the training data;
since cross-validation does the model selection, the validation split is folded into the
training data rather than left unused: with a few hundred labels, every one counts.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from headstart.backbones.base import Backbone
from headstart.data.dataset import Dataset, concat
from headstart.heads import LinearHead
from headstart.strategies.base import FitContext, FittedModel, Strategy, register_strategy
from headstart.strategies.settings import CLASS_WEIGHT, Setting

logger = logging.getLogger(__name__)

DEFAULT_CS = tuple(float(c) for c in np.logspace(-3, 2, 11))


@register_strategy
class LinearProbe(Strategy):
    """Logistic regression on standardised frozen features.

    Args:
        C: a fixed inverse regularisation strength; ``None`` chooses it by cross-validation.
        Cs: the grid searched when ``C`` is ``None``.
        cv: the number of folds (lowered to the smallest class size when needed).
        class_weight: ``None`` or ``"balanced"`` (weights classes inversely to frequency).
        max_iter: solver iterations.
    """

    name = "linear-probe"
    description = "Logistic regression on cached frozen features; C chosen by cross-validation."
    settings = (
        Setting("C", float, None, "fixed inverse regularisation; None: chosen by cross-validation",
                range="(0, inf)", nullable=True),
        Setting("Cs", tuple, DEFAULT_CS, "the grid of C searched by cross-validation", range="(0, inf)"),
        Setting("cv", int, 5, "cross-validation folds (lowered to the smallest class size)", range="[2, inf)"),
        CLASS_WEIGHT,
        Setting("max_iter", int, 2000, "solver iterations", range="[1, inf)"),
    )

    def __init__(
        self,
        C: float | None = None,
        Cs: tuple[float, ...] = DEFAULT_CS,
        cv: int = 5,
        class_weight: str | None = None,
        max_iter: int = 2000,
    ) -> None:
        super().__init__(C=C, Cs=list(Cs), cv=cv, class_weight=class_weight, max_iter=max_iter)

    def fit(self, backbone: Backbone, train: Dataset, val: Dataset | None, context: FitContext) -> FittedModel:
        data = concat(train, val) if val is not None and len(val) else train
        labels = data.require_labels("the linear probe")
        classes = data.classes
        y = np.array([classes.index(v) for v in labels])
        head, details = fit_probe(context.embed(data), y, seed=context.seed, **self.params)
        return FittedModel(backbone=backbone, head=head, classes=classes, strategy=self.name,
                           params=dict(self.params), details=details)


def fit_probe(features: np.ndarray, y: np.ndarray, *, C: float | None = None, Cs: list[float] | tuple[float, ...] = DEFAULT_CS,
              cv: int = 5, class_weight: str | None = None, max_iter: int = 2000, seed: int = 0
              ) -> tuple[LinearHead, dict[str, Any]]:
    """The probe on a feature matrix: standardise, choose ``C`` by cross-validation, fit.

    Returns the head (standardisation folded in) and what was chosen. ``y`` holds class indices.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    x = scaler.transform(features)
    # With fewer examples than features, an L2-regularised linear model's weights lie in the
    # span of the training rows (representer theorem): solving in that span's orthonormal
    # basis gives the same model, several times faster. Weights are mapped back afterwards.
    basis = np.linalg.svd(x, full_matrices=False)[2] if x.shape[0] < x.shape[1] else None
    xb = x @ basis.T if basis is not None else x
    chosen, details = choose_C(xb, y, C=C, Cs=list(Cs), cv=cv, class_weight=class_weight, max_iter=max_iter,
                               seed=seed)
    model = LogisticRegression(C=chosen, class_weight=class_weight, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        model.fit(xb, y)
    train_accuracy = float((model.predict(xb) == y).mean())
    if basis is not None:
        model.coef_ = model.coef_ @ basis
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    head = LinearHead.from_sklearn(model, scaler.mean_, scale)
    details.update({"C": chosen, "n_train": len(y), "train_accuracy": train_accuracy})
    return head, details


def choose_C(x: Any, y: np.ndarray, *, C: float | None, Cs: list[float], cv: int, class_weight: str | None,
             max_iter: int, seed: int) -> tuple[float, dict[str, Any]]:
    """``C`` by stratified cross-validation on log loss (or the fixed one), and how it was chosen."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    if C is not None:
        return float(C), {"C_selection": "fixed"}
    smallest = int(np.bincount(y).min())
    folds = min(cv, smallest)
    if folds < 2:
        logger.warning("a class has a single training example: C=1.0 without cross-validation")
        return 1.0, {"C_selection": "default (a class has one example, too few to cross-validate)"}
    # tol=1e-3 during the search: the ranking of C values settles long before the solver's
    # default 1e-4 (≈3x faster); the final model is fitted at full precision.
    search = LogisticRegressionCV(
        Cs=Cs, cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
        scoring="neg_log_loss", class_weight=class_weight, max_iter=max_iter, tol=1e-3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(x, y)
    scores = next(iter(search.scores_.values())).mean(axis=0)
    best = int(np.argmax(scores))
    return float(Cs[best]), {
        "C_selection": f"{folds}-fold stratified cross-validation (log loss)",
        "cv_log_loss": {f"{c:g}": float(-s) for c, s in zip(Cs, scores)},
        "cv_best_log_loss": float(-scores[best]),
    }

"""``linear-probe``: logistic regression on frozen, cached backbone features.

The cheapest strategy and the floor every other one must beat, so it must itself never lose to
a plain default. The recipe, measured by ``benchmarks/probe.py`` (few-shot text and images):

1. **Candidates**: the feature preprocessing (``raw``, ``l2``-normalised, ``standardize``) times
   the regularisation ``C`` (:data:`PROBE_CS`). Standardising destroys the geometry of
   normalised sentence embeddings, and no single ``C`` suits every backbone, so both are chosen.
2. **Criterion**: out-of-fold *accuracy* (log loss breaks ties), from stratified k-fold
   cross-validation repeated on reshuffled folds when the data are small. Log loss alone, at
   2-3 items per fold, prefers weak regularisation and loses accuracy.
3. **The plain default is kept unless beaten**: scikit-learn's ``LogisticRegression()`` on raw
   features (``C=1``) is the reference; another candidate replaces it only when its paired
   out-of-fold gain over the same items is significant by the paired rule every "leave the
   floor" decision uses (:func:`headstart.evaluation.paired.significant_gain`: more than two
   standard errors and at least five items net). A small validation signal cannot fake a win
   this way, so the probe is at least the plain default in expectation.
4. **Calibration**: a temperature fitted on the chosen candidate's out-of-fold logits (log loss)
   is folded into the weights, so an accurate but over-confident probe still reports honest
   probabilities (log loss, ECE); it never changes a prediction.

Since cross-validation does the model selection, the validation split is folded into the
training data rather than left unused: with a few hundred labels, every one counts.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from headstart.backbones.base import Backbone
from headstart.data.dataset import Dataset, concat
from headstart.evaluation.paired import significant_gain
from headstart.heads import LinearHead
from headstart.strategies.base import FitContext, FittedModel, Strategy, register_strategy
from headstart.strategies.settings import CLASS_WEIGHT, Setting

logger = logging.getLogger(__name__)

# The wide grid the classic TF-IDF model and the audit's label-noise probe search (log loss).
DEFAULT_CS = tuple(float(c) for c in np.logspace(-3, 2, 11))
# The probe's grid: below 0.1 a probe on a few dozen items predicts the majority class.
PROBE_CS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
FEATURES = ("raw", "l2", "standardize")
REFERENCE = ("raw", 1.0)  # scikit-learn's LogisticRegression() on the features as they come
# Above this many items, one round of folds (and fewer of them) settles the choice.
SMALL = 300
# Calibration temperatures searched: sharpening is capped, since out-of-fold predictions that are
# all right (a few dozen items) would otherwise drive the temperature to zero.
TEMPERATURES = (0.2, 20.0)
# The probe the proof's baselines and learning curve fit (a dozen fits per report): the same
# candidates and criterion, judged on one round of three folds: a fifth of the fits.
QUICK = {"cv": 3, "repeats": 1}


@register_strategy
class LinearProbe(Strategy):
    """Logistic regression on frozen features; preprocessing and ``C`` chosen by cross-validation.

    Args:
        C: a fixed inverse regularisation strength; ``None`` chooses it by cross-validation.
        Cs: the grid searched when ``C`` is ``None``.
        features: ``"raw"``, ``"l2"``, ``"standardize"``, or ``"auto"`` (chosen with ``C``).
        cv: the number of folds (lowered to the smallest class size when needed).
        class_weight: ``None`` or ``"balanced"`` (weights classes inversely to frequency, and
            selection scores balanced accuracy).
        calibrate: fit a temperature on out-of-fold logits and fold it into the head.
        max_iter: solver iterations.
    """

    name = "linear-probe"
    description = ("Logistic regression on cached frozen features; preprocessing and C chosen by "
                   "cross-validated accuracy, kept at scikit-learn's default unless clearly beaten.")
    settings = (
        Setting("C", float, None, "fixed inverse regularisation; None: chosen by cross-validation",
                range="(0, inf)", nullable=True),
        Setting("Cs", tuple, PROBE_CS, "the grid of C searched by cross-validation", range="(0, inf)"),
        Setting("features", str, "auto", "feature preprocessing before the logistic regression; auto: chosen "
                "by cross-validation", choices=("auto", *FEATURES)),
        Setting("cv", int, 5, "cross-validation folds (lowered to the smallest class size)", range="[2, inf)"),
        CLASS_WEIGHT,
        Setting("calibrate", bool, True, "temperature-scale probabilities on out-of-fold logits"),
        Setting("max_iter", int, 2000, "solver iterations", range="[1, inf)"),
    )

    def __init__(
        self,
        C: float | None = None,
        Cs: tuple[float, ...] = PROBE_CS,
        features: str = "auto",
        cv: int = 5,
        class_weight: str | None = None,
        calibrate: bool = True,
        max_iter: int = 2000,
    ) -> None:
        super().__init__(C=C, Cs=list(Cs), features=features, cv=cv, class_weight=class_weight,
                         calibrate=calibrate, max_iter=max_iter)

    def fit(self, backbone: Backbone, train: Dataset, val: Dataset | None, context: FitContext) -> FittedModel:
        data = concat(train, val) if val is not None and len(val) else train
        labels = data.require_labels("the linear probe")
        classes = data.classes
        y = np.array([classes.index(v) for v in labels])
        head, details, oof = probe_with_oof(context.embed(data), y, seed=context.seed, **self.params)
        return FittedModel(backbone=backbone, head=head, classes=classes, strategy=self.name,
                           params=dict(self.params), details=details, oof=oof, oof_data=data)


@dataclass
class _Prepared:
    """Features after one preprocessing, in the basis the solver works in."""

    kind: str
    x: np.ndarray  # preprocessed rows, in ``basis`` coordinates when there is one
    mean: np.ndarray
    scale: np.ndarray
    basis: np.ndarray | None


def _prepare(features: np.ndarray, kind: str) -> _Prepared:
    x = np.asarray(features, dtype=np.float64)
    d = x.shape[1]
    mean, scale = np.zeros(d), np.ones(d)
    if kind == "l2":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    elif kind == "standardize":
        mean, std = x.mean(axis=0), x.std(axis=0)
        scale = np.where(std == 0, 1.0, std)
        x = (x - mean) / scale
    # With fewer examples than features, an L2-regularised linear model's weights lie in the
    # span of the training rows (representer theorem): solving in that span's orthonormal
    # basis gives the same model, several times faster. A basis of all rows also spans every
    # fold's training rows, so it is exact for cross-validation too. Weights are mapped back.
    basis = np.linalg.svd(x, full_matrices=False)[2] if x.shape[0] < x.shape[1] else None
    return _Prepared(kind, x @ basis.T if basis is not None else x, mean, scale, basis)


def _logits(model: Any, x: np.ndarray) -> np.ndarray:
    z = model.decision_function(x)
    return np.column_stack([np.zeros_like(z), z]) if z.ndim == 1 else z


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _out_of_fold(prep: _Prepared, y: np.ndarray, Cs: list[float], folds: int, repeats: int, seed: int,
                 class_weight: str | None, max_iter: int) -> np.ndarray:
    """Out-of-fold logits, shape ``(len(Cs), repeats, n, k)``; each C warm-starts from the last."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    k = int(y.max()) + 1
    out = np.zeros((len(Cs), repeats, len(y), k))
    order = np.argsort(Cs)
    for r in range(repeats):
        for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed + r).split(prep.x, y):
            # tol=1e-3 during the search: the ranking settles long before the solver's default
            # 1e-4 (about 3x faster); the final model is fitted at full precision.
            model = LogisticRegression(class_weight=class_weight, max_iter=max_iter, tol=1e-3, warm_start=True)
            for i in order:
                model.C = Cs[i]
                model.fit(prep.x[train_idx], y[train_idx])
                out[i, r, test_idx] = _logits(model, prep.x[test_idx]) if len(model.classes_) == k else \
                    _expand(_logits(model, prep.x[test_idx]), model.classes_, k)
    return out


def _expand(z: np.ndarray, present: np.ndarray, k: int) -> np.ndarray:
    """Logits of a fold model that saw only some classes, with -inf-like logits for the rest."""
    full = np.full((len(z), k), -1e9)
    full[:, present] = z
    return full


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """The temperature minimising the log loss of ``softmax(logits / T)``; returns T, loss before, after."""
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(y))

    def loss(log_t: float) -> float:
        return float(-_log_softmax(logits / math.exp(log_t))[rows, y].mean())

    lo, hi = (math.log(t) for t in TEMPERATURES)
    best = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
    before = loss(0.0)
    if best.fun >= before:
        return 1.0, before, before
    return math.exp(best.x), before, float(best.fun)


def fit_probe(x: np.ndarray, y: np.ndarray, /, **settings: Any) -> tuple[LinearHead, dict[str, Any]]:
    """The probe on a feature matrix ``x``: choose preprocessing and ``C`` (see the module), calibrate, fit.

    ``y`` holds class indices; ``settings`` are :class:`LinearProbe`'s and ``seed``. Returns the
    head (preprocessing and temperature folded in) and what was chosen, and why.
    """
    head, details, _ = probe_with_oof(x, y, **settings)
    return head, details


def probe_with_oof(x: np.ndarray, y: np.ndarray, /, *, C: float | None = None,
                   Cs: list[float] | tuple[float, ...] = PROBE_CS, features: str = "auto", cv: int = 5,
                   class_weight: str | None = None, calibrate: bool = True, max_iter: int = 2000, seed: int = 0,
                   repeats: int | None = None) -> tuple[LinearHead, dict[str, Any], np.ndarray | None]:
    """:func:`fit_probe`, plus the chosen candidate's calibrated out-of-fold logits, shape
    ``(repeats, n, k)`` (``None`` without cross-validation): what stacking (:mod:`headstart.hybrid`)
    needs to judge a blend without refitting the probe. ``repeats``: rounds of reshuffled folds
    (default: 2 up to ``SMALL`` items, else 1)."""
    from sklearn.linear_model import LogisticRegression

    kinds = list(FEATURES) if features == "auto" else [features]
    grid = [float(C)] if C is not None else sorted(float(c) for c in Cs)
    candidates = [(f, c) for f in kinds for c in grid]
    prepared = {f: _prepare(x, f) for f in kinds}
    reference = REFERENCE if REFERENCE in candidates else candidates[0]
    chosen, details, oof = _select(prepared, y, candidates, reference, cv=cv, class_weight=class_weight,
                                   max_iter=max_iter, seed=seed, repeats=repeats)
    temperature = 1.0
    if calibrate and oof is not None:
        logits = oof.reshape(-1, oof.shape[-1])
        temperature, before, after = fit_temperature(logits, np.tile(y, oof.shape[0]))
        details.update({"temperature": round(temperature, 4), "cv_log_loss_uncalibrated": round(before, 4),
                        "cv_log_loss_calibrated": round(after, 4)})
    prep = prepared[chosen[0]]
    model = LogisticRegression(C=chosen[1], class_weight=class_weight, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        model.fit(prep.x, y)
    train_accuracy = float((model.predict(prep.x) == y).mean())
    if prep.basis is not None:
        model.coef_ = model.coef_ @ prep.basis
    head = LinearHead.from_sklearn(model, prep.mean, prep.scale, normalize="l2" if chosen[0] == "l2" else "none",
                                   temperature=temperature)
    details.update({"features": chosen[0], "C": chosen[1], "n_train": len(y), "train_accuracy": train_accuracy})
    return head, details, (oof / temperature if oof is not None else None)


def _select(prepared: dict[str, _Prepared], y: np.ndarray, candidates: list[tuple[str, float]],
            reference: tuple[str, float], *, cv: int, class_weight: str | None, max_iter: int, seed: int,
            repeats: int | None = None) -> tuple[tuple[str, float], dict[str, Any], np.ndarray | None]:
    """The candidate to fit, how it was chosen, and its out-of-fold logits (``None`` without CV)."""
    n = len(y)
    counts = np.bincount(y)
    folds = min(cv if n <= SMALL else min(cv, 3), int(counts[counts > 0].min()))
    if folds < 2:
        logger.warning("a class has a single training example: the probe uses %s features, C=%g without "
                       "cross-validation", *reference)
        return reference, {"selection": "default (a class has one example, too few to cross-validate)"}, None
    repeats = repeats or (2 if n <= SMALL else 1)
    weights = np.ones(n) if class_weight is None else (n / (len(counts) * counts))[y]
    scores: dict[tuple[str, float], tuple[float, float, np.ndarray]] = {}
    logits: dict[tuple[str, float], np.ndarray] = {}
    for kind, prep in prepared.items():
        grid = [c for f, c in candidates if f == kind]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            oof = _out_of_fold(prep, y, grid, folds, repeats, seed, class_weight, max_iter)
        for c, z in zip(grid, oof):
            correct = (z.argmax(axis=-1) == y).mean(axis=0) * weights  # per item, over repeats
            loss = float(-_log_softmax(z.reshape(-1, z.shape[-1]))[np.arange(n * repeats), np.tile(y, repeats)].mean())
            scores[(kind, c)] = (float(correct.mean()), loss, correct)
            logits[(kind, c)] = z
    best = max(scores, key=lambda key: (scores[key][0], -scores[key][1]))
    test = significant_gain(scores[best][2], scores[reference][2])
    gain, se = test["gain"], test["se"] or 0.0
    chosen = best if best != reference and test["significant"] else reference
    how = (f"{folds}-fold stratified cross-validation x{repeats}: {'balanced ' if class_weight else ''}accuracy, "
           "log loss breaking ties")
    details = {
        "selection": how,
        "cv_accuracy": {f"{f} C={c:g}": round(s[0], 4) for (f, c), s in scores.items()},
        "cv_best": {"candidate": f"{best[0]} C={best[1]:g}", "gain_over_default": round(gain, 4),
                    "standard_error": round(se, 4), "kept_default": chosen != best},
        "cv_accuracy_chosen": round(scores[chosen][0], 4),
        "cv_log_loss_chosen": round(scores[chosen][1], 4),
    }
    return chosen, details, logits[chosen]


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

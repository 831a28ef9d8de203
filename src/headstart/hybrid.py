"""The hybrid: the transfer model and the classic TF-IDF model, stacked on out-of-fold probabilities.

Pretrained sentence encoders read a window of a few hundred tokens and know general language;
a TF-IDF model reads every word and learns the task's own vocabulary. On some data sets the
classic model wins by far (state-of-the-union eras: 0.95 against 0.76 at 16 speeches per class),
on others the encoder does (wordnet-glosses: 0.68 against 0.46). The hybrid lets the data say:

1. The linear probe already has out-of-fold logits of its chosen candidate (its selection's
   cross-validation); the classic model (TF-IDF of words and word pairs + logistic regression,
   the verdict's ``classic`` recipe, ``C`` cross-validated on log loss) gets its own by
   stratified k-fold, the vectoriser refitted in every fold.
2. A blend ``w · log p_transfer + (1 - w) · log p_classic`` is scored for ``w`` in
   :data:`WEIGHTS` by out-of-fold accuracy (log loss breaks ties). The hybrid is used only when
   its paired out-of-fold gain over the transfer model alone is significant
   (:func:`headstart.evaluation.paired.significant_gain`, the probe's rule), so it never
   replaces the transfer model on noise.
3. A temperature fitted on the blend's out-of-fold logits keeps probabilities honest.

The replay (:class:`TfidfModel`) is NumPy only, without scikit-learn: the ONNX engine blends
the same way in a process that never imports scikit-learn or torch; it equals scikit-learn's
``TfidfVectorizer`` + ``LogisticRegression.decision_function`` (checked by the tests).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

WEIGHTS = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))  # the transfer model's share
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default
NGRAM_RANGE = (1, 2)
MAX_FEATURES = 200_000
VOCABULARY_FILE = "hybrid_vocabulary.json"


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@dataclass
class TfidfModel:
    """TF-IDF (sublinear tf, smooth idf, L2 norm, lower-cased word n-grams) + a linear model, replayed.

    Attributes:
        vocabulary: the terms, in column order.
        idf: inverse document frequencies, one per term.
        coef: weights, shape ``(n_classes, n_terms)`` (binary models as two rows).
        intercept: biases, one per class.
    """

    vocabulary: list[str]
    idf: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    ngram_range: tuple[int, int] = NGRAM_RANGE

    def __post_init__(self) -> None:
        self._index = {term: i for i, term in enumerate(self.vocabulary)}
        self._pattern = re.compile(TOKEN_PATTERN)

    def terms(self, text: str) -> list[str]:
        """scikit-learn's word analyzer: lower-case, tokenise, then n-grams joined by a space."""
        tokens = self._pattern.findall(text.lower())
        lo, hi = self.ngram_range
        out = list(tokens) if lo == 1 else []
        for n in range(max(lo, 2), hi + 1):
            out += [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        return out

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Class logits, shape ``(len(texts), n_classes)``."""
        out = np.tile(self.intercept.astype(np.float64), (len(texts), 1))
        for row, text in enumerate(texts):
            counts = Counter(self._index[t] for t in self.terms(str(text)) if t in self._index)
            if not counts:
                continue
            cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            values = (1.0 + np.log(tf)) * self.idf[cols]
            values /= np.linalg.norm(values)
            out[row] += self.coef[:, cols] @ values
        return out

    @classmethod
    def from_sklearn(cls, vectorizer: Any, model: Any, n_classes: int) -> TfidfModel:
        vocabulary = [""] * len(vectorizer.vocabulary_)
        for term, i in vectorizer.vocabulary_.items():
            vocabulary[i] = term
        coef, intercept = np.asarray(model.coef_, np.float64), np.asarray(model.intercept_, np.float64)
        if coef.shape[0] == 1:  # binary: P(class 1) = sigmoid(w·x + b) = softmax([0, w·x + b])
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        full_coef = np.zeros((n_classes, coef.shape[1]))
        full_intercept = np.full(n_classes, -1e9)  # a class the model never saw gets no probability
        full_coef[model.classes_], full_intercept[model.classes_] = coef, intercept
        return cls(vocabulary, np.asarray(vectorizer.idf_, np.float64), full_coef, full_intercept,
                   tuple(vectorizer.ngram_range))


@dataclass
class Hybrid:
    """The blend: ``softmax((w · log p_transfer + (1 - w) · log p_classic) / temperature)``."""

    classic: TfidfModel
    weight: float  # the transfer model's share
    temperature: float = 1.0

    def blend(self, transfer_proba: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        log_t = np.log(np.clip(np.asarray(transfer_proba, np.float64), 1e-300, None))
        z = self.blend_logits(log_t, log_softmax(self.classic.logits(texts)))
        return np.exp(log_softmax(z))

    def blend_logits(self, log_transfer: np.ndarray, log_classic: np.ndarray) -> np.ndarray:
        return (self.weight * log_transfer + (1.0 - self.weight) * log_classic) / self.temperature

    def manifest(self) -> dict[str, Any]:
        return {"kind": "tfidf", "weight": self.weight, "temperature": self.temperature,
                "vocabulary": VOCABULARY_FILE, "n_terms": len(self.classic.vocabulary),
                "tfidf": {"ngram_range": list(self.classic.ngram_range), "token_pattern": TOKEN_PATTERN,
                          "lowercase": True, "sublinear_tf": True, "smooth_idf": True, "norm": "l2"}}

    def tensors(self) -> dict[str, np.ndarray]:
        return {"hybrid.idf": self.classic.idf.astype(np.float64), "hybrid.coef": self.classic.coef.astype(np.float32),
                "hybrid.intercept": self.classic.intercept.astype(np.float32)}

    @classmethod
    def from_parts(cls, entry: dict[str, Any], vocabulary: list[str], tensors: dict[str, np.ndarray]) -> Hybrid:
        classic = TfidfModel(list(vocabulary), np.asarray(tensors["hybrid.idf"], np.float64),
                             np.asarray(tensors["hybrid.coef"], np.float64),
                             np.asarray(tensors["hybrid.intercept"], np.float64),
                             tuple(entry["tfidf"]["ngram_range"]))
        return cls(classic, float(entry["weight"]), float(entry.get("temperature", 1.0)))


# ------------------------------------------------------------------------------ fitting
def _vectorizer() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(sublinear_tf=True, ngram_range=NGRAM_RANGE, min_df=1, max_features=MAX_FEATURES,
                           token_pattern=TOKEN_PATTERN)


def _classic_logits(vectorizer: Any, model: Any, texts: Sequence[str], k: int) -> np.ndarray:
    z = model.decision_function(vectorizer.transform(texts))
    z = np.column_stack([np.zeros_like(z), z]) if z.ndim == 1 else z
    out = np.full((len(texts), k), -1e9)
    out[:, model.classes_] = z
    return out


def fit_hybrid(texts: Sequence[str], y: np.ndarray, transfer_oof: np.ndarray, *, seed: int = 0, cv: int = 5,
               class_weight: str | None = None) -> tuple[Hybrid | None, dict[str, Any]]:
    """The hybrid when stacking beats the transfer model alone on out-of-fold predictions.

    Args:
        texts: the training texts, in the rows' order of ``transfer_oof``.
        y: class indices.
        transfer_oof: the transfer model's out-of-fold logits, shape ``(repeats, n, k)`` or ``(n, k)``.

    Returns:
        The hybrid (``None`` when it does not clearly win) and the evidence either way.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from headstart.evaluation.paired import MIN_NET_ITEMS, SIGNIFICANCE_SE, significant_gain
    from headstart.strategies.linear_probe import DEFAULT_CS, choose_C, fit_temperature

    oof_t = np.asarray(transfer_oof, np.float64)
    oof_t = oof_t[None] if oof_t.ndim == 2 else oof_t
    repeats, n, k = oof_t.shape
    counts = np.bincount(y, minlength=k)
    folds = min(cv, int(counts[counts > 0].min()))
    if folds < 2:
        return None, {"used": False, "why": "a class has one example: nothing to cross-validate the blend on"}
    texts = [str(t) for t in texts]
    vectorizer = _vectorizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = vectorizer.fit_transform(texts)
        C, _ = choose_C(x, y, C=None, Cs=[*DEFAULT_CS, 1000.0], cv=folds, class_weight=class_weight, max_iter=2000,
                        seed=seed)
        oof_c = np.zeros((n, k))
        for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(texts, y):
            fold_vec = _vectorizer()
            fold_x = fold_vec.fit_transform([texts[i] for i in train_idx])
            fold_model = LogisticRegression(C=C, class_weight=class_weight, max_iter=2000).fit(fold_x, y[train_idx])
            oof_c[test_idx] = _classic_logits(fold_vec, fold_model, [texts[i] for i in test_idx], k)
    log_t = np.stack([log_softmax(z) for z in oof_t])  # (repeats, n, k)
    log_c = np.broadcast_to(log_softmax(oof_c), log_t.shape)
    weights = np.ones(n) if class_weight is None else (n / (k * np.maximum(counts, 1)))[y]
    rows = np.arange(n)
    scores = {}
    for w in WEIGHTS:
        z = w * log_t + (1 - w) * log_c
        correct = (z.argmax(-1) == y).mean(axis=0) * weights
        loss = float(-np.mean([log_softmax(zr)[rows, y].mean() for zr in z]))
        scores[w] = (float(correct.mean()), loss, correct)
    best = max(WEIGHTS, key=lambda w: (scores[w][0], -scores[w][1]))
    test = significant_gain(scores[best][2], scores[1.0][2])
    gain, se = test["gain"], test["se"] or 0.0
    evidence = {"cv_accuracy": {f"w={w:g}": round(s[0], 4) for w, s in scores.items()},
                "transfer_cv_accuracy": round(scores[1.0][0], 4), "classic_cv_accuracy": round(scores[0.0][0], 4),
                "best_weight": float(best), "gain_over_transfer": round(gain, 4), "standard_error": round(se, 4),
                "classic_C": C, "folds": folds,
                "rule": "used when the out-of-fold gain over the transfer model is significant (paired: over "
                        f"{SIGNIFICANCE_SE:g} standard errors and {MIN_NET_ITEMS:g} items net)"}
    if best == 1.0 or not test["significant"]:
        return None, {"used": False, **evidence}
    blended = (best * log_t + (1 - best) * log_c).reshape(-1, k)
    temperature, before, after = fit_temperature(blended, np.tile(y, repeats))
    model = LogisticRegression(C=C, class_weight=class_weight, max_iter=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y)
    hybrid = Hybrid(TfidfModel.from_sklearn(vectorizer, model, k), float(best), temperature)
    return hybrid, {"used": True, "weight": float(best), "temperature": round(temperature, 4),
                    "cv_log_loss_uncalibrated": round(before, 4), "cv_log_loss_calibrated": round(after, 4),
                    "n_terms": len(hybrid.classic.vocabulary), **evidence}


# ------------------------------------------------------------------------------ the estimator's side
HYBRID_MODES = ("auto", "off")


def stack(fitted: Any, mode: str, *, seed: int, class_weight: str | None) -> tuple[Hybrid | None, dict[str, Any]]:
    """The hybrid for a strategy's result (``mode`` ``"auto"``), or ``None`` and why not."""
    from headstart.modalities import get_modality

    if mode == "off":
        return None, {"used": False, "why": "hybrid='off'"}
    data = fitted.oof_data
    modality = get_modality(data.modality if data is not None else fitted.backbone.spec.modality)
    if modality.classic_recipe != "tfidf":
        return None, {"used": False, "why": f"the {modality.name} modality has no TF-IDF classic model to stack"}
    if fitted.oof is None or data is None:
        return None, {"used": False, "why": f"the {fitted.strategy} result has no out-of-fold predictions to stack "
                                            "on (the linear probe's head has them)"}
    y = np.array([fitted.classes.index(v) for v in data.labels])
    return fit_hybrid(modality.classic_inputs(data.items, data.locators), y, fitted.oof, seed=seed,
                      class_weight=class_weight)


def read_hybrid(folder: Any, manifest: dict[str, Any]) -> Hybrid | None:
    """The bundle's hybrid part (``None`` when it has none), without torch or scikit-learn.

    Raises:
        BundleError: the vocabulary or the tensors are missing or damaged.
    """
    import json
    from pathlib import Path

    from headstart.bundle import WEIGHTS
    from headstart.errors import BundleError

    entry = manifest.get("hybrid")
    if not entry:
        return None
    folder = Path(folder)
    try:
        from safetensors.numpy import load_file

        tensors = load_file(str(folder / WEIGHTS))
        vocabulary = json.loads((folder / entry["vocabulary"]).read_text(encoding="utf-8"))
        hybrid = Hybrid.from_parts(entry, vocabulary, tensors)
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{folder}: the hybrid's classic model cannot be read ({type(e).__name__}: {e}); the bundle "
                          "is damaged. Restore it from a good copy, or refit.") from e
    k = len(manifest["labels"])
    if hybrid.classic.coef.shape != (k, len(vocabulary)) or hybrid.classic.idf.shape != (len(vocabulary),):
        raise BundleError(f"{folder}: the hybrid's weights do not fit its {len(vocabulary)} terms and {k} labels; the "
                          "bundle is damaged. Restore it from a good copy, or refit.")
    return hybrid

"""What transfer has to beat, trained on the same labels and scored on the same test items.

- ``trivial``: always the most frequent training class (probabilities: the class priors).
- ``classic``: the standard model for the modality without pretraining, by its
  ``classic_recipe``: TF-IDF (words and word pairs) + logistic regression on its
  ``classic_inputs`` (texts), or the linear probe on the vectors they are (images: 32×32 grey
  pixels).
- ``random-features``: the *same* backbone with randomly initialised weights, under the *same*
  linear probe (the cheap check from the literature: how much of the probe's accuracy comes
  from pretraining, and how much from the architecture alone).
- ``scratch``: the same architecture, randomly initialised, trained end to end (every layer at
  the modality's ``scratch_lr``, early stopping on a held-out part) within a time budget.

Every baseline returns test-set probabilities with columns in the transfer model's class order.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from headstart.backbones.base import Backbone
from headstart.data.dataset import Dataset
from headstart.errors import ConfigError
from headstart.features import embed_batches
from headstart.modalities import get_modality
from headstart.strategies.linear_probe import DEFAULT_CS, choose_C, fit_probe

logger = logging.getLogger(__name__)


@dataclass
class Baseline:
    """A baseline's test probabilities and what it cost."""

    name: str
    kind: str
    proba: np.ndarray
    fit_seconds: float
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def _targets(data: Dataset, classes: list[Any]) -> np.ndarray:
    return np.array([classes.index(v) for v in data.labels])


def trivial(train: Dataset, test: Dataset, classes: list[Any]) -> Baseline:
    """The majority class, with the training class shares as probabilities."""
    started = time.perf_counter()
    counts = np.bincount(_targets(train, classes), minlength=len(classes)).astype(np.float64)
    priors = counts / counts.sum()
    proba = np.tile(priors, (len(test), 1))
    return Baseline(name=f"trivial: always {classes[int(priors.argmax())]}", kind="trivial", proba=proba,
                    fit_seconds=time.perf_counter() - started, note="the most frequent training class")


CLASSIC_RECIPES = ("tfidf", "dense")


def classic(train: Dataset, test: Dataset, classes: list[Any], seed: int = 0) -> Baseline:
    """The modality's classic model without pretraining (its ``classic_recipe``), C cross-validated:
    TF-IDF + logistic regression on the strings its ``classic_inputs`` gives (``"tfidf"``), or the
    linear probe on the 2-D array they are (``"dense"``)."""
    started = time.perf_counter()
    y = _targets(train, classes)
    modality = get_modality(train.modality)
    if modality.classic_recipe == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1, max_features=200_000)
        x_train = vectorizer.fit_transform(modality.classic_inputs(train.items, train.locators))
        C, details = choose_C(x_train, y, C=None, Cs=[*DEFAULT_CS, 1000.0], cv=5, class_weight=None,
                              max_iter=2000, seed=seed)
        model = LogisticRegression(C=C, max_iter=2000).fit(x_train, y)
        proba = _full_proba(model.predict_proba(vectorizer.transform(modality.classic_inputs(test.items, test.locators))),
                            model.classes_, len(classes))
    elif modality.classic_recipe == "dense":
        x_train = np.asarray(modality.classic_inputs(train.items, train.locators), dtype=np.float32)
        head, details = fit_probe(x_train, y, seed=seed)
        proba = head.predict_proba(np.asarray(modality.classic_inputs(test.items, test.locators), dtype=np.float32))
        C = details["C"]
    else:
        raise ConfigError(f"the {modality.name} modality's classic_recipe is {modality.classic_recipe!r}; "
                          f"set it to one of {', '.join(CLASSIC_RECIPES)} in {type(modality).__qualname__}.")
    return Baseline(name=modality.classic_name, kind="classic", proba=proba, fit_seconds=time.perf_counter() - started,
                    note=f"{modality.classic_note}, C={C:g} (cross-validated)", details={"C": C})


def _full_proba(proba: np.ndarray, present: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((proba.shape[0], n_classes))
    out[:, present] = proba
    return out


def reinitialised(backbone: Backbone, seed: int) -> Backbone:
    """A copy of ``backbone`` with every layer's weights drawn afresh (PyTorch's default init).

    Every module with ``reset_parameters`` (linear, convolution, normalisation, embedding
    layers) is reset, seeded, so the copy keeps the architecture and preprocessing and loses
    everything pretraining learned.
    """
    clone = copy.deepcopy(backbone)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in clone.modules():
            if module is not clone and hasattr(module, "reset_parameters"):
                module.reset_parameters()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone.eval()


def random_features(backbone: Backbone, train: Dataset, test: Dataset, classes: list[Any], *, seed: int = 0,
                    device: torch.device | None = None, batch_size: int = 32) -> tuple[Baseline, np.ndarray, np.ndarray]:
    """The same linear probe on features of the randomly initialised backbone.

    Returns the baseline and the random features of ``train`` and ``test`` (for learning curves).
    """
    started = time.perf_counter()
    random_net = reinitialised(backbone, seed)
    f_train = embed_batches(random_net, train.items, train.locators, device=device, batch_size=batch_size)
    f_test = embed_batches(random_net, test.items, test.locators, device=device, batch_size=batch_size)
    head, details = fit_probe(f_train, _targets(train, classes), seed=seed)
    baseline = Baseline(name=f"random features: {backbone.spec.name}, random weights + the same probe",
                        kind="random-features", proba=head.predict_proba(f_test),
                        fit_seconds=time.perf_counter() - started,
                        note="isolates what pretraining adds over the architecture", details={"C": details["C"]})
    return baseline, f_train, f_test


def scratch(backbone: Backbone, train: Dataset, test: Dataset, classes: list[Any], *, budget_seconds: float,
            seed: int = 0, device: torch.device | None = None, epochs: int = 30) -> Baseline:
    """The same architecture, randomly initialised, trained end to end for at most ``budget_seconds``."""
    from headstart.strategies import FitContext, create_strategy

    started = time.perf_counter()
    device = device or torch.device("cpu")
    net = reinitialised(backbone, seed)
    lr = get_modality(backbone.spec.modality).scratch_lr
    strategy = create_strategy("full", epochs=epochs, lr=lr, layer_decay=1.0, patience=5, warmup=0.05)

    def embed(ds: Dataset) -> np.ndarray:
        return embed_batches(net, ds.items, ds.locators, device=device)

    context = FitContext(embed=embed, seed=seed, device=device,
                         embed_with=lambda b, ds: embed_batches(b, ds.items, ds.locators, device=device),
                         deadline=time.monotonic() + budget_seconds)
    fitted = strategy.fit(net, train, None, context)
    proba = fitted.head.predict_proba(embed_batches(fitted.backbone, test.items, test.locators, device=device))
    order = [fitted.classes.index(c) for c in classes]
    epochs_run = sum(p.get("epochs_run", 0) for p in fitted.details.get("phases", []))
    stopped = any(p.get("stopped_for_time") for p in fitted.details.get("phases", []))
    note = (f"{epochs_run} epoch{'' if epochs_run == 1 else 's'} at lr {lr:g}, every layer trains"
            + (f"; stopped by its {budget_seconds:.0f}s budget" if stopped else ""))
    return Baseline(name=f"scratch: {backbone.spec.name} trained from random weights", kind="scratch",
                    proba=proba[:, order], fit_seconds=time.perf_counter() - started, note=note,
                    details={"epochs_run": epochs_run, "stopped_for_time": stopped, "budget_seconds": budget_seconds})

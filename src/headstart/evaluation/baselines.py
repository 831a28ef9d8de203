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
  the modality's ``scratch_lr``, early stopping on a held-out part) within a wall-clock budget
  that covers its whole fit: training stops early enough to leave time for scoring.

Every baseline returns test-set probabilities with columns in the transfer model's class order.
"""

from __future__ import annotations

import copy
import logging
import math
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
from headstart.strategies.linear_probe import DEFAULT_CS, QUICK, choose_C, fit_probe

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
        head, details = fit_probe(x_train, y, seed=seed, **QUICK)
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

    Returns the baseline and the random features of ``train`` and ``test`` (for learning curves,
    and for :func:`scratch`, which starts from the same random weights: see :class:`KnownFeatures`).
    The baseline's details hold what they cost: ``seconds_per_item`` (features), ``probe_seconds``.
    """
    started = time.perf_counter()
    random_net = reinitialised(backbone, seed)
    f_train = embed_batches(random_net, train.items, train.locators, device=device, batch_size=batch_size)
    f_test = embed_batches(random_net, test.items, test.locators, device=device, batch_size=batch_size)
    embedded = time.perf_counter()
    head, details = fit_probe(f_train, _targets(train, classes), seed=seed, **QUICK)
    baseline = Baseline(name=f"random features: {backbone.spec.name}, random weights + the same probe",
                        kind="random-features", proba=head.predict_proba(f_test),
                        fit_seconds=time.perf_counter() - started,
                        note="isolates what pretraining adds over the architecture",
                        details={"C": details["C"], "seconds_per_item": (embedded - started) / max(1, len(train) + len(test)),
                                 "probe_seconds": time.perf_counter() - embedded})
    return baseline, f_train, f_test


@dataclass
class KnownFeatures:
    """Features that ``reinitialised(backbone, seed)`` already gave, by item content hash, and what they cost.

    The scratch baseline starts from exactly those weights (same backbone, same seed), so its linear-probe
    start, its validation judge and (when training does not beat that start) its test scores need no
    forward pass of their own; the costs size the time it keeps back for scoring.
    """

    vectors: dict[str, np.ndarray]
    seconds_per_item: float
    probe_seconds: float = 0.0

    @classmethod
    def of(cls, parts: list[tuple[Dataset, np.ndarray]], costs: dict[str, Any]) -> KnownFeatures:
        """From (dataset, its features) pairs and :func:`random_features`' details."""
        vectors = {h: v for data, feats in parts for h, v in zip(data.item_hashes(), feats)}
        return cls(vectors, float(costs["seconds_per_item"]), float(costs.get("probe_seconds", 0.0)))

    def lookup(self, data: Dataset) -> np.ndarray | None:
        """The features of every item of ``data``, or ``None`` when one is not known."""
        hashes = data.item_hashes()
        if not all(h in self.vectors for h in hashes):
            return None
        return np.stack([self.vectors[h] for h in hashes]).astype(np.float32, copy=False) if hashes else None


SCRATCH_BUDGET_FLOOR = 15.0
"""The least default budget of :func:`scratch` (seconds): otherwise the transfer fit's own time, so both get the
same compute; a fit from cached features takes seconds, and scratch still gets a few batches."""


def scratch(backbone: Backbone, train: Dataset, test: Dataset, classes: list[Any], *, budget_seconds: float,
            seed: int = 0, device: torch.device | None = None, epochs: int = 30,
            known: KnownFeatures | None = None) -> Baseline:
    """The same architecture, randomly initialised, trained end to end within ``budget_seconds`` of wall clock.

    The budget covers the whole baseline: training stops (between batches) early enough to leave the
    time that scoring the validation and test items and refitting the probe are expected to take.
    ``known``: the features these random weights give (from :func:`random_features`), reused, not recomputed.
    """
    from headstart.strategies import FitContext, create_strategy

    started, clock = time.perf_counter(), time.monotonic()
    device = device or torch.device("cpu")
    net = reinitialised(backbone, seed)
    start_identity = net.identity() if known is not None else None
    lr = get_modality(backbone.spec.modality).scratch_lr
    val_fraction = 0.15
    strategy = create_strategy("full", epochs=epochs, lr=lr, layer_decay=1.0, patience=5, warmup=0.05,
                               val_fraction=val_fraction)
    if known is None:
        known = KnownFeatures({}, _seconds_per_item(net, test, device))

    def embed_with(b: Backbone, ds: Dataset) -> np.ndarray:
        found = known.lookup(ds) if known.vectors else None
        if found is not None and b.identity() == start_identity:
            return found
        return embed_batches(b, ds.items, ds.locators, device=device)

    # Kept back for after training: the trained network's features of the validation and test items,
    # and a probe refit (when training does not beat its start).
    reserve = known.seconds_per_item * math.ceil(val_fraction * len(train)) + max(
        known.seconds_per_item * len(test), known.probe_seconds)  # test features, or the refit that makes them free
    context = FitContext(embed=lambda ds: embed_with(net, ds), seed=seed, device=device, embed_with=embed_with,
                         deadline=clock + max(0.0, budget_seconds - reserve))
    fitted = strategy.fit(net, train, None, context)
    proba = fitted.head.predict_proba(embed_with(fitted.backbone, test))
    order = [fitted.classes.index(c) for c in classes]
    phases = [p for p in fitted.details.get("phases", []) if "epochs_run" in p]
    epochs_run = sum(p["epochs_run"] for p in phases)
    stopped_at = next((p["stopped_at"] for p in phases if p.get("stopped_for_time")), None)
    took = time.perf_counter() - started
    note = f"{_epochs(epochs_run, stopped_at)} at lr {lr:g}, every layer trains; {seconds(budget_seconds)}s budget"
    if stopped_at is not None:  # its deadline was budget - reserve seconds after the start
        at = max(0.0, budget_seconds - reserve) + stopped_at["past_deadline"]
        stopped_at = {**stopped_at, "seconds_into_baseline": round(at, 2)}
        note += f", which stopped training {_where(stopped_at)} at {at:.0f}s"
    if fitted.details.get("kept_probe"):
        note += "; no epoch beat its linear-probe start, so the result is that probe on the random weights"
    return Baseline(name=f"scratch: {backbone.spec.name} trained from random weights", kind="scratch",
                    proba=proba[:, order], fit_seconds=took, note=note,
                    details={"epochs_run": epochs_run, "stopped_for_time": stopped_at is not None,
                             "stopped_at": stopped_at, "budget_seconds": budget_seconds,
                             "reserved_seconds": round(reserve, 2), "kept_probe": bool(fitted.details.get("kept_probe"))})


def seconds(value: float) -> str:
    """A budget for people: ``85`` (not ``85.371``), ``1.5``, ``0.01``."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _epochs(epochs_run: int, stopped_at: dict[str, Any] | None) -> str:
    """``"3 epochs"``, or with an epoch the budget cut: ``"2 epochs + 5 of 11 batches"``."""
    cut = stopped_at is not None and stopped_at.get("batch", 0) < stopped_at.get("batches", 0)
    whole = epochs_run - 1 if cut else epochs_run
    text = f"{whole} epoch{'' if whole == 1 else 's'}"
    return text + (f" + {stopped_at['batch']} of {stopped_at['batches']} batches" if cut else "")


def _where(stopped_at: dict[str, Any]) -> str:
    if stopped_at["batch"] < stopped_at["batches"]:
        return f"during epoch {stopped_at['epoch'] + 1}"
    return f"after epoch {stopped_at['epoch'] + 1} (the next would have overrun)"


def _seconds_per_item(net: Backbone, data: Dataset, device: torch.device, n: int = 8) -> float:
    """Forward-pass seconds per item of ``net``, timed on (up to) ``n`` items of ``data``."""
    if not len(data):
        return 0.0
    idx = list(range(min(n, len(data))))
    started = time.perf_counter()
    embed_batches(net, [data.items[i] for i in idx], [data.locators[i] for i in idx], device=device)
    return (time.perf_counter() - started) / len(idx)

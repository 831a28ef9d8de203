"""``TransferClassifier``: the scikit-learn-style estimator at the heart of the Python API."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from headstart.backbones import Backbone, create_backbone
from headstart.bundle import read_bundle, save_bundle
from headstart.data import Dataset, check_classes, check_split_classes, from_memory
from headstart.embedding_cache import EmbeddingCache
from headstart.errors import BackboneError, ConfigError, NotFittedError
from headstart.evaluation import check_known_labels, classification_metrics, slice_metrics
from headstart.features import extract_features, resolve_device
from headstart.heads import LinearHead
from headstart.hybrid import HYBRID_MODES, Hybrid, read_hybrid, stack
from headstart.modalities import get_modality
from headstart.progress import ProgressReporter
from headstart.provenance import environment, package_versions, utc_now
from headstart.strategies import STRATEGIES, FitContext, create_strategy
from headstart.strategies.settings import check_settings, settings_of

logger = logging.getLogger(__name__)

# Estimator parameters that are strategy settings (the rest configure data, backbone and device;
# ``batch_size`` here is the feature-extraction batch, a strategy's own is a setting).
STRATEGY_PARAMETERS = ("C", "cv", "epochs", "lr", "layer_decay", "unfreeze", "lora_rank", "patience", "loss",
                       "label_smoothing", "augment", "grad_accum", "schedule", "budget", "class_weight")


class TransferClassifier(ClassifierMixin, BaseEstimator):
    """A pretrained backbone adapted to your labels.

    Parameters are only stored here; they are checked in :meth:`fit`.

    Args:
        backbone: a backbone name (``minilm``, ``efficientnet_lite0``, ``timm:ARCH``,
            ``hf:ID``, a local folder); ``None`` picks the embedded default for the data's
            modality (``minilm`` for text, ``efficientnet_lite0`` for images).
        weights: a local ``.safetensors`` checkpoint for a ``timm:ARCH`` backbone.
        strategy: how to adapt it; see ``headstart.strategies.STRATEGIES``.
        C: inverse regularisation of the linear head; ``None`` chooses it by cross-validation.
        epochs, lr, layer_decay, unfreeze, lora_rank, patience, loss, label_smoothing, augment,
            grad_accum, schedule: fine-tuning settings (see ``headstart strategies``); ``None``
            means the strategy's default. Giving one the chosen strategy does not use is a
            ``ConfigError`` naming the strategies that use it.
        budget: time budget of the ``auto`` strategy (``"10m"``, ``"90s"``...).
        strategy_params: any other setting of the chosen strategy, by name (e.g.
            ``{"max_pairs": 320}`` for ``contrastive``, ``{"stages": 2}`` for ``progressive``;
            ``headstart strategies`` lists them), validated against its declared type and range.
        cv: cross-validation folds for choosing ``C``.
        class_weight: ``None`` or ``"balanced"`` (also in the linear probe fine-tuning starts from
            and falls back to).
        hybrid: ``"auto"`` stacks the classic model (TF-IDF for text) with the transfer model when
            that clearly beats the transfer model alone on out-of-fold predictions
            (:mod:`headstart.hybrid`); ``"off"`` never does.
        max_length: token limit for text backbones (``None``: the backbone's default).
        windows: text backbones: the most windows of ``max_length`` tokens read per long text,
            their pooled vectors averaged (``None``: the backbone's default, 16; ``1``: only the
            first ``max_length`` tokens). Texts that fit one window are unaffected.
        batch_size: items per forward pass.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        cache: ``True`` for the default embedding cache, a folder path, or ``False``.
        random_state: seed for every random step.

    Attributes:
        classes_: the class labels, in the order of ``predict_proba``'s columns.
        backbone_: the fitted model's backbone.
        head_: the classification head.
        n_features_in_: the backbone's feature size.
        strategy_details_: what the strategy chose and measured (``"hybrid"``: whether the
            classic model was stacked in, and the evidence).
        hybrid_: the stacked classic model (:class:`headstart.hybrid.Hybrid`) or ``None``.
        metrics_: held-out metrics (``{"test": {...}}``) when the data had a test split.
        fit_info_: seed, versions, data fingerprint and timing of the fit.

    Example:
        >>> from headstart import TransferClassifier
        >>> clf = TransferClassifier(backbone="minilm", random_state=0)  # doctest: +SKIP
        >>> clf.fit(["great product", "broke in a day"], ["pos", "neg"])  # doctest: +SKIP
        >>> clf.predict(["works well"])                                   # doctest: +SKIP
    """

    def __init__(
        self,
        backbone: str | None = None,
        strategy: str = "linear-probe",
        *,
        weights: str | None = None,
        C: float | None = None,
        cv: int = 5,
        epochs: int | None = None,
        lr: float | None = None,
        layer_decay: float | None = None,
        unfreeze: int | None = None,
        lora_rank: int | None = None,
        patience: int | None = None,
        loss: str | None = None,
        label_smoothing: float | None = None,
        augment: bool | None = None,
        grad_accum: int | None = None,
        schedule: str | None = None,
        budget: str | float | None = None,
        strategy_params: dict[str, Any] | None = None,
        class_weight: str | None = None,
        hybrid: str = "auto",
        max_length: int | None = None,
        windows: int | None = None,
        batch_size: int = 32,
        device: str = "auto",
        cache: bool | str | Path = True,
        random_state: int | None = 0,
    ) -> None:
        self.backbone = backbone
        self.strategy = strategy
        self.weights = weights
        self.C = C
        self.cv = cv
        self.epochs = epochs
        self.lr = lr
        self.layer_decay = layer_decay
        self.unfreeze = unfreeze
        self.lora_rank = lora_rank
        self.patience = patience
        self.loss = loss
        self.label_smoothing = label_smoothing
        self.augment = augment
        self.grad_accum = grad_accum
        self.schedule = schedule
        self.budget = budget
        self.strategy_params = strategy_params
        self.class_weight = class_weight
        self.hybrid = hybrid
        self.max_length = max_length
        self.windows = windows
        self.batch_size = batch_size
        self.device = device
        self.cache = cache
        self.random_state = random_state

    # ----------------------------------------------------------------- helpers
    def _seed(self) -> int:
        if self.random_state is None:
            return int(np.random.SeedSequence().entropy % (2**31))
        if not isinstance(self.random_state, (int, np.integer)):
            raise ConfigError(f"random_state={self.random_state!r}; give an int or None.")
        return int(self.random_state)

    def _cache(self) -> EmbeddingCache | None:
        if self.cache is False or self.cache is None:
            return None
        return EmbeddingCache(None if self.cache is True else self.cache)

    def _as_dataset(self, X: Any, y: Any = None, *, modality: str | None = None) -> Dataset:
        if isinstance(X, Dataset):
            return X
        return from_memory(X, y, modality=modality)

    def _build_backbone(self, modality: str, name: str | None = None) -> Backbone:
        kind = get_modality(modality)
        name = name or self.backbone or kind.default_backbone
        # windows only when set: a plugin modality's older backbone_options(max_length) still works.
        kwargs: dict[str, Any] = dict(kind.backbone_options(self.max_length, **(
            {"windows": self.windows} if self.windows is not None else {})))
        if self.weights:
            if not name.startswith("timm:"):
                raise ConfigError(f"weights={self.weights!r} applies to timm:ARCH backbones, not {name!r}.")
            kwargs["weights"] = str(self.weights)
        backbone = create_backbone(name, **kwargs)
        if backbone.spec.modality != modality:
            raise ConfigError(
                f"backbone {name!r} takes {backbone.spec.modality} but the data is {modality}; use "
                f"a {modality} backbone such as {kind.default_backbone!r}."
            )
        return backbone

    def strategy_settings(self) -> dict[str, Any]:
        """The settings the chosen strategy gets: the estimator's strategy parameters and
        ``strategy_params``, validated against the strategy's declared settings
        (:mod:`headstart.strategies.settings`). :meth:`fit` uses them; call it to check the
        parameters before any work (``headstart.fit`` does).

        A parameter left at its default is passed only to a strategy that uses it; one given
        explicitly to a strategy that does not use it is an error naming the strategies that do
        (nothing is dropped silently).

        Returns:
            Setting name -> value, as the strategy receives them.

        Raises:
            ConfigError: an unknown strategy (with a "did you mean"), a setting the strategy does
                not use, a value of the wrong type or range, a setting given twice, or
                ``strategy_params`` that is not a dict.

        Example:
            >>> TransferClassifier(strategy="full", epochs=3).strategy_settings()
            {'epochs': 3}
        """
        if self.strategy not in STRATEGIES:
            create_strategy(self.strategy)  # raises: unknown strategy, with a "did you mean"
        declared = settings_of(self.strategy)
        defaults = {n: p.default for n, p in inspect.signature(type(self).__init__).parameters.items()}
        given = {k: getattr(self, k) for k in STRATEGY_PARAMETERS if getattr(self, k) is not None}
        params = {k: v for k, v in given.items() if k in declared or v != defaults[k]}
        extra = self.strategy_params or {}
        if not isinstance(extra, dict):
            raise ConfigError(f"strategy_params={extra!r}; give a dict of settings, e.g. {{'steps': 40}}.")
        for k, v in extra.items():
            if k in params and params[k] != v and params[k] != defaults[k]:
                raise ConfigError(f"the {k!r} setting is given twice, as {k}={params[k]!r} and in strategy_params "
                                  f"as {v!r}; keep one.")
        return check_settings(self.strategy, {**params, **extra})

    def _check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(X, y) first, or load a "
                "saved bundle with headstart.load(path)."
            )

    def _validate(self) -> None:
        if not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size!r}; give a positive integer.")
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 1):
            raise ConfigError(f"max_length={self.max_length!r}; give a positive integer or None.")
        if self.windows is not None and (not isinstance(self.windows, (int, np.integer)) or isinstance(self.windows, bool)
                                         or self.windows < 1):
            raise ConfigError(f"windows={self.windows!r}; give a positive integer (1: only the first max_length "
                              "tokens of a text) or None.")
        if self.hybrid not in HYBRID_MODES:
            raise ConfigError(f"hybrid={self.hybrid!r}; give one of {', '.join(HYBRID_MODES)}.")

    # --------------------------------------------------------------- public API
    def fit(
        self,
        X: Any,
        y: Sequence[Any] | None = None,
        *,
        progress: ProgressReporter | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        callbacks: dict[str, list[Any]] | None = None,
    ) -> TransferClassifier:
        """Adapt the backbone to labeled data.

        Args:
            X: texts, image paths, PIL images or arrays; or a :class:`headstart.data.Dataset`
                (then its labels are used, its ``train`` and ``val`` splits train the model and
                its ``test`` split is held out to compute ``metrics_``).
            y: labels, one per item (ignored when ``X`` is a ``Dataset``).
            progress: receives progress updates (the CLI draws them).
            run_dir: where fine-tuning strategies write a checkpoint after every epoch.
            resume: continue an interrupted fit from ``run_dir``'s checkpoint (same data and
                parameters give the same result as an uninterrupted fit).
            callbacks: training events (``on_epoch_end``, ``on_batch_end``) -> functions.

        Returns:
            self
        """
        started = time.perf_counter()
        self._validate()
        if run_dir is not None:  # before any work: an unwritable run folder fails now, not after an epoch
            from headstart.atomic import check_writable

            check_writable(run_dir, fix="choose another run_dir")
        seed = self._seed()
        data = self._as_dataset(X, y)
        if data.splits is not None:
            check_split_classes(data)  # before any work: a class seen only in evaluation fails scoring
            train, val, test = data.split("train"), data.split("val"), data.split("test")
        else:
            train, val, test = data, None, None
        check_classes(train)
        selection = self._select_backbone(train, val, progress) if self.backbone == "auto" else None
        backbone = self._build_backbone(data.modality, selection["recommended"] if selection else None)
        strategy = create_strategy(self.strategy, **self.strategy_settings())
        device = resolve_device(self.device)
        cache = self._cache()

        def embed_with(other: Backbone, ds: Dataset) -> np.ndarray:
            return extract_features(other, ds, cache=cache, batch_size=self.batch_size, device=device,
                                    progress=progress)

        context = FitContext(embed=lambda ds: embed_with(backbone, ds), seed=seed, device=device, run_dir=Path(run_dir) if run_dir else None,
                             resume=resume, callbacks=callbacks or {}, embed_with=embed_with)
        if progress is not None:
            context.progress = progress
        fitted = strategy.fit(backbone, train, val if val is not None and len(val) else None, context)
        self.backbone_ = fitted.backbone
        self.head_ = fitted.head
        self.classes_ = np.array(fitted.classes)
        self.n_features_in_ = int(fitted.head.in_features)
        self.strategy_details_ = {"name": fitted.strategy, "params": fitted.params, **fitted.details}
        self.hybrid_, self.strategy_details_["hybrid"] = stack(fitted, self.hybrid, seed=seed,
                                                               class_weight=self.class_weight)
        self.backbone_changed_ = fitted.backbone_changed
        self.metrics_ = {}
        if test is not None and len(test):
            check_known_labels(test.labels, fitted.classes, f"{data.source} (test split)")
            proba = self._proba(test, progress)
            self.metrics_["test"] = classification_metrics(test.labels, proba, fitted.classes)
            if test.slices:
                self.metrics_["test"]["slices"] = slice_metrics(test.labels, proba, fitted.classes, test.slices)
        self.fit_info_ = {
            "seed": seed,
            "created": utc_now(),
            "fit_seconds": round(time.perf_counter() - started, 3),
            "device": str(device),
            "versions": package_versions(),
            "environment": environment(),
            "data": data.describe(),
        }
        if selection is not None:
            self.fit_info_["backbone_selection"] = selection
        return self

    def _select_backbone(self, train: Dataset, val: Dataset | None, progress: ProgressReporter | None) -> dict[str, Any]:
        """``backbone="auto"``: rank the offline candidates on the training labels (never the test
        split) and take the recommendation; the whole table is kept in ``fit_info_``."""
        from headstart.data.dataset import concat
        from headstart.transferability import rank

        pool = concat(train, val) if val is not None and len(val) else train
        table = rank(pool, "offline", cache=self.cache, batch_size=self.batch_size, device=self.device,
                     seed=self._seed(), progress=progress)
        if table.recommended is None:
            raise BackboneError(f"backbone='auto' found no usable candidate: {table.reason}")
        logger.info("backbone auto: %s", table.reason)
        return table.to_dict()

    def _proba(self, data: Dataset, progress: ProgressReporter | None = None) -> np.ndarray:
        features = extract_features(self.backbone_, data, cache=self._cache(), batch_size=self.batch_size,
                                    device=resolve_device(self.device), progress=progress)
        self.head_.to("cpu")
        proba = self.head_.predict_proba(features)
        hybrid = getattr(self, "hybrid_", None)
        if hybrid is not None:
            proba = hybrid.blend(proba, get_modality(data.modality).classic_inputs(data.items, data.locators))
        return proba

    def _data_for_inference(self, X: Any) -> Dataset:
        self._check_fitted()
        return self._as_dataset(X, modality=self.backbone_.spec.modality)

    def predict_proba(self, X: Any, *, progress: ProgressReporter | None = None) -> np.ndarray:
        """Class probabilities, shape ``(n, n_classes)``, columns in ``classes_`` order."""
        return self._proba(self._data_for_inference(X), progress)

    def predict(self, X: Any, *, progress: ProgressReporter | None = None) -> np.ndarray:
        """The most probable class for each item."""
        proba = self.predict_proba(X, progress=progress)
        return self.classes_[proba.argmax(axis=1)]

    def transform(self, X: Any, *, progress: ProgressReporter | None = None) -> np.ndarray:
        """The backbone's features for each item, shape ``(n, n_features_in_)``."""
        data = self._data_for_inference(X)
        return extract_features(self.backbone_, data, cache=self._cache(), batch_size=self.batch_size,
                                device=resolve_device(self.device), progress=progress)

    def evaluate(self, X: Any, y: Sequence[Any] | None = None, *, progress: ProgressReporter | None = None) -> dict[str, Any]:
        """Every metric on labeled data (a ``Dataset`` or items + labels)."""
        data = self._data_for_inference(X) if isinstance(X, Dataset) else self._as_dataset(X, y, modality=self.backbone_.spec.modality)
        self._check_fitted()
        labels = data.require_labels("evaluation")
        check_known_labels(labels, list(self.classes_), data.source)
        proba = self._proba(data, progress)
        metrics = classification_metrics(labels, proba, list(self.classes_))
        if data.slices:
            metrics["slices"] = slice_metrics(labels, proba, list(self.classes_), data.slices)
        return metrics

    def prove(self, X: Any, y: Sequence[Any] | None = None, *, train: Any = None, compare: bool = True,
              learning_curve: bool = True, scratch_budget: float | None = None, seeds: int = 1,
              step: Any = None) -> dict[str, Any]:
        """Prove the fitted model on held-out data: its metrics, and whether transfer beats baselines.

        The baselines (trivial, a classic model, random weights, from scratch) and the learning
        curve learn from exactly the labels this model learned from, so they need the training
        data: pass it as ``train``, or give ``X`` as the ``Dataset`` the model was fitted on,
        with its ``train``/``val``/``test`` splits. With ``compare=False`` and
        ``learning_curve=False`` only the held-out items are needed.

        Args:
            X: held-out items the model never saw; or the fitted-on ``Dataset`` with splits (then
                ``y`` and ``train`` are not given).
            y: the labels of ``X``.
            train: the labeled data the model was fitted on: ``(items, labels)`` or a ``Dataset``
                (all its items count as training data).
            compare, learning_curve, scratch_budget, seeds: see
                :func:`headstart.evaluation.proof.prove`.
            step: called with a short description of each stage.

        Returns:
            The evidence (the dict ``report.html`` renders): ``verdict``, ``comparison``,
            ``metrics``, ``learning_curve``, ``mistakes``, ``latency``...

        Example:
            >>> clf = TransferClassifier(backbone="minilm").fit(X_train, y_train)     # doctest: +SKIP
            >>> clf.prove(X_test, y_test, train=(X_train, y_train))["verdict"]["label"]  # doctest: +SKIP
        """
        from headstart.data.dataset import concat
        from headstart.evaluation.proof import prove

        self._check_fitted()
        modality = self.backbone_.spec.modality
        if isinstance(X, Dataset) and X.splits is not None:
            if y is not None or train is not None:
                raise ConfigError("prove(dataset) uses the dataset's own splits; give y= and train= only with "
                                  "held-out items.")
            return prove(self, X, compare=compare, learning_curve=learning_curve, scratch_budget=scratch_budget,
                         seeds=seeds, step=step)
        held_out = self._as_dataset(X, y, modality=modality)
        check_known_labels(held_out.require_labels("prove"), list(self.classes_), held_out.source)
        if train is None:
            if compare or learning_curve:
                raise ConfigError("prove needs the training data for the baselines and the learning curve (they "
                                  "learn from the same labels as this model): pass train=(X_train, y_train), or "
                                  "compare=False, learning_curve=False for the model's own evidence only.")
            data = held_out.subset(range(len(held_out)))
            data.splits = ["test"] * len(data)
        else:
            if not isinstance(train, Dataset) and not (isinstance(train, tuple) and len(train) == 2):
                raise ConfigError(f"train= takes (items, labels) or a Dataset; got {type(train).__name__}.")
            learned = train if isinstance(train, Dataset) else self._as_dataset(*train, modality=modality)
            learned.require_labels("prove's baselines")
            data = concat(learned, held_out)
            data.splits = ["train"] * len(learned) + ["test"] * len(held_out)
        return prove(self, data, compare=compare, learning_curve=learning_curve, scratch_budget=scratch_budget,
                     seeds=seeds, step=step)

    def save(self, path: str | Path, *, extra: dict[str, Any] | None = None,
             attachments: dict[str, str] | None = None) -> Path:
        """Write the fitted model as a bundle folder (atomically); see :func:`headstart.load`.

        ``extra`` goes into the manifest; ``attachments`` (name -> text, e.g. ``report.html``)
        are written beside it in the same atomic step.
        """
        self._check_fitted()
        return save_bundle(self, path, extra=extra, attachments=attachments)

    def _set_fitted(self, backbone: Backbone, head: LinearHead, classes: list[Any], manifest: dict[str, Any],
                    hybrid: Hybrid | None = None) -> None:
        """Restore learned state from a bundle (used by :func:`headstart.load`)."""
        self.backbone_ = backbone
        self.head_ = head
        self.hybrid_ = hybrid
        self.classes_ = np.array(classes)
        self.n_features_in_ = int(head.in_features)
        self.strategy_details_ = manifest.get("strategy", {})
        self.backbone_changed_ = bool(manifest["backbone"].get("weights_in_bundle"))
        self.metrics_ = manifest.get("metrics", {})
        self.fit_info_ = manifest.get("fit", {})


def load_bundle(path: str | Path) -> TransferClassifier:
    """Load a bundle written by :meth:`TransferClassifier.save` (verifying it first); see :func:`headstart.load`."""
    backbone, head, manifest = read_bundle(path)
    params = TransferClassifier().get_params()
    params.update({k: v for k, v in manifest.get("params", {}).items() if k in params})
    clf = TransferClassifier(**params)
    clf._set_fitted(backbone, head, manifest["labels"], manifest, read_hybrid(path, manifest))
    return clf

"""The strategy contract and registry.

A strategy turns a backbone and labeled data into a fitted model (backbone, possibly
adapted, + head). Strategies never read files or print: they get features through
:class:`FitContext` and report progress through it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from headstart.backbones.base import Backbone
from headstart.data.dataset import Dataset
from headstart.errors import ConfigError
from headstart.heads import LinearHead
from headstart.progress import NullProgress, ProgressReporter
from headstart.strategies.settings import STRATEGIES, Setting, check_settings


@dataclass
class FitContext:
    """What a strategy may use besides the data.

    Attributes:
        embed: cached backbone features for a dataset, shape ``(n, feature_dim)``.
        seed: the run's seed; every random step derives from it.
        device: where to compute.
        progress: where to report progress.
        run_dir: where training strategies write checkpoints (``None``: no checkpoints).
        resume: continue from the checkpoint in ``run_dir``.
        callbacks: training events (``on_epoch_end``, ``on_batch_end``) -> functions.
        embed_with: cached features of a dataset under another (e.g. adapted) backbone.
        deadline: a ``time.monotonic()`` instant; training stops between batches once it has
            passed (or at an epoch boundary when the next epoch would pass it), keeping the best
            weights so far and recording where it stopped (``stopped_at``).
    """

    embed: Callable[[Dataset], np.ndarray]
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: ProgressReporter = field(default_factory=NullProgress)
    run_dir: Path | None = None
    resume: bool = False
    callbacks: dict[str, list[Callable[[dict[str, Any]], None]]] = field(default_factory=dict)
    embed_with: Callable[[Backbone, Dataset], np.ndarray] | None = None
    deadline: float | None = None


@dataclass
class FittedModel:
    """A backbone plus a head, and what the strategy decided on the way.

    Attributes:
        backbone: the (possibly adapted) backbone.
        head: maps the backbone's features to class logits.
        classes: class labels in the head's output order.
        strategy: the strategy's name.
        params: the strategy's hyperparameters as given.
        details: what it chose and measured (e.g. the selected regularisation).
        backbone_changed: whether the backbone's weights differ from the pretrained ones
            (then bundles store them).
        oof: the head's out-of-fold logits on ``oof_data`` (``(repeats, n, k)``) when its fit
            cross-validated them (the linear probe does), else ``None``; stacking uses them.
        oof_data: the data whose rows ``oof`` refers to.
    """

    backbone: Backbone
    head: LinearHead
    classes: list[Any]
    strategy: str
    params: dict[str, Any]
    details: dict[str, Any]
    backbone_changed: bool = False
    oof: np.ndarray | None = None
    oof_data: Dataset | None = None


class Strategy:
    """Base class: subclasses set ``name``, declare ``settings`` and implement :meth:`fit`.

    ``settings`` lists every keyword the strategy takes, with its type, default, range and
    help (:class:`~headstart.strategies.settings.Setting`); :func:`create_strategy` validates
    against it, and ``headstart strategies`` prints it.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    settings: ClassVar[tuple[Setting, ...]] = ()
    modalities: ClassVar[tuple[str, ...]] = ()
    """The modalities the strategy adapts (empty: any); :meth:`check_backbone` refuses others."""

    def __init__(self, **params: Any) -> None:
        # The declared settings are checked here too, so a strategy built directly (not through
        # create_strategy) gets the same validator and messages; derived entries pass through.
        names = {s.name for s in self.settings}
        check_settings(self.name, {k: v for k, v in params.items() if k in names})
        self.params = params

    def fit(self, backbone: Backbone, train: Dataset, val: Dataset | None, context: FitContext) -> FittedModel:
        raise NotImplementedError

    def check_backbone(self, backbone: Backbone) -> None:
        """A ConfigError when the strategy does not adapt the backbone's modality, naming those that do."""
        if self.modalities and backbone.spec.modality not in self.modalities:
            others = sorted(n for n, cls in STRATEGIES.items() if not cls.modalities and n != "auto")
            raise ConfigError(f"the {self.name} strategy is for {' or '.join(self.modalities)}; {backbone.spec.name} "
                              f"takes {backbone.spec.modality}. Use {', '.join(others)}.")


# STRATEGIES (name -> class) is defined in strategies/settings.py, the lower module, so that the
# validator there needs no import of this one; register_strategy below fills it.


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator adding a strategy to the registry under ``cls.name``."""
    if not cls.name or cls.name in STRATEGIES:
        raise ConfigError(f"strategy name {cls.name!r} is empty or already registered.")
    STRATEGIES[cls.name] = cls
    return cls


def create_strategy(name: str, **params: Any) -> Strategy:
    """A registered strategy by name, with a "did you mean" on typos; ``params`` are validated
    against its declared settings (:func:`~headstart.strategies.settings.check_settings`)."""
    if name not in STRATEGIES:
        close = difflib.get_close_matches(name, list(STRATEGIES), n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"unknown strategy {name!r}.{hint} Available: {', '.join(STRATEGIES)}.")
    return STRATEGIES[name](**check_settings(name, params))

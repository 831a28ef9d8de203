"""Adaptation strategies, each registered by name (``create_strategy("linear-probe")``).

``linear-probe`` (cached features + logistic regression), ``partial`` (last k layer groups),
``full`` (all layers, layer-wise learning-rate decay), ``progressive`` (gradual unfreezing),
``lora`` (low-rank adapters, merged for the bundle), ``contrastive`` (SetFit-style pairs, text)
and ``auto`` (chooses among them within a time budget).
"""

# Importing the modules registers the strategies, in this order.
from headstart.strategies import (  # noqa: F401
    auto,
    contrastive,
    full,
    linear_probe,
    lora,
    partial,
    progressive,
)
from headstart.strategies.base import (
    STRATEGIES,
    FitContext,
    FittedModel,
    Strategy,
    create_strategy,
    register_strategy,
)

__all__ = ["STRATEGIES", "FitContext", "FittedModel", "Strategy", "create_strategy", "register_strategy"]

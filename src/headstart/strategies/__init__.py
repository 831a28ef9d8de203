"""Adaptation strategies, each registered by name (``create_strategy("linear-probe")``)."""

from headstart.strategies import linear_probe  # noqa: F401  (registers the strategy)
from headstart.strategies.base import (
    STRATEGIES,
    FitContext,
    FittedModel,
    Strategy,
    create_strategy,
    register_strategy,
)

__all__ = ["STRATEGIES", "FitContext", "FittedModel", "Strategy", "create_strategy", "register_strategy"]

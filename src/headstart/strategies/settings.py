"""Typed strategy settings: each strategy declares its settings once, one validator checks them.

In the spirit of scikit-learn's ``_parameter_constraints``: a :class:`Setting` names a
setting's type, default, range or choices and help; :func:`check_settings` refuses a setting
the chosen strategy does not use (naming the strategies that do) and a value of the wrong type
or out of range, with one message shape::

    The 'lr' setting of strategy 'full' must be a float in (0, inf). Got -1.

:func:`parse_assignments` turns the CLI's ``--set KEY=VALUE`` strings into typed values.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart.errors import ConfigError

if TYPE_CHECKING:
    from headstart.strategies.base import Strategy

# name -> Strategy class, filled by strategies.base.register_strategy (re-exported there).
STRATEGIES: dict[str, type[Strategy]] = {}

TYPE_NAMES = {int: "an int", float: "a float", bool: "a bool", str: "a string", tuple: "a list of floats"}
_INTERVAL = re.compile(r"([\[(])\s*(-?inf|[-+0-9.e]+)\s*,\s*(-?inf|[-+0-9.e]+)\s*([\])])")


@dataclass(frozen=True)
class Setting:
    """One setting of a strategy.

    Attributes:
        name: the keyword the strategy takes.
        type: ``int``, ``float``, ``bool``, ``str`` or ``tuple`` (of floats).
        default: the value when not given.
        range: an interval such as ``"(0, inf)"`` or ``"[0, 1)"`` (numbers only).
        choices: the allowed values (strings only).
        nullable: whether ``None`` is allowed (it then means the strategy's own default).
        help: one line for ``headstart strategies`` and the README.
        check: an extra validator for what a type and range cannot say; raises ``ValueError``
            or ``ConfigError`` (e.g. a time budget ``"10m"``).
        kind: how to describe a valid value when the type alone does not say it.
    """

    name: str
    type: type
    default: Any
    help: str
    range: str | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    check: Callable[[Any], Any] | None = None
    kind: str | None = None

    def expected(self) -> str:
        """What a valid value looks like, for messages: ``a float in (0, inf)``."""
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = self.kind or TYPE_NAMES.get(self.type, self.type.__name__)
            if self.range:
                text += f" in {self.range}"
        return text + (" or None" if self.nullable else "")

    def describe(self) -> str:
        """``name (a float in (0, inf), default 0.0005): help``."""
        return f"{self.name} ({self.expected()}; default {self.default!r}): {self.help}"

    def valid(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.choices is not None:
            return isinstance(value, str) and value in self.choices
        if self.type is bool:
            ok = isinstance(value, (bool, np.bool_))
        elif self.type is int:
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        elif self.type is float:
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            ok = ok and not math.isnan(float(value))
        elif self.type is tuple:
            ok = (isinstance(value, (list, tuple)) and len(value) > 0
                  and all(Setting("_", float, None, "", self.range).valid(v) for v in value))
            return ok
        else:  # a string; with a check, numbers too (a budget in seconds)
            ok = isinstance(value, self.type) or (self.check is not None and isinstance(value, (int, float))
                                                  and not isinstance(value, bool))
        if ok and self.range:
            ok = _in_interval(float(value), self.range)
        if ok and self.check is not None:
            try:
                self.check(value)
            except (ValueError, ConfigError):
                return False
        return ok

    def parse(self, text: str) -> Any:
        """A command-line string as this setting's type (``"none"`` as ``None`` when nullable)."""
        raw = text.strip()
        if self.nullable and raw.lower() in ("none", "null"):
            return None
        if self.type is bool:
            lowered = raw.lower()
            if lowered in ("true", "yes", "on", "1"):
                return True
            if lowered in ("false", "no", "off", "0"):
                return False
            raise ValueError(raw)
        if self.type is int:
            return int(raw)
        if self.type is float:
            return float(raw)
        if self.type is tuple:
            return tuple(float(v) for v in raw.split(",") if v.strip())
        if self.check is not None:  # e.g. a budget: "90" is seconds, "10m" stays a string
            try:
                return float(raw)
            except ValueError:
                return raw
        return raw


CLASS_WEIGHT = Setting("class_weight", str, None, "'balanced' weights classes inversely to their frequency "
                       "(in every model the strategy fits, its linear probes included)",
                       choices=("balanced",), nullable=True)


def _in_interval(x: float, interval: str) -> bool:
    match = _INTERVAL.fullmatch(interval.strip())
    if match is None:  # a declaration error, not a user's
        raise ValueError(f"bad interval {interval!r}; write it like '(0, inf)' or '[0, 1)'")
    left, low, high, right = match.groups()
    lo, hi = float(low), float(high)
    return (lo < x if left == "(" else lo <= x) and (x < hi if right == ")" else x <= hi)


def with_defaults(settings: Iterable[Setting], **defaults: Any) -> tuple[Setting, ...]:
    """The same settings with other defaults (a subclass that changes a default)."""
    return tuple(replace(s, default=defaults[s.name]) if s.name in defaults else s for s in settings)


def settings_of(strategy: str | type[Strategy]) -> dict[str, Setting]:
    """A strategy's declared settings by name."""
    cls = STRATEGIES[strategy] if isinstance(strategy, str) else strategy
    return {s.name: s for s in cls.settings}


def users_of(name: str) -> list[str]:
    """The registered strategies that use a setting, in registry order."""
    return [n for n, cls in STRATEGIES.items() if any(s.name == name for s in cls.settings)]


def check_settings(strategy: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse settings ``strategy`` does not use and values of the wrong type or range.

    Returns the given settings unchanged (the strategy fills in its defaults).

    Raises:
        ConfigError: naming the setting, the strategy and what would fix it.
    """
    declared = settings_of(strategy)
    for name, value in given.items():
        if name not in declared:
            users = users_of(name)
            if users:
                raise ConfigError(f"The {name!r} setting is not used by strategy {strategy!r}; it is used by: "
                                  f"{', '.join(users)}. Drop it or choose one of those strategies.")
            close = difflib.get_close_matches(name, list(declared), n=2, cutoff=0.6)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ConfigError(f"{name!r} is not a setting of any strategy.{hint} Strategy {strategy!r} takes: "
                              f"{', '.join(declared) or 'none'} (see `headstart strategies`).")
        setting = declared[name]
        if not setting.valid(value):
            raise ConfigError(f"The {name!r} setting of strategy {strategy!r} must be {setting.expected()}. "
                              f"Got {value!r}.")
    return dict(given)


def parse_assignments(strategy: str, assignments: Iterable[str]) -> dict[str, Any]:
    """``["steps=40", "pairing=sampled"]`` as typed settings of ``strategy`` (the CLI's ``--set``).

    Raises:
        ConfigError: not ``KEY=VALUE``, a setting the strategy does not use, or a value that
            does not parse as the setting's type or is out of its range.
    """
    if strategy not in STRATEGIES:
        return {}  # the unknown strategy is reported (with a "did you mean") where it is created
    declared = settings_of(strategy)
    out: dict[str, Any] = {}
    for item in assignments:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set steps=40.")
        if name in out:
            raise ConfigError(f"--set {name} is given twice; keep one.")
        if name not in declared:
            check_settings(strategy, {name: None})  # the message naming who uses it
        try:
            out[name] = declared[name].parse(text)
        except ValueError:
            raise ConfigError(f"The {name!r} setting of strategy {strategy!r} must be "
                              f"{declared[name].expected()}. Got {text.strip()!r}.") from None
    return check_settings(strategy, out)

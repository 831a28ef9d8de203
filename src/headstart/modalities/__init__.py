"""Modalities as plugins: everything that depends on what an item *is* (a text, an image...).

A modality is one object (:class:`~headstart.modalities.base.Modality`) that core modules ask
instead of comparing names: ``get_modality(dataset.modality).preview(item, locator)``. The
built-in ones are :mod:`~headstart.modalities.text` and :mod:`~headstart.modalities.image`;
others are found, the first time any modality is asked for, by

- the entry point group ``headstart.modalities`` (a package's ``pyproject.toml``:
  ``[project.entry-points."headstart.modalities"] vectors = "mypkg.vectors"``), and
- the environment variable ``HEADSTART_MODALITIES``: module names separated by commas,

so subprocesses (``serve --workers N``, the torch-free ONNX engine) find the same set. A
plugin module registers its modality with :func:`register_modality` (and, if it brings one,
its backbone with :func:`headstart.backbones.register`) when imported.

Importing this package imports neither torch nor any modality: plugins load on first use.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import TYPE_CHECKING

from headstart.errors import ConfigError

if TYPE_CHECKING:
    from headstart.modalities.base import Modality

__all__ = ["ENTRY_POINT_GROUP", "ENV_VAR", "get_modality", "load_plugins", "modalities", "register_modality"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "headstart.modalities"
ENV_VAR = "HEADSTART_MODALITIES"
BUILTIN = ("headstart.modalities.text", "headstart.modalities.image")

_REGISTRY: dict[str, Modality] = {}
_loaded: set[str] = set()


def register_modality(modality: Modality) -> Modality:
    """Make a modality known by its ``name``. Registering another object under a taken name is an error."""
    name = getattr(modality, "name", "")
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"a modality needs a name that is a plain identifier, got {name!r}.")
    held = _REGISTRY.get(name)
    if held is not None and type(held) is not type(modality):
        raise ConfigError(f"a modality named {name!r} is already registered ({type(held).__module__}."
                          f"{type(held).__qualname__}); give yours another name.")
    _REGISTRY[name] = modality
    return modality


def _import(module: str, origin: str) -> None:
    if module in _loaded:
        return
    _loaded.add(module)
    try:
        importlib.import_module(module)
    except Exception as e:  # a broken plugin names itself, it does not crash every command silently
        raise ConfigError(f"cannot load the modality plugin {module!r} ({origin}): {type(e).__name__}: {e}. "
                          "Fix or uninstall that plugin.") from e


def load_plugins(*, entry_points: bool = True) -> None:
    """Import the built-in modalities, those ``HEADSTART_MODALITIES`` names and (with ``entry_points``)
    the entry point group's.

    Cheap after the first call; call it again after changing the environment variable.
    """
    for module in BUILTIN:
        _import(module, "built in")
    for module in (m.strip() for m in os.environ.get(ENV_VAR, "").split(",")):
        if module:
            _import(module, f"named in ${ENV_VAR}")
    if entry_points and "entry-points" not in _loaded:
        _loaded.add("entry-points")
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            _import(ep.value.split(":")[0], f"entry point {ep.name!r} of group {ENTRY_POINT_GROUP}")


def get_modality(name: str) -> Modality:
    """The registered modality called ``name``, or a ConfigError listing the known ones."""
    found = _REGISTRY.get(name)
    if found is not None:
        return found
    load_plugins(entry_points=False)  # the built-ins and $HEADSTART_MODALITIES: no scan of installed packages
    found = _REGISTRY.get(name)
    if found is None:
        load_plugins()
        found = _REGISTRY.get(name)
    if found is None:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ConfigError(f"unknown modality {name!r} (known: {known}). A modality plugin is found by the entry "
                          f"point group {ENTRY_POINT_GROUP!r} or the module names in ${ENV_VAR}.")
    return found


def modalities(*, entry_points: bool = True) -> list[Modality]:
    """Every known modality, built-ins first, then plugins in the order they registered.

    ``entry_points=False`` skips the scan of installed packages (tens of milliseconds, once per
    process): the built-ins and ``$HEADSTART_MODALITIES`` only, for a first look that may suffice.
    """
    load_plugins(entry_points=entry_points)
    return list(_REGISTRY.values())

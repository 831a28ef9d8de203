"""Pretrained backbones behind one contract, and the registry that names them."""

from headstart.backbones import embedded, tiny  # noqa: F401  (register the built-in names)
from headstart.backbones.base import Backbone, BackboneSpec, LayerGroup, move_to
from headstart.backbones.registry import (
    BackboneInfo,
    create_backbone,
    get_info,
    list_backbones,
    rebuild_backbone,
    register,
)

__all__ = [
    "Backbone",
    "BackboneInfo",
    "BackboneSpec",
    "LayerGroup",
    "create_backbone",
    "get_info",
    "list_backbones",
    "move_to",
    "rebuild_backbone",
    "register",
]

"""Named backbones: ``register``, ``create_backbone``, ``list_backbones``.

Besides registered names, ``create_backbone`` accepts ``timm:ARCH`` (any timm model),
``hf:ID`` (any Hugging Face encoder), a local folder, and bare timm or hub names.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headstart.backbones.base import Backbone
from headstart.errors import BackboneError


@dataclass(frozen=True)
class BackboneInfo:
    """What the registry knows about a backbone without building it."""

    name: str
    factory: Callable[..., Backbone] = field(repr=False)
    modality: str
    feature_dim: int
    n_params: int
    license: str
    source: str
    description: str
    available: Callable[[], bool] = field(repr=False, default=lambda: True)
    aliases: tuple[str, ...] = ()
    for_tests: bool = False
    install_hint: str = ""  # how to get the weights when ``available()`` is False

    @property
    def offline(self) -> bool:
        """Whether the weights are on this machine (so it works with no network)."""
        return self.available()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "modality": self.modality,
            "feature_dim": self.feature_dim,
            "n_params": self.n_params,
            "license": self.license,
            "source": self.source,
            "offline": self.offline,
            "description": self.description,
            "aliases": list(self.aliases),
            "for_tests": self.for_tests,
        }


_REGISTRY: dict[str, BackboneInfo] = {}
_ALIASES: dict[str, str] = {}


def register(info: BackboneInfo) -> BackboneInfo:
    """Add a named backbone. Registering a name twice is an error (it hides bugs)."""
    for key in (info.name, *info.aliases):
        if key in _REGISTRY or key in _ALIASES:
            raise BackboneError(f"a backbone named {key!r} is already registered.")
    _REGISTRY[info.name] = info
    for alias in info.aliases:
        _ALIASES[alias] = info.name
    return info


def get_info(name: str) -> BackboneInfo | None:
    """The registered backbone (by name or alias); modality plugins are loaded first when it is unknown,
    since a plugin registers its own backbones."""
    found = _REGISTRY.get(_ALIASES.get(name, name))
    if found is None:
        _plugin_backbones()
        found = _REGISTRY.get(_ALIASES.get(name, name))
    return found


_PLUGINS_ASKED: set[str] = set()


def _plugin_backbones() -> None:
    """Let every modality plugin register its backbones (once each): a plugin registers them from
    ``Modality.register_backbones``, not on import, so that importing it stays torch-free."""
    from headstart.modalities import modalities

    for modality in modalities():
        if modality.name not in _PLUGINS_ASKED:
            _PLUGINS_ASKED.add(modality.name)
            modality.register_backbones()


def list_backbones(pattern: str = "*", *, include_test: bool = False) -> list[BackboneInfo]:
    """Registered backbones whose name (or an alias) matches a shell-style pattern.

    Example:
        >>> [b.name for b in list_backbones("efficientnet*")]  # doctest: +SKIP
        ['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2']
    """
    _plugin_backbones()
    out = []
    for info in _REGISTRY.values():
        if info.for_tests and not include_test:
            continue
        if any(fnmatch.fnmatch(n, pattern) for n in (info.name, *info.aliases)):
            out.append(info)
    return out


def create_backbone(name: str, **kwargs: Any) -> Backbone:
    """Build a backbone by name.

    Args:
        name: a registered name (``minilm``, ``efficientnet_lite0``...), ``timm:ARCH``,
            ``hf:MODEL_ID``, a local folder (Hugging Face or timm layout), or a bare timm
            architecture / hub id.
        kwargs: passed to the factory (e.g. ``max_length=128``, ``weights=path``).

    Example:
        >>> backbone = create_backbone("minilm", max_length=128)  # doctest: +SKIP
        >>> backbone.spec.feature_dim                              # doctest: +SKIP
        384
    """
    from headstart.backbones.text import create_hf_text_backbone
    from headstart.backbones.vision import create_timm_backbone, create_timm_from_folder

    info = get_info(name)
    if info is not None:
        if not info.available():
            raise BackboneError(
                f"backbone {info.name!r} is registered but its weights are not installed here: "
                f"{info.source}. " + (info.install_hint or "Reinstall headstart (pip install -e .) to get them.")
            )
        return info.factory(**kwargs)
    if name.startswith("timm:"):
        return create_timm_backbone(name[5:], **kwargs)
    if name.startswith("hf:"):
        return create_hf_text_backbone(name[3:], name=name, **kwargs)
    path = Path(name).expanduser()
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise BackboneError(f"{path} is a folder but has no config.json; it is not a saved model.")
        try:
            text = config.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise BackboneError(f"{config} cannot be read as UTF-8 JSON ({e}); it is damaged, save the model again.") from e
        if '"architecture"' in text:
            return create_timm_from_folder(path, **kwargs)
        return create_hf_text_backbone(path, **kwargs)
    if path.suffix in (".safetensors", ".pth", ".pt", ".bin"):
        raise BackboneError(
            f"{name} is a weights file: say which architecture it is for, e.g. "
            f"--backbone timm:resnet18 --weights {name}."
        )
    import timm

    if timm.list_models(name):
        return create_timm_backbone(name, **kwargs)
    if "/" in name and not path.exists():
        return create_hf_text_backbone(name, name=name, **kwargs)
    raise BackboneError(_unknown_message(name))


def rebuild_backbone(build: dict[str, Any], preprocessing: dict[str, Any]) -> Backbone:
    """A saved backbone rebuilt from its spec's ``build`` record as it was fitted: settings added
    since it was saved are set to what it had then (a text backbone saved before windows reads
    one window), from its recorded ``preprocessing``."""
    from headstart.backbones.text import rebuild_kwargs

    return create_backbone(build["name"], **rebuild_kwargs(dict(build.get("kwargs") or {}), preprocessing))


def _unknown_message(name: str) -> str:
    known = sorted({*(_REGISTRY), *(_ALIASES)})
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if not close:
        import timm

        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.7)
        close = [f"timm:{c}" for c in close]
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"unknown backbone {name!r}.{hint} Registered: {', '.join(b.name for b in list_backbones())}. "
        "Also accepted: timm:ARCH, hf:MODEL_ID, or a local model folder. See `headstart backbones`."
    )

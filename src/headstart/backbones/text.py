"""Text backbones: any Hugging Face encoder (hub id or local folder) with mean or CLS pooling."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from headstart.backbones.base import Backbone, BackboneSpec, LayerGroup, count_params
from headstart.backbones.hub import OFFLINE_HINT, hub_error, hub_unreachable, require_safetensors
from headstart.data.long_texts import cut_long_texts
from headstart.errors import BackboneError, ConfigError

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls")


class HFTextBackbone(Backbone):
    """A transformer encoder whose token states are pooled into one vector per text.

    Args:
        model: a transformers ``PreTrainedModel`` (encoder).
        tokenizer: its fast tokenizer.
        name: the name it was created by.
        pooling: ``"mean"`` (mask-aware average of token states) or ``"cls"`` (first token).
        max_length: longer texts are truncated to this many tokens.
        normalize: L2-normalise the pooled vector (as sentence-transformers models do).
        source, license, offline, build: recorded in the spec.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        name: str,
        pooling: str = "mean",
        max_length: int = 256,
        normalize: bool = False,
        source: str,
        license: str,
        offline: bool,
        build: dict[str, Any],
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling={pooling!r}; use one of {', '.join(POOLINGS)}.")
        model_max = getattr(model.config, "max_position_embeddings", None) or max_length
        if max_length > model_max:
            raise ConfigError(f"max_length={max_length} exceeds the model's {model_max} positions.")
        if getattr(model, "pooler", None) is not None:
            # The pretraining pooler is unused by mean/CLS pooling; dropping it keeps every
            # remaining parameter on the feature path (so every trainable one gets a gradient).
            model.pooler = None
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = int(max_length)
        self.normalize = bool(normalize)
        vocab = tokenizer.backend_tokenizer.to_str() if hasattr(tokenizer, "backend_tokenizer") else str(tokenizer.get_vocab())
        self.spec = BackboneSpec(
            name=name,
            modality="text",
            feature_dim=int(model.config.hidden_size),
            preprocessing={
                "kind": "hf-tokenizer",
                "tokenizer_sha256": hashlib.sha256(vocab.encode()).hexdigest(),
                "max_length": self.max_length,
                "truncation": True,
                "pooling": pooling,
                "normalize": self.normalize,
            },
            source=source,
            license=license,
            n_params=count_params(model),
            offline=offline,
            build=build,
        )
        self.eval()  # pretrained backbones start in inference mode (no dropout, frozen BN stats)

    def preprocess(self, items: Sequence[str], locators: Sequence[str] | None = None, *,
                   augment: bool = False) -> dict[str, torch.Tensor]:
        # Text has no default augmentation: paraphrase-style noise often changes the label.
        return dict(
            self.tokenizer(
                self._cut_long_texts(list(items)),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
        )

    def _cut_long_texts(self, texts: list[str]) -> list[str]:
        """Long texts cut to a prefix giving the same ``max_length`` tokens (see
        :mod:`headstart.data.long_texts` for why that is safe), so a 100k-character text costs
        what its first few thousand characters do."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None or backend.pre_tokenizer is None or getattr(self.tokenizer, "truncation_side", "right") != "right":
            return texts  # no word boundaries to rely on, or the end is what is kept: tokenise in full

        def count_tokens(batch: list[str]) -> list[int]:
            encoded = self.tokenizer(batch, truncation=True, max_length=self.max_length, padding=False)
            return [len(ids) for ids in encoded["input_ids"]]

        return cut_long_texts(texts, self.max_length, count_tokens)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        states = self.model(**inputs).last_hidden_state
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1) if self.normalize else pooled

    def sort_key(self, item: Any) -> float:
        return float(len(item))

    def layer_groups(self) -> list[LayerGroup]:
        """Embeddings, then each transformer block, then anything after (final norm)."""
        blocks_name, blocks = _largest_module_list(self.model)
        names = [n for n, _ in self.model.named_parameters()]
        prefix = f"{blocks_name}."
        groups = [LayerGroup("embeddings", tuple(f"model.{n}" for n in names[: _first_index(names, prefix)]))]
        for i in range(len(blocks)):
            block_prefix = f"{prefix}{i}."
            groups.append(LayerGroup(f"block{i}", tuple(f"model.{n}" for n in names if n.startswith(block_prefix))))
        after = [n for n in names[_first_index(names, prefix):] if not n.startswith(prefix)]
        if after:
            groups.append(LayerGroup("final", tuple(f"model.{n}" for n in after)))
        return [g for g in groups if g.param_names]


def _largest_module_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise BackboneError(f"{type(model).__name__}: no list of transformer blocks found for layer groups.")
    return max(lists, key=lambda nm: len(nm[1]))


def _first_index(names: list[str], prefix: str) -> int:
    return next((i for i, n in enumerate(names) if n.startswith(prefix)), len(names))


def _sentence_transformers_defaults(folder: Path) -> dict[str, Any]:
    """Pooling, normalisation and max length from a sentence-transformers folder, if it is one."""
    defaults: dict[str, Any] = {}
    modules = folder / "modules.json"
    if modules.is_file():
        entries = json.loads(modules.read_text())
        defaults["normalize"] = any(e.get("type", "").endswith("Normalize") for e in entries)
        for e in entries:
            pooling_cfg = folder / e.get("path", "") / "config.json"
            if e.get("type", "").endswith("Pooling") and pooling_cfg.is_file():
                cfg = json.loads(pooling_cfg.read_text())
                defaults["pooling"] = "cls" if cfg.get("pooling_mode_cls_token") else "mean"
    st_cfg = folder / "sentence_bert_config.json"
    if st_cfg.is_file():
        defaults["max_length"] = int(json.loads(st_cfg.read_text()).get("max_seq_length", 256))
    return defaults


def create_hf_text_backbone(
    model_id: str | Path,
    *,
    name: str | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
    normalize: bool | None = None,
    license: str | None = None,
    source: str | None = None,
    build: dict[str, Any] | None = None,
) -> HFTextBackbone:
    """Build a text backbone from a Hugging Face hub id or a local folder.

    Pooling, normalisation and max length default to what a sentence-transformers folder
    declares, else mean pooling, no normalisation and 256 tokens.
    """
    from transformers import AutoModel, AutoTokenizer

    folder = Path(model_id)
    local = folder.is_dir()
    defaults = _sentence_transformers_defaults(folder) if local else {}
    pooling = pooling or defaults.get("pooling", "mean")
    max_length = max_length or defaults.get("max_length", 256)
    normalize = defaults.get("normalize", False) if normalize is None else normalize
    kwargs: dict[str, Any] = {}
    model_kwargs: dict[str, Any] = {}
    if local:
        require_safetensors(folder)
        model_kwargs["use_safetensors"] = True  # never fall back to unpickling pytorch_model.bin
    else:
        why = hub_unreachable()
        if why:
            # Already-downloaded models still load from the local cache.
            kwargs["local_files_only"] = True
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # our own progress goes to stderr; theirs would interleave
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_id), **kwargs)
        model = AutoModel.from_pretrained(str(model_id), **kwargs, **model_kwargs)
    except Exception as e:
        if kwargs.get("local_files_only"):
            raise BackboneError(
                f"{model_id} is not a local folder and not in the local Hugging Face cache, and the "
                f"hub cannot be reached ({why}). {OFFLINE_HINT}"
            ) from e
        raise hub_error(str(model_id), e) from e
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    if not getattr(tokenizer, "is_fast", False):
        raise BackboneError(f"{model_id}: headstart needs a fast (tokenizers-backed) tokenizer.")
    build = build or {"name": name or f"hf:{model_id}",
                      "kwargs": {"pooling": pooling, "max_length": max_length, "normalize": normalize}}
    card_license = getattr(model.config, "license", None)
    return HFTextBackbone(
        model,
        tokenizer,
        name=name or f"hf:{model_id}",
        pooling=pooling,
        max_length=max_length,
        normalize=normalize,
        source=source or (str(folder.resolve()) if local else f"Hugging Face hub: {model_id}"),
        license=license or card_license or "see model card",
        offline=local or bool(kwargs),
        build=build,
    )

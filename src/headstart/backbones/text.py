"""Text backbones: any Hugging Face encoder (hub id or local folder) with mean or CLS pooling.

A text longer than the encoder's window is read as overlapping windows whose pooled vectors are
averaged (``windows``, see :class:`HFTextBackbone`); measured in ``benchmarks/long_documents.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from headstart.backbones.base import Backbone, BackboneSpec, LayerGroup, count_params
from headstart.backbones.hub import OFFLINE_HINT, hub_error, hub_unreachable, require_safetensors
from headstart.data.long_texts import (
    WINDOW_CHARS_PER_TOKEN,
    cut_long_texts,
    select_windows,
    window_span_tokens,
)
from headstart.errors import BackboneError, ConfigError

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls")
DEFAULT_WINDOWS = 16
"""Windows read per long text unless told otherwise (1: only the first ``max_length`` tokens)."""
WINDOW_POOLINGS = ("max", "mean")
DEFAULT_WINDOW_POOLING = "max"
"""How a long text's window features become one: the element-wise max (the default: +7 points over
``mean`` on state-of-the-union eras, equal on spam-assassin; ``benchmarks/long_documents.py``)."""
WINDOW_SPAN = 4
"""A long text's windows are chosen among its first ``WINDOW_SPAN × windows`` (spread evenly over
them), so however long a text is, reading it costs a bounded amount of tokenising."""
WINDOW_CHUNK = 64
"""Windows per encoder call when extracting features (no gradient): bounds activation memory."""


class HFTextBackbone(Backbone):
    """A transformer encoder whose token states are pooled into one vector per text.

    Args:
        model: a transformers ``PreTrainedModel`` (encoder).
        tokenizer: its fast tokenizer.
        name: the name it was created by.
        pooling: ``"mean"`` (mask-aware average of token states) or ``"cls"`` (first token).
        max_length: tokens the encoder reads at once (a window), special tokens included.
        normalize: L2-normalise the pooled vector (as sentence-transformers models do).
        windows: the most windows read per text. A text longer than ``max_length`` tokens is
            split into windows of ``max_length`` tokens, consecutive ones overlapping by a quarter
            of their content (a stride of 3/4 of the window); up to ``windows`` of them, spread
            evenly over its first ``WINDOW_SPAN × windows`` windows (the whole text, unless it is
            very long) when it has more, are encoded and combined by ``window_pooling`` into the
            text's feature vector, in a way gradients flow through (fine-tuning sees the same
            windows). Texts that fit one window take exactly the one-window path. ``1``: only the
            first window (truncation).
        window_pooling: ``"max"``: the element-wise max of the windows' features (each what the
            window alone would give, L2-normalised with ``normalize``); ``"mean"``: the mean of
            their pooled vectors (then L2-normalised with ``normalize``).
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
        windows: int = 1,
        window_pooling: str = DEFAULT_WINDOW_POOLING,
        source: str,
        license: str,
        offline: bool,
        build: dict[str, Any],
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling={pooling!r}; use one of {', '.join(POOLINGS)}.")
        if isinstance(windows, bool) or not isinstance(windows, numbers.Integral) or windows < 1:
            raise ConfigError(f"windows={windows!r}: the most windows read per text must be an integer of at least "
                              "1 (1: only the first max_length tokens); e.g. windows=16.")
        if window_pooling not in WINDOW_POOLINGS:
            raise ConfigError(f"window_pooling={window_pooling!r}; use one of {', '.join(WINDOW_POOLINGS)}.")
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
        self.windows = int(windows)
        self.window_pooling = window_pooling
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
                # Only a windowed backbone records its windows: a one-window backbone keeps the
                # preprocessing (so the embedding-cache identity) of the backbones before windows.
                **({"windows": self.windows, "window_overlap": self.window_overlap, "window_span": self.window_span,
                    "window_pooling": window_pooling} if self.windows > 1 else {}),
            },
            source=source,
            license=license,
            n_params=count_params(model),
            offline=offline,
            build=build,
        )
        self.eval()  # pretrained backbones start in inference mode (no dropout, frozen BN stats)

    @property
    def window_overlap(self) -> int:
        """Tokens consecutive windows share: a quarter of a window's content (special tokens aside)."""
        content = self.max_length - self.tokenizer.num_special_tokens_to_add(pair=False)
        return max(content, 0) // 4

    @property
    def window_span(self) -> int:
        """The windows of a long text its ``windows`` are chosen among (its first ones)."""
        return self.windows * WINDOW_SPAN

    @property
    def window_span_tokens(self) -> int:
        """Tokens (special ones included) of a long text's first :attr:`window_span` windows."""
        return window_span_tokens(self.max_length, self.tokenizer.num_special_tokens_to_add(pair=False),
                                  self.window_overlap, self.window_span)

    def preprocess(self, items: Sequence[str], locators: Sequence[str] | None = None, *,
                   augment: bool = False) -> dict[str, torch.Tensor]:
        # Text has no default augmentation: paraphrase-style noise often changes the label.
        texts = list(items)
        encoded = dict(
            self.tokenizer(
                self._cut_long_texts(texts),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
        )
        if self.windows > 1 and bool((encoded["attention_mask"].sum(1) >= self.max_length).any()):
            return self.encode_windows(texts)  # a text fills its first window: it may have more
        return encoded

    def encode_windows(self, items: Sequence[str]) -> dict[str, torch.Tensor]:
        """Every text as its windows (at most ``windows``; one for a text that fits), the
        ``[windows, sequence]`` encoder inputs, plus ``window_weights`` ``[texts, windows]``: row
        ``i`` averages text ``i``'s windows (``1/n`` on each), so pooling is one matrix product."""
        texts = self._cut_long_texts(list(items), windowed=True)
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                 stride=self.window_overlap, return_overflowing_tokens=True, return_tensors="pt")
        owner = encoded.pop("overflow_to_sample_mapping").tolist()
        rows, weights = select_windows(owner, len(items), self.windows, self.window_span)
        batch = {k: v[rows] for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        batch["window_weights"] = torch.from_numpy(weights)
        return batch

    def _cut_long_texts(self, texts: list[str], windowed: bool = False) -> list[str]:
        """Long texts cut to a prefix giving the same first ``max_length`` tokens (``windowed``:
        the same first :attr:`window_span_tokens`; see :mod:`headstart.data.long_texts` for why
        that is safe), so a 100k-character text costs what its first few thousand characters do."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None or backend.pre_tokenizer is None or getattr(self.tokenizer, "truncation_side", "right") != "right":
            return texts  # no word boundaries to rely on, or the end is what is kept: tokenise in full
        most = self.window_span_tokens if windowed else self.max_length

        def count_tokens(batch: list[str]) -> list[int]:
            encoded = self.tokenizer(batch, truncation=True, max_length=most, padding=False)
            return [len(ids) for ids in encoded["input_ids"]]

        if windowed:
            return cut_long_texts(texts, most, count_tokens, chars_per_token=WINDOW_CHARS_PER_TOKEN)
        return cut_long_texts(texts, most, count_tokens)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        weights = batch.get("window_weights")
        if weights is None:  # one window per text: the encoder's rows are the texts
            inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            pooled = self._pool(self.model(**inputs).last_hidden_state, batch["attention_mask"])
        elif self.window_pooling == "max":  # each window's feature, then the max over a text's windows
            windows = self.window_vectors(batch)
            windows = F.normalize(windows, p=2, dim=1) if self.normalize else windows
            mine = (weights > 0).unsqueeze(-1)  # [texts, windows, 1]: which windows are each text's
            return torch.where(mine, windows.unsqueeze(0), torch.finfo(windows.dtype).min).amax(dim=1)
        else:  # the mean of each text's window vectors, differentiable (a matrix product)
            windows = self.window_vectors(batch)
            pooled = weights.to(windows.dtype) @ windows
        return F.normalize(pooled, p=2, dim=1) if self.normalize else pooled

    def window_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One pooled, not normalised, vector per encoder row (window), ``[windows, feature_dim]``.
        Without gradients the rows go through the encoder :data:`WINDOW_CHUNK` at a time."""
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        n = inputs["input_ids"].shape[0]
        exporting = getattr(torch.compiler, "is_exporting", lambda: False)()  # the graph takes any number
        if torch.is_grad_enabled() or exporting or n <= WINDOW_CHUNK:
            return self._pool(self.model(**inputs).last_hidden_state, inputs["attention_mask"])
        return torch.cat([self._pool(self.model(**{k: v[s:s + WINDOW_CHUNK] for k, v in inputs.items()})
                                     .last_hidden_state, inputs["attention_mask"][s:s + WINDOW_CHUNK])
                          for s in range(0, n, WINDOW_CHUNK)])

    def _pool(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return states[:, 0]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

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
    windows: int | None = None,
    window_pooling: str | None = None,
    license: str | None = None,
    source: str | None = None,
    build: dict[str, Any] | None = None,
) -> HFTextBackbone:
    """Build a text backbone from a Hugging Face hub id or a local folder.

    Pooling, normalisation and max length default to what a sentence-transformers folder
    declares, else mean pooling, no normalisation and 256 tokens; ``windows`` (the most
    ``max_length``-token windows read per long text, see :class:`HFTextBackbone`) to
    :data:`DEFAULT_WINDOWS` and ``window_pooling`` to :data:`DEFAULT_WINDOW_POOLING`.
    """
    from transformers import AutoModel, AutoTokenizer

    folder = Path(model_id)
    local = folder.is_dir()
    defaults = _sentence_transformers_defaults(folder) if local else {}
    pooling = pooling or defaults.get("pooling", "mean")
    max_length = max_length or defaults.get("max_length", 256)
    normalize = defaults.get("normalize", False) if normalize is None else normalize
    windows = DEFAULT_WINDOWS if windows is None else windows
    window_pooling = window_pooling or DEFAULT_WINDOW_POOLING
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
    # Rebuilt with the same windows, however the defaults change.
    build = {**build, "kwargs": {**build.get("kwargs", {}), "windows": windows, "window_pooling": window_pooling}}
    card_license = getattr(model.config, "license", None)
    return HFTextBackbone(
        model,
        tokenizer,
        name=name or f"hf:{model_id}",
        pooling=pooling,
        max_length=max_length,
        normalize=normalize,
        windows=windows,
        window_pooling=window_pooling,
        source=source or (str(folder.resolve()) if local else f"Hugging Face hub: {model_id}"),
        license=license or card_license or "see model card",
        offline=local or bool(kwargs),
        build=build,
    )


def rebuild_kwargs(kwargs: dict[str, Any], preprocessing: dict[str, Any]) -> dict[str, Any]:
    """The factory keyword arguments that rebuild a saved text backbone as it was fitted.

    Every text backbone records ``windows`` in its build kwargs; one saved before windows existed
    does not, and read only the first window of a long text (its head was fitted on those
    features), so it is rebuilt with ``windows=1`` rather than today's default. Any other
    backbone's kwargs are returned as they are.
    """
    if preprocessing.get("kind") == "hf-tokenizer" and "windows" not in kwargs:
        return {**kwargs, "windows": 1}
    return kwargs

"""Tiny, randomly initialised backbones for fast tests: real architectures, seconds to run.

``tiny-cnn`` is timm's ``test_efficientnet`` at 32×32 input; ``tiny-bert`` is a 2-layer BERT
(hidden size 32) with a character-level WordPiece tokenizer built in code. Both are seeded,
so the same seed always gives the same weights.
"""

from __future__ import annotations

import string
from typing import Any

import torch

from headstart.backbones.registry import BackboneInfo, register
from headstart.backbones.text import DEFAULT_WINDOW_POOLING, DEFAULT_WINDOWS, HFTextBackbone
from headstart.backbones.vision import TimmBackbone

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _char_vocab() -> dict[str, int]:
    chars = string.ascii_lowercase + string.digits + string.punctuation
    tokens = _SPECIAL + list(chars) + [f"##{c}" for c in chars]
    return {tok: i for i, tok in enumerate(tokens)}


def tiny_tokenizer() -> Any:
    """A BERT-style (lower-casing, WordPiece) tokenizer whose vocabulary is single characters."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = _char_vocab()
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
    )


def create_tiny_bert(seed: int = 0, max_length: int = 64, pooling: str = "mean", windows: int = DEFAULT_WINDOWS,
                     window_pooling: str = DEFAULT_WINDOW_POOLING) -> HFTextBackbone:
    from transformers import BertConfig, BertModel

    tokenizer = tiny_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = BertModel(config)
    return HFTextBackbone(
        model, tokenizer, name="tiny-bert", pooling=pooling, max_length=max_length, normalize=False,
        windows=windows, window_pooling=window_pooling, source="random init (2-layer BERT, hidden 32)", license="Apache-2.0", offline=True,
        build={"name": "tiny-bert", "kwargs": {"seed": seed, "max_length": max_length, "pooling": pooling,
                                               "windows": windows, "window_pooling": window_pooling}},
    )


def create_tiny_cnn(seed: int = 0, image_size: int = 32) -> TimmBackbone:
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model("test_efficientnet", pretrained=False, num_classes=10)
    return TimmBackbone(
        model, name="tiny-cnn", source="random init (timm test_efficientnet)", license="Apache-2.0",
        offline=True, build={"name": "tiny-cnn", "kwargs": {"seed": seed, "image_size": image_size}},
        data_config={"input_size": (3, image_size, image_size), "crop_pct": 1.0},
    )


register(BackboneInfo(
    name="tiny-bert", factory=create_tiny_bert, modality="text", feature_dim=32, n_params=25_824,
    license="Apache-2.0", source="random init", description="2-layer BERT for tests (random weights).",
    for_tests=True,
))
register(BackboneInfo(
    name="tiny-cnn", factory=create_tiny_cnn, modality="image", feature_dim=256, n_params=101_766,
    license="Apache-2.0", source="random init", description="timm test_efficientnet for tests (random weights).",
    for_tests=True,
))

"""Texts: strings in memory, a table's text column, text files (one text per line), stdin.

The export's preprocessing is the backbone's own ``tokenizer.json`` with its truncation and
padding settings, replayed with ``tokenizers`` alone (:class:`TextPreprocessor`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from headstart.data.items import is_valid_text
from headstart.data.long_texts import WINDOW_CHARS_PER_TOKEN, cut_long_texts, select_windows
from headstart.errors import BundleError, DataError, RequestError
from headstart.modalities import register_modality
from headstart.modalities.base import ExportInputs, Modality, Reject, json_type

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# auto's prior for pair training (see TextModality.auto_prior): where the benchmark suite measured it.
PAIR_PRIOR_MAX_PER_CLASS = 16
PAIR_PRIOR_MAX_CHARS = 1000
WINDOW_WEIGHTS = "window_weights"  # [texts, windows]: how a windowed graph averages each text's windows
TOKENIZER_FILE = "tokenizer.json"
PREVIEW_CHARS = 300
MAX_SHINGLE_CHARS = 200_000  # shingling reads at most this much of a text (as the audit always did)
SHINGLE_JACCARD = 0.6       # texts whose embeddings are close must also share this share of 3-word shingles
# Python's str.isspace() characters, spelled for any regex engine: a text needs one character
# outside them, exactly the service's own "empty text" rule (text.strip()).
NOT_ONLY_WHITESPACE = (r"[^\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029"
                       r"\u202f\u205f\u3000]")


def normalised_text_key(text: str) -> str:
    """Case and whitespace do not make a different text."""
    return hashlib.sha256(" ".join(text.lower().split()).encode("utf-8")).hexdigest()


# Bounded: a shingle set holds ~0.1 MB per 1,000 words, and the cache outlives the audit.
@lru_cache(maxsize=1024)
def shingles(text: str, n: int = 3) -> frozenset[int]:
    """Hashes of the text's overlapping ``n``-word windows (lower case, word characters only)."""
    words = re.findall(r"\w+", text.lower()[:MAX_SHINGLE_CHARS])
    if len(words) < n:
        return frozenset({hash(tuple(words))})
    return frozenset(hash(tuple(words[k:k + n])) for k in range(len(words) - n + 1))


def jaccard(a: set[int] | frozenset[int], b: set[int] | frozenset[int]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def check_texts(items: Sequence[Any]) -> list[str]:
    """The items as texts, or a DataError naming the first that is empty or not a string."""
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise DataError(f"item {i}: expected a text (str), got {type(t).__name__}.")
        if not t.strip():
            raise DataError(f"item {i}: the text is empty; every text must have content.")
    return list(items)


def _positions(rows: list[int]) -> str:
    return ", ".join(map(str, rows[:5]))


class TextModality(Modality):
    name = "text"
    plural = "texts"
    default_backbone = "minilm"
    column_guesses = ("text", "sentence", "content", "body", "document")
    finetune_lr = 1e-4
    lora_lr = 1e-3
    scratch_lr = 3e-4
    classic_recipe = "tfidf"
    classic_name = "classic: TF-IDF + logistic regression"
    classic_note = "word 1-2 grams"
    quantization = "dynamic"
    near_key_how = "normalised text"
    near_without_backbone = "case/whitespace only"

    # ------------------------------------------------------------------ reading
    @property
    def table_option(self) -> str:
        return "--text-col NAME"  # the built-ins' own option; `--col text=NAME` works too

    def claims(self, items: Sequence[Any]) -> int:
        return 1 if isinstance(items[0], str) else 0

    def from_memory(self, items: list[Any], source: str) -> list[Any]:
        bad = [i for i, t in enumerate(items) if not isinstance(t, str) or not t.strip()]
        if bad:
            raise DataError(f"{source}: item(s) {_positions(bad)} are empty or not text; every text must be non-empty.")
        broken = [i for i, t in enumerate(items) if not is_valid_text(t)]
        if broken:
            raise DataError(f"{source}: item(s) {_positions(broken)} hold a lone surrogate (such as '\\ud800'), which "
                            "is not a character and cannot be tokenized; fix or drop them.")
        return items

    def from_column(self, values: list[Any], table: Path, column: str, reject: Reject) -> list[Any]:
        from headstart.data.tables import missing, rows_text

        bad = [i for i, v in enumerate(values) if missing(v) or not isinstance(v, str)]
        if bad:
            reject(bad, "empty-texts", f"column {column!r} is empty or not text",
                   f"{table}: {rows_text(bad)} of column {column!r} {'are' if len(bad) > 1 else 'is'} empty or "
                   "not text. Fill them in or drop those rows.")
        broken = [i for i, v in enumerate(values) if i not in bad and not is_valid_text(v)]
        if broken:
            reject(broken, "empty-texts", f"column {column!r} holds an invalid character (a lone surrogate)",
                   f"{table}: {rows_text(broken)} of column {column!r} hold{'' if len(broken) > 1 else 's'} a lone "
                   "UTF-16 surrogate (such as a \\ud800 escape in JSON), which is not a character. Fix or drop "
                   "those rows.")
        return values

    def read_input(self, path: Path) -> tuple[list[Any], list[str]]:
        from headstart.data.text_files import read_text_lines

        if not path.is_file():
            raise DataError(f"{path} is not a file; for a text model give a table, a text file "
                            "(one text per line) or '-' for stdin.")
        return self.from_lines(read_text_lines(path), str(path))

    def from_lines(self, lines: list[tuple[int, str]], source: str) -> tuple[list[Any], list[str]]:
        return [text for _, text in lines], [f"{source} line {n}" for n, _ in lines]

    # ------------------------------------------------------------------ showing
    def describe(self, item: Any, locator: str) -> str:
        text = " ".join(str(item).split())
        return text if len(text) <= 60 else text[:57] + "..."

    def preview(self, item: Any, locator: str) -> dict[str, Any]:
        text = str(item)
        return {"kind": "text", "text": text[:PREVIEW_CHARS] + ("…" if len(text) > PREVIEW_CHARS else "")}

    def sort_key(self, item: Any) -> float:
        return float(len(item))

    # ------------------------------------------------------------------ model
    def backbone_options(self, max_length: int | None, windows: int | None = None) -> dict[str, Any]:
        return {k: v for k, v in (("max_length", max_length), ("windows", windows)) if v}

    def auto_candidates(self, per_class: float, gpu: bool) -> list[tuple[str, dict[str, Any], str]]:
        if per_class <= 64:
            picks = [("contrastive", {}, f"{per_class:.0f} examples per class: training on pairs of examples "
                                         "multiplies the signal of few examples (SetFit)")]
            if gpu:
                picks.append(("lora", {"epochs": 8}, "a GPU makes adapting the encoder affordable too"))
            return picks
        return [("lora", {"epochs": 6}, f"{per_class:.0f} examples per class: enough to adapt the encoder "
                                        "with low-rank adapters"),
                ("partial", {"unfreeze": 2, "epochs": 6}, "top layers adapt, lower layers stay general")]

    def auto_prior(self, strategy: str, per_class: float, items: Sequence[Any]) -> str | None:
        # Measured by benchmarks/suite.py (2026-12-03, fixed test sets, 3 seeds): on wordnet-glosses
        # (short texts) pair training beat the probe on every seed, +5.1 points at 8 per class and +3.0
        # at 16; on spam-assassin's long e-mails (pair training reads 2 of their windows) it lost 1.5 at 8.
        if strategy != "contrastive" or per_class > PAIR_PRIOR_MAX_PER_CLASS:
            return None
        if float(np.median([len(str(t)) for t in items])) > PAIR_PRIOR_MAX_CHARS:
            return None
        return (f"prior: on short texts at up to {PAIR_PRIOR_MAX_PER_CLASS} labels per class, pair training beat the "
                "probe on every benchmark seed (wordnet-glosses: +5.1 points at 8 per class, +3.0 at 16)")

    def classic_inputs(self, items: Sequence[Any], locators: Sequence[str]) -> list[str]:
        return [str(t) for t in items]

    # ------------------------------------------------------------------ audit
    def near_key(self, item: Any) -> str | None:
        return normalised_text_key(str(item))

    def same_content(self, a: Any, b: Any) -> bool:
        return jaccard(shingles(str(a)), shingles(str(b))) >= SHINGLE_JACCARD

    # ------------------------------------------------------------------ export and serving
    def export_inputs(self, backbone: Any, items: list[Any], folder: Path) -> ExportInputs:
        windowed = getattr(backbone, "windows", 1) > 1
        # A windowed backbone's graph always takes windows (one per short text) and their weights.
        encoded = backbone.encode_windows(list(items)) if windowed else backbone.preprocess(list(items))
        batch = {k: v for k, v in encoded.items() if k in TEXT_INPUTS}
        description = describe_text(backbone.tokenizer, list(batch), file=TOKENIZER_FILE)
        backbone.tokenizer.backend_tokenizer.save(str(folder / TOKENIZER_FILE))
        axes = {k: {0: "windows" if windowed else "batch", 1: "sequence"} for k in batch}
        if windowed:
            batch[WINDOW_WEIGHTS] = encoded[WINDOW_WEIGHTS]
            axes[WINDOW_WEIGHTS] = {0: "batch", 1: "windows"}
            # The overlap is the truncation's stride (in description["truncation"]); replayed by TextPreprocessor.
            description["windows"] = {
                "max": int(backbone.windows), "overlap": int(backbone.window_overlap), "select": "spread",
                "span": int(backbone.window_span), "span_tokens": int(backbone.window_span_tokens),
                "pooling": backbone.window_pooling, "cut_chars_per_token": WINDOW_CHARS_PER_TOKEN}
        return ExportInputs(batch=batch, axes=axes, preprocessing=description,
                            limits={"sequence": int(backbone.max_length)}, files=[TOKENIZER_FILE])

    def preprocessor(self, description: dict[str, Any], folder: Path) -> TextPreprocessor:
        return TextPreprocessor(description, folder)

    def check_items(self, items: list[Any]) -> None:
        check_texts(items)

    def item_schema(self, limits: Any) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": limits.max_text_chars, "pattern": NOT_ONLY_WHITESPACE,
                "description": "A text to classify (not only whitespace)."}

    def request_example(self) -> dict[str, Any]:
        return {"texts": ["first text", "second text"]}  # also the example the service's error messages give

    def read_json_item(self, value: Any, where: str, limits: Any) -> Any:
        if not isinstance(value, str):
            raise RequestError(422, "invalid_item", f"{where} is {json_type(value)}; every item must be a string.")
        if not value.strip():
            raise RequestError(422, "empty_text", f"{where} is empty or only whitespace; remove it or send its text.")
        if len(value) > limits.max_text_chars:
            raise RequestError(413, "text_too_long", f"{where} has {len(value)} characters; at most "
                               f"{limits.max_text_chars} per text. Truncate it (the model reads only the start anyway).")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:  # JSON allows "\ud800"; tokenizers do not
            raise RequestError(422, "invalid_text", f"{where} holds an unpaired surrogate ({e.object[e.start]!r} at "
                               f"character {e.start}); send valid Unicode.") from e
        return value

    def serve_batches(self, items: list[Any], field: str, limits: Any, most: int) -> Iterator[tuple[list[int], list[Any]]]:
        yield list(range(len(items))), items  # the engine batches texts by length itself


def describe_text(tokenizer: Any, inputs: Sequence[str], *, file: str) -> dict[str, Any]:
    """The tokenizer settings of the torch path as data; call it right after the backbone
    tokenised something, so the backend holds exactly the truncation and padding it used."""
    backend = tokenizer.backend_tokenizer
    truncation, padding = backend.truncation, backend.padding
    if not truncation or not padding or padding.get("length") is not None or padding.get("pad_to_multiple_of"):
        raise BundleError(f"cannot describe the tokenizer's settings (truncation={truncation}, padding={padding}).")
    return {"kind": "text", "tokenizer": file, "add_special_tokens": True, "inputs": list(inputs),
            "truncation": {k: truncation[k] for k in ("max_length", "stride", "strategy", "direction")},
            "padding": {"strategy": "longest", **{k: padding[k] for k in ("pad_id", "pad_token", "pad_type_id", "direction")}}}


class TextPreprocessor:
    """Texts -> int64 ``input_ids``, ``attention_mask`` (and ``token_type_ids``) ``[B, T]``; for a
    windowed export, ``[W, T]`` windows and float32 ``window_weights`` ``[B, W]``, chosen as the torch
    backbone chooses them (:meth:`headstart.backbones.text.HFTextBackbone.encode_windows`)."""

    def __init__(self, description: dict[str, Any], folder: Path) -> None:
        from tokenizers import Tokenizer

        from headstart.manifest import contained_file

        self.inputs = list(description["inputs"])
        # A plain name inside the bundle (verified by its manifest), never a path or link out of it.
        self.tokenizer = Tokenizer.from_file(str(contained_file(folder, description["tokenizer"])))
        trunc, pad = description["truncation"], description["padding"]
        self.tokenizer.enable_truncation(trunc["max_length"], stride=trunc["stride"], strategy=trunc["strategy"],
                                         direction=trunc["direction"])
        self.tokenizer.enable_padding(direction=pad["direction"], pad_id=pad["pad_id"], pad_type_id=pad["pad_type_id"],
                                      pad_token=pad["pad_token"])
        self.add_special_tokens = bool(description.get("add_special_tokens", True))
        self.max_length = int(trunc["max_length"])
        windows = description.get("windows")
        # The pooling itself is in the graph (from the same weights); the windows are chosen here.
        if windows is not None and (windows.get("select") != "spread" or windows.get("pooling") not in ("max", "mean")):
            raise BundleError(f"{folder}: the ONNX export reads windows {windows!r}, which this headstart cannot "
                              "replay; upgrade headstart or re-export the bundle.")
        self.windows = windows
        # The same cut as the torch backbone's (headstart.data.long_texts): a long text's prefix
        # that gives the same max_length tokens (a windowed export: the tokens of its span of
        # windows), when the tokenizer splits words and keeps the start.
        self.cuts_long_texts = self.tokenizer.pre_tokenizer is not None and str(trunc["direction"]).lower() == "right"
        if windows is not None:
            # Counts a prefix's tokens up to the span's, without windows or padding (as the torch path does).
            self.counter = Tokenizer.from_file(str(contained_file(folder, description["tokenizer"])))
            self.counter.enable_truncation(int(windows["span_tokens"]), strategy=trunc["strategy"],
                                           direction=trunc["direction"])
            self.counter.no_padding()

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        texts = list(texts)
        windows = self.windows
        if self.cuts_long_texts and windows is None:
            texts = cut_long_texts(texts, self.max_length, self._count_tokens)
        elif self.cuts_long_texts:
            texts = cut_long_texts(texts, int(windows["span_tokens"]), self._count_span_tokens,
                                   chars_per_token=int(windows["cut_chars_per_token"]))
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=self.add_special_tokens)
        weights = None
        if windows is not None:  # truncation's stride is the windows' overlap: the rest of a text overflows
            pieces = [(i, w) for i, e in enumerate(encodings) for w in (e, *e.overflowing)]
            rows, weights = select_windows([i for i, _ in pieces], len(texts), int(windows["max"]), int(windows["span"]))
            encodings = [pieces[r][1] for r in rows]
        fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
        out = {name: np.asarray([getattr(e, fields[name]) for e in encodings], dtype=np.int64) for name in self.inputs}
        if weights is not None:
            out[WINDOW_WEIGHTS] = weights
        return out

    def _count_span_tokens(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.counter.encode_batch(texts, add_special_tokens=self.add_special_tokens)]

    def _count_tokens(self, texts: list[str]) -> list[int]:
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=self.add_special_tokens)
        return [sum(e.attention_mask) for e in encodings]  # padding is on: count the real tokens


TEXT = register_modality(TextModality())

"""Long texts: cut before tokenisation without changing what the model reads, and read as windows.

A text backbone reads its first ``max_length`` tokens (a windowed one, up to ``windows`` windows
chosen among its first ``span`` windows: :func:`select_windows`), but a tokenizer asked to
truncate still normalises, pre-tokenises and tokenises the whole text first: 64 texts of 100k
characters cost seconds and a gigabyte. :func:`cut_long_texts` hands the tokenizer a prefix
instead, one that provably tokenises to the same first ``max_length`` tokens (a windowed text:
the same first :func:`window_span_tokens`, so the same first ``span`` windows). The torch
backbone (:mod:`headstart.backbones.text`) and the torch-free ONNX engine
(:mod:`headstart.modalities.text`) both call these, so training, ``predict`` and ``serve`` agree
token for token and window for window.

Why the cut is safe (the argument the tests check on tiny-bert and MiniLM):

1. *Where* to cut: only just before a space (U+0020) that follows a non-whitespace character,
   so the prefix ends with a whole word. Every pre-tokenizer of the tokenizers headstart uses
   (BERT's whitespace-and-punctuation split, byte-level BPE's regex, SentencePiece's Metaspace)
   puts a boundary there, and their normalisers work character by character (lower-casing,
   accent stripping, control-character removal) or within a combining sequence, which a space
   always ends. The model (WordPiece, BPE, Unigram) then tokenises each pre-token on its own. So
   the prefix's tokens are exactly the whole text's first tokens: a prefix of them.
2. *How far*: a prefix of the tokens is enough only if it holds at least ``max_length`` of them
   (special tokens included), and no number of characters guarantees that: one 10,000-character
   "word" is a single ``[UNK]`` for WordPiece. So the bound is not trusted, it is checked: each
   cut text is tokenised (with the same truncation, so at most ``max_length`` tokens of work per
   text) and kept only if it fills all ``max_length`` positions; otherwise a prefix 4 times as
   long as the failed one is tried, up to the whole text. Ordinary text (4-6 characters per
   token) is settled by the first cut at ``CHARS_PER_TOKEN × max_length`` characters; the worst
   case costs a constant factor more than tokenising the whole text once.
3. Texts truncated on the left (keeping the end) are never cut, nor texts with no space to cut
   at: those are tokenised whole, as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

# Characters read per token of max_length before the first cut: generous (English runs at 4-6
# characters per WordPiece token), so the check in step 2 almost never has to grow the prefix.
CHARS_PER_TOKEN = 32
GROWTH = 4
# The first prefix tried for the span of a windowed text (many windows: a generous bound would
# tokenise far more than needed); too short a prefix is caught by the check and grown.
WINDOW_CHARS_PER_TOKEN = 8


def cut_long_texts(texts: Sequence[str], max_tokens: int, count_tokens: Callable[[list[str]], list[int]], *,
                   chars_per_token: int = CHARS_PER_TOKEN) -> list[str]:
    """Each text, or a prefix of it that tokenises to the same first ``max_tokens`` tokens.

    Args:
        texts: The texts to tokenise.
        max_tokens: The tokenizer's truncation length, special tokens included (times the number
            of windows, for a caller that reads several windows of a long text).
        count_tokens: Tokenises a list of texts with the caller's truncation and special tokens
            and returns each one's length, so at most ``max_tokens``.
        chars_per_token: Characters per token of the first prefix tried.

    Returns:
        The texts, long ones replaced by prefixes ending at a word; the list has the same length
        and order.

    Example:
        >>> count = lambda batch: [min(len(t.split()) + 2, 8) for t in batch]  # a word per token
        >>> cut_long_texts(["a b c d e f g h i j " * 100], 8, count, chars_per_token=2)[0]
        'a b c d e f g h i'
    """
    out = list(texts)
    first = chars_per_token * max_tokens
    bounds = {i: first for i, text in enumerate(out) if len(text) > first}  # item -> prefix length to try
    while bounds:
        cuts = {i: cut_at_word(texts[i], bound) for i, bound in bounds.items()}
        cuts = {i: cut for i, cut in cuts.items() if len(cut) < len(texts[i])}  # else: no cut, keep it whole
        counts = count_tokens(list(cuts.values())) if cuts else []
        bounds = {}
        for (i, cut), n in zip(cuts.items(), counts):
            if n >= max_tokens:
                out[i] = cut
            else:  # the prefix does not fill the window (very long words): try a longer one
                bounds[i] = GROWTH * len(cut)
    return out


_WORD_END = re.compile(r"\S ")  # a non-whitespace character followed by a space


def cut_at_word(text: str, at_least: int) -> str:
    """The shortest prefix of ``text`` with ``at_least`` characters or more that ends right before
    a space following a non-space (so with a whole word); ``text`` itself when there is none."""
    found = _WORD_END.search(text, max(at_least - 1, 0))
    return text[:found.start() + 1] if found else text


def window_span_tokens(max_length: int, n_special: int, overlap: int, span: int) -> int:
    """Tokens (special tokens included) a text needs for ``span`` full windows of ``max_length``
    tokens that overlap by ``overlap``: how far :func:`cut_long_texts` must keep a text's start."""
    content = max_length - n_special
    return content + (span - 1) * (content - overlap) + n_special


def select_windows(owner: Sequence[int], n_texts: int, cap: int, span: int) -> tuple[list[int], np.ndarray]:
    """The windows read and how they are pooled, from each window's text (``owner``, in order).

    Only a text's first ``span`` windows are considered (so reading a text costs at most
    ``span`` windows of tokenising, however long it is); of those, a text with more than ``cap``
    keeps ``cap`` spread evenly from the first to the last (both kept). ``span == cap``: the
    first ``cap`` windows. Returns the kept rows, in order, and ``[n_texts, len(rows)]`` float32
    weights averaging each text's kept windows. Numpy only: the ONNX engine replays it.

    Example:
        >>> rows, weights = select_windows([0, 0, 0, 0, 0, 0, 1], 2, 3, span=5)
        >>> rows, weights.tolist()
        ([0, 2, 4, 6], [[0.3333333432674408, 0.3333333432674408, 0.3333333432674408, 0.0], [0.0, 0.0, 0.0, 1.0]])
    """
    by_text: list[list[int]] = [[] for _ in range(n_texts)]
    for row, text in enumerate(owner):
        by_text[int(text)].append(row)
    rows: list[int] = []
    spans = []
    for text_rows in by_text:
        text_rows = text_rows[:span]
        if len(text_rows) > cap:
            picks = np.round(np.linspace(0, len(text_rows) - 1, cap)).astype(int)
            text_rows = [text_rows[i] for i in sorted(set(picks.tolist()))]
        spans.append((len(rows), len(text_rows)))
        rows += text_rows
    weights = np.zeros((n_texts, len(rows)), dtype=np.float32)
    for i, (start, count) in enumerate(spans):
        weights[i, start:start + count] = np.float32(1.0) / np.float32(count)
    return rows, weights

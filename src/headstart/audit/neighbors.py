"""Nearest neighbours by cosine similarity, exact for small data and sub-quadratic for large.

Up to ``EXACT_UP_TO`` items the search is exact (faiss' flat inner-product index: one blocked
matrix product, a few seconds at 10k items on two cores). Above it, an inverted-file index
(k-means cells, ``nprobe`` nearest cells searched per query) keeps the cost near
``N · sqrt(N)`` instead of ``N²``; near duplicates, being almost the same vector, fall in the
same or a neighbouring cell, so their recall stays high (``benchmarks/audit.py`` measures it
against the exact search).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EXACT_UP_TO = 10_000


@dataclass
class Neighbours:
    """``index[i, j]`` is the j-th nearest other item of item i (-1 when none), ``similarity``
    its cosine similarity; rows are sorted by decreasing similarity."""

    index: np.ndarray
    similarity: np.ndarray
    method: str


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def nearest(x: np.ndarray, k: int = 10, *, method: str = "auto", nprobe: int = 8,
            seed: int = 0) -> Neighbours:
    """The ``k`` nearest neighbours (by cosine) of every row of ``x``, itself excluded.

    Args:
        x: N×D embeddings (normalised here).
        k: neighbours per item (fewer when N ≤ k).
        method: ``"exact"``, ``"ivf"`` or ``"auto"`` (exact up to ``EXACT_UP_TO`` items).
        nprobe: cells searched per query by the IVF index.
        seed: seeds the k-means that builds the IVF cells.
    """
    import faiss

    x = normalise(x)
    n, d = x.shape
    k_eff = min(k, n - 1)
    if k_eff <= 0:
        return Neighbours(np.full((n, 0), -1, np.int64), np.zeros((n, 0), np.float32), "exact")
    if method == "auto":
        method = "exact" if n <= EXACT_UP_TO else "ivf"
    if method == "exact":
        index = faiss.IndexFlatIP(d)
    elif method == "ivf":
        # √N cells: k-means on 64 points per cell stays cheap (with 4·√N cells, training took
        # most of the time at 50k items), and 8 probed cells of √N items keep the recall high.
        nlist = max(1, min(int(math.sqrt(n)), n // 39))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        # k-means on a sample: 64 points per cell is plenty to place the cells.
        rng = np.random.default_rng(seed)
        sample = x[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
        index.train(sample)
        index.nprobe = min(nprobe, nlist)
    else:
        raise ValueError(f"method={method!r}; use auto, exact or ivf")
    index.add(x)
    sims, idx = index.search(x, k_eff + 1)
    # Drop each item itself; with exact ties (duplicates) the item may not come first.
    own = idx == np.arange(n)[:, None]
    keep_first = ~own.any(axis=1)  # the item was not returned: drop the last column instead
    own[keep_first, -1] = True
    out_idx = idx[~own].reshape(n, k_eff)
    out_sim = sims[~own].reshape(n, k_eff)
    return Neighbours(out_idx.astype(np.int64), out_sim.astype(np.float32), method)


def similar_pairs(nb: Neighbours, threshold: float, ratio: float | None = None) -> list[tuple[int, int, float]]:
    """Distinct pairs ``(i, j, similarity)`` with ``i < j`` and similarity ≥ ``threshold``.

    With ``ratio`` (Lowe's ratio test, as in SIFT matching), a pair also needs its cosine
    distance to be at most ``ratio`` times the distance from ``i`` (or ``j``) to its k-th
    neighbour: a copy stands out from its neighbourhood, while in a crowd of look-alikes (plain
    handwritten ones, the same silhouette drawn twice) every neighbour is about as close.
    """
    mask = (nb.similarity >= threshold) & (nb.index >= 0)
    rows, cols = np.nonzero(mask)
    if ratio is not None and nb.similarity.shape[1]:
        kth = 1.0 - nb.similarity[:, -1].astype(np.float64)
    best: dict[tuple[int, int], float] = {}
    for r, c in zip(rows, cols):
        j = int(nb.index[r, c])
        sim = float(nb.similarity[r, c])
        if ratio is not None and (1.0 - sim) > ratio * max(kth[r], kth[j]):
            continue
        key = (min(int(r), j), max(int(r), j))
        best[key] = max(best.get(key, -1.0), sim)
    return sorted(((i, j, s) for (i, j), s in best.items()), key=lambda t: (-t[2], t[0], t[1]))


def components(n: int, pairs: list[tuple[int, int, float]]) -> list[list[int]]:
    """Groups of items linked by pairs (union-find), each sorted, groups in order of first item."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j, _ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])

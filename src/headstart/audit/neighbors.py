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
    if method == "ivf":
        out_idx, out_sim = _cell_self_join(x, k_eff, nprobe=nprobe, seed=seed)
        return Neighbours(out_idx, out_sim, "ivf")
    if method != "exact":
        raise ValueError(f"method={method!r}; use auto, exact or ivf")
    index = faiss.IndexFlatIP(d)
    index.add(x)
    sims, idx = index.search(x, k_eff + 1)
    # Drop each item itself; with exact ties (duplicates) the item may not come first.
    own = idx == np.arange(n)[:, None]
    keep_first = ~own.any(axis=1)  # the item was not returned: drop the last column instead
    own[keep_first, -1] = True
    out_idx = idx[~own].reshape(n, k_eff)
    out_sim = sims[~own].reshape(n, k_eff)
    return Neighbours(out_idx.astype(np.int64), out_sim.astype(np.float32), method)


QUERY_CHUNK = 2048


def _cell_self_join(x: np.ndarray, k: int, *, nprobe: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Approximate k-NN of every item among all items (an IVF self-join computed with BLAS).

    Spherical k-means puts the items in √N cells; the items of each cell are compared, as one
    matrix product, with the items of the ``nprobe`` cells whose centres are nearest to their
    own cell's centre. That is about ``N · nprobe · √N`` dot products instead of ``N²``, and
    as matrix products they run several times faster than a per-query index scan.
    """
    import faiss

    n, d = x.shape
    nlist = max(1, min(int(math.sqrt(n)), n // 39))
    kmeans = faiss.Kmeans(d, nlist, niter=20, seed=seed, spherical=True, max_points_per_centroid=64,
                          verbose=False)
    kmeans.train(x)
    _, assign = kmeans.index.search(x, 1)
    assign = assign[:, 0]
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(nlist + 1))
    members = [order[bounds[c]:bounds[c + 1]] for c in range(nlist)]
    probe = min(nprobe, nlist)
    _, near_cells = kmeans.index.search(kmeans.centroids, probe)
    out_idx = np.full((n, k), -1, dtype=np.int64)
    out_sim = np.full((n, k), -np.inf, dtype=np.float32)
    for c in range(nlist):
        own = members[c]
        if not len(own):
            continue
        cells = [c, *[int(j) for j in near_cells[c] if j != c and j >= 0][: probe - 1]]
        cand = np.concatenate([members[j] for j in cells])  # this cell's items come first
        xc = x[cand]
        kk = min(k, len(cand) - 1)
        if kk <= 0:
            continue
        for start in range(0, len(own), QUERY_CHUNK):
            rows = np.arange(start, min(start + QUERY_CHUNK, len(own)))
            sims = x[own[rows]] @ xc.T
            sims[np.arange(len(rows)), rows] = -np.inf  # an item is not its own neighbour
            top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            top_sims = np.take_along_axis(sims, top, axis=1)
            ranked = np.argsort(-top_sims, axis=1, kind="stable")
            out_idx[own[rows], :kk] = cand[np.take_along_axis(top, ranked, axis=1)]
            out_sim[own[rows], :kk] = np.take_along_axis(top_sims, ranked, axis=1)
    out_sim[out_idx < 0] = -1.0
    return out_idx, out_sim


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

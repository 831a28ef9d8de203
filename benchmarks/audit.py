"""How the audit's cost grows with the data: 1k, 5k and 50k items.

Two parts, in one run:

- ``synthetic``: clustered 384-d embeddings (the size of MiniLM's) given to
  :func:`headstart.audit.audit_dataset` as features, 10 classes, an 80/20 train/test split, 1% of
  items planted as near-duplicate copies (cosine ≈ 0.99, half of them across splits) and 2% of
  labels flipped. Every check runs; the table shows each check's seconds, the near-duplicate
  search method, the recall of the planted copies and the precision / recall of the flipped
  labels among the k items of lowest label quality (k = the number flipped).
- ``search``: the neighbour search alone at 10k-100k items, exact (brute force, what an n² scan
  costs) against IVF (what ``auto`` uses above 10k items), with the recall of IVF's neighbours
  and of the planted copies, and the growth exponent.
- ``real`` (skip with ``--no-real``): digits from ``../shared/datasets/mnist-10k`` embedded by
  ``efficientnet_lite0`` (cached), at 1k and 5k items: embedding time and audit time.

    python benchmarks/audit.py                  # 1k, 5k, 50k synthetic + 1k, 5k real
    python benchmarks/audit.py --sizes 1000 5000 --no-real --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from headstart.audit import audit_dataset, neighbors
from headstart.audit.neighbors import nearest, similar_pairs
from headstart.data import from_memory

DATASETS = Path(os.environ.get("HEADSTART_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
DIM = 384
N_CLASSES = 10


def synthetic(n: int, seed: int = 0) -> tuple[Any, np.ndarray, set[tuple[int, int]], set[int]]:
    """``n`` items: the dataset, its embeddings, the planted near-duplicate pairs and flipped labels."""
    rng = np.random.default_rng(seed)
    n_copies = n // 100
    n_base = n - n_copies
    centres = rng.normal(size=(N_CLASSES * 4, DIM)).astype(np.float32)  # 4 modes per class
    mode = rng.integers(0, N_CLASSES * 4, n_base)
    x = centres[mode] + 0.9 * rng.normal(size=(n_base, DIM)).astype(np.float32)
    labels = mode // 4
    originals = rng.choice(n_base, n_copies, replace=False)
    copies = x[originals] + 0.08 * rng.normal(size=(n_copies, DIM)).astype(np.float32)
    x = np.concatenate([x, copies])
    labels = np.concatenate([labels, labels[originals]])
    texts = [f"record {i} of kind {m} written by the synthetic generator for the audit benchmark"
             for i, m in enumerate(mode)]
    texts += [texts[o] + " again" for o in originals]
    splits = np.where(rng.random(n) < 0.2, "test", "train")
    splits[n_base + np.arange(n_copies // 2)] = np.where(splits[originals[: n_copies // 2]] == "test", "train", "test")
    flipped = set(rng.choice(n_base, n // 50, replace=False).tolist())
    noisy = labels.copy()
    for i in flipped:
        noisy[i] = (labels[i] + 1 + rng.integers(0, N_CLASSES - 1)) % N_CLASSES
    data = from_memory(texts, [f"class_{v}" for v in noisy], modality="text", source=f"synthetic-{n}")
    data.splits = splits.tolist()
    pairs = {(int(o), n_base + k) for k, o in enumerate(originals)}
    return data, x, pairs, flipped


def pair_recall(found: set[tuple[int, int]], planted: set[tuple[int, int]]) -> float:
    return len(planted & found) / max(1, len(planted))


def run_synthetic(n: int) -> dict[str, Any]:
    data, x, planted, flipped = synthetic(n)
    report = audit_dataset(data, features=x, near_threshold=0.97)
    near = report.check("near-duplicates")
    found = {tuple(sorted(f.items)) for f in near.findings}
    quality = report.check("label-errors").stats["quality"]  # every item's label quality, low = suspect
    ranked = [int(i) for i, _ in sorted(quality.items(), key=lambda kv: kv[1])]
    k = len(flipped)
    row: dict[str, Any] = {"n": n, "total_s": report.seconds,
                           "checks_s": {c.name: round(c.seconds, 3) for c in report.checks},
                           "search": near.stats.get("search"), "near_recall": pair_recall(found, planted),
                           "near_pairs_found": len(found), "planted_pairs": len(planted),
                           "label_precision_at_k": len(set(ranked[:k]) & flipped) / max(1, min(k, len(ranked))),
                           "label_recall_at_k": len(set(ranked[:k]) & flipped) / k, "n_flipped": k}
    return row


def run_search(n: int, exact_up_to: int) -> dict[str, Any]:
    """The neighbour search alone at ``n`` items, IVF and (up to ``exact_up_to``) exact."""
    _, x, planted, _ = synthetic(n, seed=1)
    xn = neighbors.normalise(x)
    row: dict[str, Any] = {"n": n}
    found = {}
    for method in ("exact", "ivf"):
        if method == "exact" and n > exact_up_to:
            continue
        t0 = time.perf_counter()
        nb = nearest(xn, k=10, method=method)
        row[f"{method}_search_s"] = time.perf_counter() - t0
        row[f"{method}_planted_recall"] = pair_recall({(i, j) for i, j, _ in similar_pairs(nb, 0.97)}, planted)
        found[method] = nb.index
    if "exact" in found:
        row["ivf_neighbour_recall"] = float(np.mean([len(set(a) & set(b)) / len(a)
                                                     for a, b in zip(found["exact"], found["ivf"])]))
    return row


def run_real(sizes: Sequence[int], cache: Path) -> list[dict[str, Any]]:
    path = DATASETS / "mnist-10k" / "mnist-10k.npz"
    if not path.exists():
        print(f"{path} not found: real part skipped", file=sys.stderr)
        return []
    npz = np.load(path)
    images, labels = npz["images"], npz["labels"]
    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        idx = rng.choice(len(images), n, replace=False)
        data = from_memory(images[idx], [str(v) for v in labels[idx]], source=f"mnist-{n}")
        data.splits = np.where(rng.random(n) < 0.2, "test", "train").tolist()
        report = audit_dataset(data, backbone="efficientnet_lite0", cache=cache)
        rows.append({"n": n, "embedding_s": report.embedding_seconds, "audit_s": report.seconds - report.embedding_seconds,
                     "checks_s": {c.name: round(c.seconds, 3) for c in report.checks},
                     "findings": {c.name: c.count for c in report.checks if c.severity not in ("ok", "skipped")}})
        print(f"[real] {n}: embedding {report.embedding_seconds:.1f}s, audit {rows[-1]['audit_s']:.1f}s",
              file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]], search: list[dict[str, Any]], real: list[dict[str, Any]]) -> list[str]:
    checks = list(rows[0]["checks_s"]) if rows else []
    slow = [c for c in checks if max(r["checks_s"][c] for r in rows) >= 0.05]
    lines = ["### synthetic embeddings (384-d, 10 classes, 1% planted copies, 2% flipped labels)\n",
             "| items | audit total s | " + " | ".join(f"{c} s" for c in slow)
             + " | search | planted copies found | label errors P@k / R@k |",
             "| --: | --: | " + " | ".join("--:" for _ in slow) + " | --- | --: | --: |"]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['total_s']:.1f} | " + " | ".join(f"{r['checks_s'][c]:.2f}" for c in slow)
                     + f" | {r['search']} | {r['near_recall']:.3f} ({r['planted_pairs']}) | "
                     f"{r['label_precision_at_k']:.2f} / {r['label_recall_at_k']:.2f} |")
    if len(rows) >= 2:
        a, b = rows[-2], rows[-1]
        ratio = b["n"] / a["n"]
        lines.append(f"\nFrom {a['n']:,} to {b['n']:,} items ({ratio:.0f}× more; an n² scan costs {ratio ** 2:.0f}× "
                     f"more): the whole audit took {b['total_s'] / a['total_s']:.1f}× as long.")
    lines += ["\n### neighbour search alone (k=10, synthetic 384-d)\n",
              "| items | exact s | IVF s | exact / IVF | IVF neighbour recall | planted copies: exact / IVF |",
              "| --: | --: | --: | --: | --: | --: |"]
    for r in search:
        ex = r.get("exact_search_s")
        lines.append(f"| {r['n']:,} | {'—' if ex is None else f'{ex:.2f}'} | {r['ivf_search_s']:.2f} | "
                     + (f"{ex / r['ivf_search_s']:.1f}× | {r['ivf_neighbour_recall']:.3f} | "
                        f"{r['exact_planted_recall']:.3f} / {r['ivf_planted_recall']:.3f} |" if ex is not None
                        else f"— | — | — / {r['ivf_planted_recall']:.3f} |"))
    if len(search) >= 2:
        a, b = search[0], search[-1]
        growth = np.log(b["ivf_search_s"] / a["ivf_search_s"]) / np.log(b["n"] / a["n"])
        lines.append(f"\nIVF search time grows as n^{growth:.2f} from {a['n']:,} to {b['n']:,} items "
                     "(brute force: n^2).")
        pairs = [r for r in search if "exact_search_s" in r]
        if len(pairs) >= 2:
            e = np.log(pairs[-1]["exact_search_s"] / pairs[0]["exact_search_s"]) / np.log(pairs[-1]["n"] / pairs[0]["n"])
            lines.append(f"Exact search measured here grows as n^{e:.2f} from {pairs[0]['n']:,} to {pairs[-1]['n']:,}.")
    if real:
        lines += ["\n### real: mnist digits, efficientnet_lite0 features\n",
                  "| items | embedding s (near 0 when cached) | audit s (excluding embedding) | findings |",
                  "| --: | --: | --: | --- |"]
        for r in real:
            found = ", ".join(f"{k} {v}" for k, v in r["findings"].items()) or "none"
            lines.append(f"| {r['n']:,} | {r['embedding_s']:.1f} | {r['audit_s']:.1f} | {found} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 50000])
    parser.add_argument("--search-sizes", type=int, nargs="+", default=[10000, 20000, 50000, 100000])
    parser.add_argument("--exact-up-to", type=int, default=50000, help="largest size the exact search is timed at")
    parser.add_argument("--real-sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--no-real", action="store_true", help="skip the mnist part")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    for n in args.sizes:
        rows.append(run_synthetic(n))
        print(f"[synthetic] {n}: {rows[-1]['total_s']:.1f}s", file=sys.stderr, flush=True)
    search = []
    for n in args.search_sizes:
        search.append(run_search(n, args.exact_up_to))
        print(f"[search] {n}: ivf {search[-1]['ivf_search_s']:.1f}s", file=sys.stderr, flush=True)
    real = [] if args.no_real else run_real(args.real_sizes, args.cache_dir or Path(tempfile.mkdtemp(prefix="hs-audit-")))
    if args.json:
        args.json.write_text(json.dumps({"synthetic": rows, "search": search, "real": real}, indent=2))
    print("\n".join(table(rows, search, real)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

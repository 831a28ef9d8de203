"""Feature-extraction throughput: headstart versus a plain PyTorch loop, and the embedding cache.

For each embedded backbone (``efficientnet_lite0`` on the animal-silhouettes train images,
``minilm`` on the first spam-assassin emails) this script measures, in one process:

1. **headstart, cold cache**: items/second of
   ``extract_features(backbone, dataset, cache=EmbeddingCache(tmpdir), batch_size=B)``
   with an empty temporary cache. The timed call includes everything headstart does:
   hashing every item's content, hashing the backbone's weights (its cache identity),
   decoding/tokenising, the forward passes and writing the cache shards.
2. **plain PyTorch**: items/second of the loop a user would write over the *same* model
   object and batch size, in input order. Images: PIL open, ``convert("RGB")``, the same
   timm eval transform (``backbone.transform``), ``torch.stack``, then
   ``model.forward_head(model.forward_features(x), pre_logits=True)`` under
   ``torch.inference_mode`` (contiguous input). Texts: the Hugging Face tokenizer
   (padding, truncation at ``backbone.max_length``), ``model(**inputs).last_hidden_state``,
   masked mean pooling and L2 normalisation. Its features are checked against headstart's
   (max abs difference, must be ≤ 1e-3) so the comparison is like-for-like.
3. **ratio** headstart / plain throughput (goal ≥ 0.95).
4. **warm cache**: the same ``extract_features`` call again on a fresh dataset object
   (so item hashes are recomputed, as in a new process) with the now-filled cache; its
   speed-up over the cold call (goal ≥ 20×).
5. **peak RSS** (``resource.getrusage().ru_maxrss``, a high-water mark) after each
   phase and at the end; the JSON also has the current RSS after each phase.

Each method gets one warm-up pass over the first batch before anything is timed, so
one-time costs (lazy kernel initialisation, allocator growth) are excluded equally. With
``--repeats R`` (default 3) the order alternates between repeats (plain first, then
headstart first, ...: a drift in machine speed hits both alike) and the median is reported. Process CPU
time is recorded next to wall time (a second view of the ratio), and the load average at
start and end is printed: on a busy machine other processes slow whichever method happens
to run alongside them (and torch's OpenMP threads suffer badly when the cores are
oversubscribed), so compare numbers taken at a load average well under the CPU count.
``torch``'s default thread count is left unchanged.

Run from the repository root::

    python benchmarks/feature_extraction.py                 # 320 images + 320 emails
    python benchmarks/feature_extraction.py --quick         # 96 of each, a quick smoke run
    python benchmarks/feature_extraction.py --n 600 --json results.json

The datasets are read from ``../shared/datasets`` beside the repository, or from
``$HEADSTART_SHARED_DATASETS``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import headstart
from headstart.backbones import create_backbone
from headstart.backbones.base import Backbone
from headstart.backbones.text import HFTextBackbone
from headstart.backbones.vision import TimmBackbone
from headstart.data import from_memory, load_image_folder
from headstart.embedding_cache import EmbeddingCache
from headstart.features import extract_features

DATASETS = Path(
    os.environ.get(
        "HEADSTART_SHARED_DATASETS",
        Path(__file__).resolve().parents[2] / "shared" / "datasets",
    )
)
TOLERANCE = 1e-3
RATIO_GOAL = 0.95
WARM_GOAL = 20.0
DEFAULT_N = 320
QUICK_N = 96

PlainLoop = Callable[[Backbone, Sequence[Any], int], np.ndarray]


@dataclass
class Result:
    """Timings (seconds per repeat) and checks for one backbone."""

    backbone: str
    data: str
    modality: str
    n_items: int
    batch_size: int
    load_s: float
    plain_s: list[float] = field(default_factory=list)
    cold_s: list[float] = field(default_factory=list)
    warm_s: list[float] = field(default_factory=list)
    plain_cpu_s: list[float] = field(default_factory=list)
    cold_cpu_s: list[float] = field(default_factory=list)
    warm_cpu_s: list[float] = field(default_factory=list)
    max_abs_diff: float = float("nan")
    warm_max_abs_diff: float = float("nan")
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)

    @property
    def plain_ips(self) -> float:
        return self.n_items / statistics.median(self.plain_s)

    @property
    def cold_ips(self) -> float:
        return self.n_items / statistics.median(self.cold_s)

    @property
    def ratio(self) -> float:
        return self.cold_ips / self.plain_ips

    @property
    def cpu_ratio(self) -> float:
        """headstart / plain throughput measured in process CPU time instead of wall time."""
        return statistics.median(self.plain_cpu_s) / statistics.median(self.cold_cpu_s)

    @property
    def warm_speedup(self) -> float:
        return statistics.median(self.cold_s) / statistics.median(self.warm_s)

    @property
    def like_for_like(self) -> bool:
        return self.max_abs_diff <= TOLERANCE and self.warm_max_abs_diff <= TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(plain_items_per_s=self.plain_ips, headstart_cold_items_per_s=self.cold_ips,
                   headstart_over_plain=self.ratio, headstart_over_plain_cpu=self.cpu_ratio,
                   warm_speedup=self.warm_speedup,
                   like_for_like=self.like_for_like)
        return out


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def current_rss_mb() -> float:
    """The process's resident set size now, in MB (NaN where /proc is unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def load_images(n: int) -> list[Path]:
    """The first ``n`` animal-silhouettes train images (class folders, sorted)."""
    train = load_image_folder(DATASETS / "animal-silhouettes").split("train")
    if len(train) < n:
        raise SystemExit(f"only {len(train)} train images in {DATASETS / 'animal-silhouettes'}; use --n {len(train)}")
    return list(train.items[:n])


def load_texts(n: int) -> list[str]:
    """The ``text`` field of the first ``n`` spam-assassin emails."""
    texts: list[str] = []
    with open(DATASETS / "spam-assassin" / "emails.jsonl", encoding="utf-8") as f:
        for line in f:
            if len(texts) == n:
                break
            texts.append(json.loads(line)["text"])
    if len(texts) < n:
        raise SystemExit(f"only {len(texts)} emails in {DATASETS / 'spam-assassin'}; use --n {len(texts)}")
    return texts


def plain_image_loop(backbone: Backbone, paths: Sequence[Any], batch_size: int) -> np.ndarray:
    """What a user would write with PIL + the timm eval transform, in input order."""
    assert isinstance(backbone, TimmBackbone)
    model = backbone.model.eval()
    out: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            tensors = []
            for path in paths[start:start + batch_size]:
                with Image.open(path) as img:
                    tensors.append(backbone.transform(img.convert("RGB")))
            x = torch.stack(tensors)
            out.append(model.forward_head(model.forward_features(x), pre_logits=True))
    return torch.cat(out).numpy()


def plain_text_loop(backbone: Backbone, texts: Sequence[Any], batch_size: int) -> np.ndarray:
    """Tokenizer + encoder + masked mean pooling + L2 normalisation, in input order."""
    assert isinstance(backbone, HFTextBackbone)
    tokenizer, model = backbone.tokenizer, backbone.model.eval()
    out: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            inputs = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                               max_length=backbone.max_length, return_tensors="pt")
            states = model(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(F.normalize(pooled, p=2, dim=1))
    return torch.cat(out).numpy()


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall time and process CPU time of one call (after a garbage collection), and its result."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    value = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def record(result: Result, phase: str) -> None:
    """Peak (high-water mark so far) and current RSS after a phase."""
    result.peak_rss_mb[f"{result.backbone}:{phase}"] = peak_rss_mb()
    result.rss_mb[f"{result.backbone}:{phase}"] = current_rss_mb()


def run_headstart(backbone: Backbone, items: Sequence[Any], modality: str, batch_size: int,
                  cache: EmbeddingCache | None) -> np.ndarray:
    """``extract_features`` on a fresh dataset, so item hashes are computed inside the call."""
    dataset = from_memory(list(items), modality=modality, source="benchmark")
    return extract_features(backbone, dataset, cache=cache, batch_size=batch_size)


def one_repeat(result: Result, backbone: Backbone, items: Sequence[Any], plain: PlainLoop,
               plain_first: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain loop, headstart cold and headstart warm (cold before warm), in the given order."""
    b, modality = result.batch_size, result.modality
    with tempfile.TemporaryDirectory(prefix="headstart-bench-cache-") as tmp:
        cache = EmbeddingCache(tmp)
        steps: list[tuple[str, Callable[[], np.ndarray]]] = [
            ("headstart_cold", lambda: run_headstart(backbone, items, modality, b, cache)),
            ("headstart_warm", lambda: run_headstart(backbone, items, modality, b, cache)),
        ]
        plain_step = ("plain", lambda: plain(backbone, items, b))
        steps = [plain_step, *steps] if plain_first else [*steps, plain_step]
        walls = {"plain": result.plain_s, "headstart_cold": result.cold_s, "headstart_warm": result.warm_s}
        cpus = {"plain": result.plain_cpu_s, "headstart_cold": result.cold_cpu_s,
                "headstart_warm": result.warm_cpu_s}
        features: dict[str, np.ndarray] = {}
        for name, fn in steps:
            wall, cpu, features[name] = timed(fn)
            walls[name].append(wall)
            cpus[name].append(cpu)
            record(result, name)
    return features["plain"], features["headstart_cold"], features["headstart_warm"]


def bench_backbone(name: str, data: str, items: Sequence[Any], plain: PlainLoop,
                   batch_size: int, repeats: int) -> Result:
    """Load a backbone, warm both methods up, then time them ``repeats`` times."""
    load_s, _, backbone = timed(lambda: create_backbone(name))
    result = Result(backbone=name, data=data, modality=backbone.spec.modality, n_items=len(items),
                    batch_size=batch_size, load_s=load_s)
    record(result, "load")
    head = items[:batch_size]
    plain(backbone, head, batch_size)  # warm-up: one batch through each method, untimed
    run_headstart(backbone, head, result.modality, batch_size, cache=None)
    record(result, "warm-up")
    diffs, warm_diffs = [], []
    for r in range(repeats):
        plain_feats, cold, warm = one_repeat(result, backbone, items, plain, plain_first=r % 2 == 0)
        diffs.append(float(np.abs(plain_feats - cold).max()))
        warm_diffs.append(float(np.abs(warm - cold).max()))
    result.max_abs_diff, result.warm_max_abs_diff = max(diffs), max(warm_diffs)
    del backbone
    gc.collect()
    return result


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": affinity,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "headstart": getattr(headstart, "__version__", "?"),
        "load_average_start": load_average(),
        "peak_rss_mb_after_imports": peak_rss_mb(),
    }


def markdown(results: list[Result], machine: dict[str, Any], repeats: int) -> str:
    """The results as a markdown header, table and goal summary."""
    lines = [
        f"Machine: {machine['platform']} ({machine['processor']}), {machine['cpu_count']} CPUs "
        f"({machine['usable_cpus']} usable), Python {machine['python']}, torch {machine['torch']} "
        f"with {machine['torch_threads']} threads, headstart {machine['headstart']}; {machine['date']}.",
        f"Load average (1/5/15 min) at start: {machine['load_average_start']}; at end: {load_average()}.",
        "",
        "| backbone | data | items | batch | plain (items/s) | headstart cold (items/s) "
        "| headstart / plain | cold (s) | warm cache (s) | warm speed-up | max abs diff | process peak RSS (MB) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        rss = max(v for k, v in r.peak_rss_mb.items() if k.startswith(f"{r.backbone}:"))
        lines.append(
            f"| {r.backbone} | {r.data} | {r.n_items} | {r.batch_size} | {r.plain_ips:.1f} "
            f"| {r.cold_ips:.1f} | {r.ratio:.3f} | {statistics.median(r.cold_s):.2f} "
            f"| {statistics.median(r.warm_s):.3f} | {r.warm_speedup:.1f}× "
            f"| {r.max_abs_diff:.1e} | {rss:.0f} |"
        )
    lines += [
        "",
        f"Wall-clock medians of {repeats} repeat(s). headstart cold/warm = `extract_features` with an "
        "empty/filled cache, including item and weight hashing. Max abs diff = plain vs headstart "
        "features. Peak RSS is the process's high-water mark after that row's phases (cumulative).",
        "",
    ]
    for r in results:
        ratio_ok = "met" if r.ratio >= RATIO_GOAL else "NOT met"
        warm_ok = "met" if r.warm_speedup >= WARM_GOAL else "NOT met"
        lines.append(
            f"- {r.backbone}: headstart/plain {r.ratio:.3f} (goal ≥ {RATIO_GOAL}: {ratio_ok}; "
            f"by CPU time {r.cpu_ratio:.3f}); warm speed-up {r.warm_speedup:.1f}× "
            f"(goal ≥ {WARM_GOAL:.0f}×: {warm_ok}); features "
            f"{'match' if r.like_for_like else 'DIFFER'} (tolerance {TOLERANCE:g})."
        )
    lines.append(f"- Peak RSS of the whole process at the end: {peak_rss_mb():.0f} MB "
                 f"({machine['peak_rss_mb_after_imports']:.0f} MB after imports, before any model).")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None,
                        help=f"items per backbone (default {DEFAULT_N}; {QUICK_N} with --quick)")
    parser.add_argument("--quick", action="store_true", help=f"a small run ({QUICK_N} items each)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size for both methods")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed repeats per method, alternating order; the median is reported")
    parser.add_argument("--only", choices=("image", "text"), default=None, help="run one backbone only")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = QUICK_N if args.quick else DEFAULT_N
    if args.n < 1 or args.batch_size < 1 or args.repeats < 1:
        parser.error("--n, --batch-size and --repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    print(f"# headstart feature extraction benchmark (n={args.n}, batch={args.batch_size}, "
          f"repeats={args.repeats})", flush=True)
    workloads = [
        ("image", "efficientnet_lite0", "animal-silhouettes train", load_images, plain_image_loop),
        ("text", "minilm", "spam-assassin emails", load_texts, plain_text_loop),
    ]
    results = []
    for modality, name, data, load, plain in workloads:
        if args.only in (None, modality):
            print(f"... {name} on {args.n} items of {data}", file=sys.stderr, flush=True)
            results.append(bench_backbone(name, data, load(args.n), plain, args.batch_size, args.repeats))
    print()
    print(markdown(results, machine, args.repeats))
    if args.json is not None:
        payload = {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()},
                   "results": [r.to_dict() for r in results], "final_peak_rss_mb": peak_rss_mb()}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nJSON written to {args.json}")
    return 0 if all(r.like_for_like for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())

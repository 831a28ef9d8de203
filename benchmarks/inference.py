"""Inference speed of a bundle: PyTorch vs ONNX vs ONNX-int8, on both embedded backbones.

First the script makes the bundles it measures, in a temporary folder (or ``--bundles DIR``,
reused when already there): a linear-probe fit of ``efficientnet_lite0`` on
``examples/animal-silhouettes`` and of ``minilm`` on ``examples/spam-sample.jsonl``
(``headstart fit --no-compare --no-learning-curve``), each exported with
``headstart export --quantize int8``. Then, for each bundle and each engine
(``load_engine(bundle, "torch" | "onnx" | "onnx-int8")``), in one process:

1. **batch 1 latency**: wall time of ``engine.predict_proba([item])`` per item, over ``--calls``
   calls cycling through the distinct items of the bundle's data; p50 and p95 in ms. Each call includes
   everything a prediction costs: reading and decoding the image file / tokenising the text,
   preprocessing, the forward pass and the softmax.
2. **batch 32 throughput**: items/second of ``predict_proba`` over ``--batches`` batches of 32
   distinct items (the engine's ``batch_size=32``; the torch engine computes a repeated item only
   once per call), the median of ``--repeats`` runs.
3. **ratios** against torch (goal: ONNX ≥ 1.5× torch at batch 1).
4. **cold start**: a fresh ``python`` process that imports the engine, loads the bundle and
   predicts one item (the cost of ``headstart predict`` or a serving worker starting), median
   of 3, with the heavy modules that process imported.

The emails of spam-sample are long (most reach minilm's 256-token limit), so a second text
row, ``minilm (short)``, measures the same bundle on the first 12 words of each email: how
much ONNX gains depends on sequence length.

Engines run one after another (never interleaved: onnxruntime's worker threads spin briefly
after a run and would steal the CPU from a torch call right after), the order alternating
between repeats; both runtimes keep their default thread counts. The load average at start and
end is printed: compare numbers taken on an otherwise idle machine.

Run from the repository root::

    python benchmarks/inference.py                      # ~5 minutes on 2 cores
    python benchmarks/inference.py --quick              # a smoke run
    python benchmarks/inference.py --json results.json --bundles /tmp/hs-bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import headstart
from headstart.serving.engine import Engine, load_engine
from headstart.serving.export import export_onnx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ENGINES = ("torch", "onnx", "onnx-int8")
HEAVY = ("torch", "timm", "transformers", "sklearn")
WORKLOADS = [
    # (row name, backbone, data, item transform)
    ("efficientnet_lite0", "efficientnet_lite0", EXAMPLES / "animal-silhouettes", None),
    ("minilm", "minilm", EXAMPLES / "spam-sample.jsonl", None),
    ("minilm (short)", "minilm", EXAMPLES / "spam-sample.jsonl", "first-12-words"),
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="batch-1 calls per engine (default 100)")
    parser.add_argument("--batches", type=int, default=4, help="batches of 32 per throughput run (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs per engine, median kept (default 3)")
    parser.add_argument("--bundles", type=Path, default=None, help="where to make (or find) the bundles")
    parser.add_argument("--quick", action="store_true", help="30 calls, 2 batches, 1 repeat")
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.batches, args.repeats = 30, 2, 1
    return args


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def machine_info() -> dict[str, Any]:
    import onnxruntime
    import torch

    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": onnxruntime.__version__,
        "headstart": headstart.__version__,
        "load_average_start": load_average(),
    }


# ------------------------------------------------------------------ bundles
def prepare_bundle(backbone: str, data: Path, folder: Path) -> Path:
    """A linear-probe bundle of ``backbone`` on ``data``, exported with int8 (reused if present)."""
    from headstart.cli.app import run

    bundle = folder / backbone
    manifest = bundle / "headstart.json"
    if manifest.is_file() and (json.loads(manifest.read_text()).get("onnx") or {}).get("int8"):
        return bundle
    print(f"... fitting {backbone} on {data.name}", file=sys.stderr, flush=True)
    code = run(["fit", str(data), "--backbone", backbone, "--out", str(bundle), "--no-compare",
                "--no-learning-curve", "--no-track", "-q", "--cache-dir", str(folder / "cache")])
    if code != 0:
        raise SystemExit(f"fit of {backbone} failed (exit {code})")
    print(f"... exporting {backbone} (ONNX + int8)", file=sys.stderr, flush=True)
    export_onnx(bundle, quantize="int8")
    return bundle


def distinct_items(bundle: Path, transform: str | None) -> list[Any]:
    """The items of the bundle's data, each content once (the torch engine computes a repeated item
    once per call, which would flatter it), as ``predict`` would receive them."""
    from headstart.data import load_data
    from headstart.data.items import item_sha256

    loader = json.loads((bundle / "headstart.json").read_text())["loader"]
    source = Path(loader["path"])
    dataset = load_data(source) if source.is_dir() else load_data(source, text_col=loader.get("text_col"),
                                                                    label_col=loader["label_col"])
    items = dataset.items
    if transform == "first-12-words":
        items = [" ".join(text.split()[:12]) for text in items]
    unique = {item_sha256(item): item for item in items}
    return [str(i) if isinstance(i, Path) else i for i in unique.values()]


# ------------------------------------------------------------------ measuring
def latency_ms(engine: Engine, items: list[Any], calls: int) -> list[float]:
    for item in items[:3]:
        engine.predict_proba([item])
    times = []
    for k in range(calls):
        item = items[k % len(items)]
        t = time.perf_counter()
        engine.predict_proba([item])
        times.append((time.perf_counter() - t) * 1000)
    return times


def throughput(engine: Engine, items: list[Any], batches: int) -> float:
    batch = items[: 32 * batches]  # distinct items
    engine.predict_proba(items[-32:])  # warm-up
    t = time.perf_counter()
    engine.predict_proba(batch)
    return len(batch) / (time.perf_counter() - t)


def cold_start(bundle: Path, engine: str, item: Any) -> dict[str, Any]:
    """Seconds from a new process to its first prediction, and the heavy modules it imported."""
    code = (
        "import sys, time, json\n"
        "t = time.perf_counter()\n"
        "from headstart.serving.engine import load_engine\n"
        f"e = load_engine({str(bundle)!r}, {engine!r})\n"
        f"e.predict_proba([{item!r}])\n"
        f"print(json.dumps([time.perf_counter() - t, [m for m in {HEAVY!r} if m in sys.modules]]))\n"
    )
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        inside, heavy = json.loads(done.stdout.strip().splitlines()[-1])
        runs.append((time.perf_counter() - started, inside, heavy))
    wall = statistics.median(r[0] for r in runs)
    return {"process_s": round(wall, 3), "in_process_s": round(statistics.median(r[1] for r in runs), 3),
            "heavy_modules": runs[0][2]}


def bench_workload(name: str, bundle: Path, items: list[Any], args: argparse.Namespace,
                   cold: bool = True) -> dict[str, Any]:
    print(f"... measuring {name} ({len(items)} distinct items)", file=sys.stderr, flush=True)
    manifest = json.loads((bundle / "headstart.json").read_text())
    engines = {e: load_engine(bundle, e, batch_size=32) for e in ENGINES}
    lat: dict[str, list[float]] = {e: [] for e in ENGINES}
    ips: dict[str, list[float]] = {e: [] for e in ENGINES}
    for repeat in range(args.repeats):
        order = ENGINES if repeat % 2 == 0 else ENGINES[::-1]
        for e in order:
            if repeat == 0:
                time.sleep(0.5)  # let the other runtime's threads go idle
                lat[e] = latency_ms(engines[e], items, args.calls)
            time.sleep(0.5)
            ips[e].append(throughput(engines[e], items, args.batches))
    sizes = {"torch": None, "onnx": manifest["files"]["model.onnx"]["bytes"],
             "onnx-int8": manifest["files"]["model.int8.onnx"]["bytes"]}
    rows = {}
    for e in ENGINES:
        rows[e] = {"p50_ms": float(np.percentile(lat[e], 50)), "p95_ms": float(np.percentile(lat[e], 95)),
                   "items_per_s_b32": statistics.median(ips[e]), "file_mb": sizes[e] / 1e6 if sizes[e] else None}
    for e in ENGINES:
        rows[e]["speedup_b1"] = rows["torch"]["p50_ms"] / rows[e]["p50_ms"]
        rows[e]["speedup_b32"] = rows[e]["items_per_s_b32"] / rows["torch"]["items_per_s_b32"]
    extra: dict[str, Any] = {}
    if manifest["modality"] == "text":
        lengths = [engines["onnx"].preprocess([t])["input_ids"].shape[1] for t in items]
        extra["median_tokens"] = int(np.median(lengths))
    accuracy = (manifest["onnx"]["int8"].get("accuracy") or {})
    return {"name": name, "bundle": str(bundle), "items": len(items), "engines": rows, **extra,
            "int8_accuracy": {k: accuracy.get(k) for k in ("onnx", "onnx-int8", "delta", "items")},
            "cold_start": {e: cold_start(bundle, e, items[0]) for e in ("torch", "onnx")} if cold else None}


# ------------------------------------------------------------------ report
def engines_markdown(results: list[dict[str, Any]], machine: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"## Inference engines ({machine['date']}, {machine['processor']}, {machine['cpu_count']} CPUs, "
        f"torch {machine['torch']} ({machine['torch_threads']} threads), onnxruntime {machine['onnxruntime']})",
        "",
        f"Batch 1: {args.calls} calls of `predict_proba([item])` (decode/tokenise included); batch 32: "
        f"{args.batches} batches, median of {args.repeats}. Load average {machine['load_average_start']} → "
        f"{machine.get('load_average_end', '?')}.",
        "",
        "| workload | engine | p50 ms | p95 ms | b1 vs torch | items/s b32 | b32 vs torch | file MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        label = r["name"] + (f" ({r['median_tokens']} tokens)" if "median_tokens" in r else "")
        for e, row in r["engines"].items():
            size = f"{row['file_mb']:.1f}" if row["file_mb"] else "–"
            lines.append(f"| {label} | {e} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['speedup_b1']:.2f}× | "
                         f"{row['items_per_s_b32']:.1f} | {row['speedup_b32']:.2f}× | {size} |")
    lines += ["", "| workload | int8 accuracy (held-out) | cold start torch | cold start onnx | heavy modules (onnx) |",
              "| --- | --- | ---: | ---: | --- |"]
    for r in results:
        if r["cold_start"] is None:
            continue  # another item set on a bundle already listed
        a, c = r["int8_accuracy"], r["cold_start"]
        acc = f"{a['onnx']:.3f} → {a['onnx-int8']:.3f} (Δ {a['delta']:+.3f}, n={a['items']})" if a["onnx"] is not None else "–"
        lines.append(f"| {r['name']} | {acc} | {c['torch']['process_s']:.2f} s | {c['onnx']['process_s']:.2f} s | "
                     f"{', '.join(c['onnx']['heavy_modules']) or 'none'} |")
    goal = [f"{r['name']} {r['engines']['onnx']['speedup_b1']:.2f}×" for r in results]
    met = all(r["engines"]["onnx"]["speedup_b1"] >= 1.5 for r in results)
    lines += ["", f"Goal ONNX ≥ 1.5× torch at batch 1: {'met' if met else 'NOT met'} ({'; '.join(goal)})."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the bundles, then run each benchmark section on them.

    Every section reads the same prepared bundles and adds its numbers under its own key of
    ``results`` and its own markdown to ``report``.
    """
    args = parse_args(argv)
    os.environ.setdefault("HEADSTART_NO_TRACK", "1")
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="headstart-bench-") as scratch:
        folder = args.bundles or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        bundles = {backbone: prepare_bundle(backbone, data, folder) for _, backbone, data, _ in WORKLOADS}
        engines = [bench_workload(name, bundles[backbone], distinct_items(bundles[backbone], transform), args,
                                  cold=transform is None)
                   for name, backbone, _, transform in WORKLOADS]
        machine["load_average_end"] = load_average()
        results: dict[str, Any] = {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()},
                                   "engines": engines}
        report = [engines_markdown(engines, machine, args)]
    print("\n\n".join(report))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A bounded load test of the HTTP service (``headstart serve``) on loopback.

Starts the service in a subprocess (``serve()`` on a free loopback port, ``--workers N``), then C
client threads, each on its own keep-alive connection, send ``POST /predict`` for D seconds, every
request the same batch of real items: e-mails from ``../shared/datasets/spam-assassin/emails.jsonl``
(or ``examples/spam-sample.jsonl``) for a text bundle, base64 PNGs from
``examples/animal-silhouettes`` for an image bundle. Reported: requests/s, items/s, p50/p95/p99
latency, errors (goal: 0), the peak RSS of the server's process tree (parent + workers), the
number of JSON access-log lines against the number of requests, and the exit code after SIGTERM.

``--fake text|image`` serves a deterministic fake engine instead of a bundle: it measures the
service alone (HTTP, validation, image decoding, logging), not a model. The clients share the
machine with the server, so on a small box they compete with it for CPU.

``--soak [SECONDS]`` (600 when no number is given) is the endurance run instead: the clients send
a seeded mix of valid and invalid requests (malformed JSON, wrong fields, too many items, wrong
content type, oversized bodies, 100k-character texts; for images undecodable bytes, a
400-megapixel header, 64 flat 25-megapixel PNGs, and 4 of them that must be decoded) while a
slow client keeps half-sent requests open. Reported: requests served, answers by kind and
status (every one must be the expected status: ``unexpected`` is the goal-0 number), p95
latency, slow connections the server dropped, and the server's RSS at start (after warm-up),
peak, and end (after the load and a few idle seconds), with whether it returned to its baseline.

    python benchmarks/serve_load.py runs/spam --workers 2 --clients 8 --duration 30
    python benchmarks/serve_load.py runs/animals --engine onnx --json out.json
    python benchmarks/serve_load.py --fake text --duration 10
    python benchmarks/serve_load.py --fake image --soak 60
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import io
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("HEADSTART_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
FAKE_ENV = "HEADSTART_SERVE_LOAD_FAKE"
SERVE_SCRIPT = """
import json, sys
from headstart.serving.server import serve
serve(**json.loads(sys.argv[1]))
"""


# ------------------------------------------------------------------------------ fake engine
class FakeEngine:
    """Deterministic stand-in for a loaded engine: text → P(spam) from the word count, image →
    P(bright) from the mean brightness. Costs next to nothing, so the service is what is measured."""

    def __init__(self, modality: str) -> None:
        self.name, self.modality = "fake", modality
        self.classes = ["ham", "spam"] if modality == "text" else ["dark", "bright"]
        self.metadata = {"labels": self.classes, "backbone": {"name": "fake"}, "verdict": None}

    def predict_proba(self, items: list[Any]) -> np.ndarray:
        if self.modality == "text":
            p = np.array([min(len(t.split()), 500) / 500 for t in items])
        else:
            # np.mean over uint8 accumulates in chunks: no float copy of a large image to skew the RSS
            p = np.array([float(np.asarray(im).mean()) / 255 for im in items])
        return np.column_stack([1 - p, p])


def fake_engine(bundle: str, engine: str) -> FakeEngine:
    """For HEADSTART_SERVE_ENGINE_FACTORY=serve_load:fake_engine (the modality comes from FAKE_ENV)."""
    return FakeEngine(os.environ.get(FAKE_ENV, "text"))


# ------------------------------------------------------------------------------------ items
def text_items(n: int, max_chars: int) -> list[str]:
    for path in (DATASETS / "spam-assassin" / "emails.jsonl", ROOT / "examples" / "spam-sample.jsonl"):
        if path.is_file():
            texts = []
            with open(path) as f:
                for line in f:
                    texts.append(json.loads(line)["text"][:max_chars])
                    if len(texts) == n:
                        return texts
    raise SystemExit("no e-mails found: expected ../shared/datasets/spam-assassin/emails.jsonl or examples/spam-sample.jsonl")


def image_items(n: int) -> list[str]:
    files = sorted(p for p in (ROOT / "examples" / "animal-silhouettes").rglob("*") if p.suffix.lower() in (".png", ".jpg"))
    if not files:
        raise SystemExit("no images found under examples/animal-silhouettes")
    return [base64.b64encode(files[i * len(files) // n].read_bytes()).decode() for i in range(n)]


# ----------------------------------------------------------------------------------- server
class Server:
    """``serve()`` in a subprocess; its stderr drained (and access lines counted) by a thread."""

    def __init__(self, bundle: Path, args: argparse.Namespace) -> None:
        env = dict(os.environ)
        if args.fake:
            env.update({"HEADSTART_SERVE_ENGINE_FACTORY": "serve_load:fake_engine", FAKE_ENV: args.fake,
                        "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parent), env.get("PYTHONPATH")) if p)})
        options = {"bundle": str(bundle), "port": 0, "workers": args.workers, "engine": args.engine,
                   "max_batch": max(args.batch, 64), "threads": args.threads}
        # A session of its own, so that kill() can end the workers too if the run fails midway.
        self.proc = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT, json.dumps(options)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.port: int | None = None
        self.access_lines = 0
        self.tail: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.tail = [*self.tail[-30:], line]
            if '"headstart.serving.access"' in line:
                self.access_lines += 1
            elif self.port is None and (found := re.search(r"listening on http://[\d.]+:(\d+)", line)):
                self.port = int(found.group(1))
                self.ready.set()
        self.ready.set()

    def wait_healthy(self, timeout: float = 300) -> None:
        self.ready.wait(timeout)
        deadline = time.monotonic() + timeout
        while self.port is not None and time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if request(self.port, "GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("the service did not become healthy:\n" + "".join(self.tail))

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> tuple[int, float]:
        start = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        return code, time.perf_counter() - start


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


class MemorySampler(threading.Thread):
    """Peak RSS of a process and its children, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        try:
            import psutil
        except ImportError as e:
            raise SystemExit("the memory measurement needs psutil: pip install psutil") from e
        self.root, self.interval, self.peak, self.stopped = psutil.Process(pid), interval, 0, threading.Event()

    def rss(self) -> int:
        import psutil

        total = 0
        for p in [self.root, *self.root.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.peak = max(self.peak, self.rss())
            except Exception:  # the server ended
                return


# ------------------------------------------------------------------------------------- load
def client(port: int, body: bytes, n_items: int, deadline: float, latencies: list[float], errors: Counter) -> None:
    """One client: a keep-alive connection, requests back to back until the deadline."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        try:
            conn.request("POST", "/predict", body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException) as e:
            errors[type(e).__name__] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        elapsed = time.perf_counter() - start
        if resp.status != 200:
            errors[f"HTTP {resp.status}"] += 1
        elif len(json.loads(payload)["predictions"]) != n_items:
            errors["wrong number of predictions"] += 1
        else:
            latencies.append(elapsed)
    conn.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        bundle = Path(scratch) if args.fake else Path(args.bundle)
        server = Server(bundle, args)
        sampler = MemorySampler(server.proc.pid)
        sampler.start()
        try:
            server.wait_healthy()
            meta = request(server.port, "GET", "/metadata")[1]
            items = text_items(args.batch, args.max_chars) if meta["modality"] == "text" else image_items(args.batch)
            body = json.dumps({"texts" if meta["modality"] == "text" else "images": items}).encode()
            for _ in range(2 * args.workers):  # warm up every worker's first-request costs
                status, _reply = request(server.port, "POST", "/predict", body)
                if status != 200:
                    raise SystemExit(f"warm-up request answered {status}: {_reply}")
            idle_rss = sampler.rss()
            latencies: list[float] = []
            errors: Counter = Counter()
            deadline = time.perf_counter() + args.duration
            threads = [threading.Thread(target=client, args=(server.port, body, args.batch, deadline, latencies, errors))
                       for _ in range(args.clients)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
            exit_code, stop_s = server.stop()
        finally:
            sampler.stopped.set()
            server.kill()  # the process group: workers left behind by a failed run included
        time.sleep(0.2)  # let the drain thread read the last lines
    ms = np.array(latencies) * 1000
    sent = len(latencies) + sum(errors.values())
    return {
        "bundle": "fake " + args.fake if args.fake else str(args.bundle), "engine": meta.get("engine"),
        "model": (meta.get("backbone") or {}).get("name") if isinstance(meta.get("backbone"), dict) else meta.get("backbone"),
        "modality": meta["modality"], "workers": args.workers, "threads": args.threads, "clients": args.clients,
        "batch": args.batch, "body_bytes": len(body), "seconds": round(wall, 2), "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1), "items_per_s": round(len(latencies) * args.batch / wall, 1),
        "p50_ms": _pct(ms, 50), "p95_ms": _pct(ms, 95), "p99_ms": _pct(ms, 99),
        "max_ms": round(float(ms.max()), 1) if ms.size else None,
        "errors": sum(errors.values()), "error_kinds": dict(errors),
        "idle_rss_mb": round(idle_rss / 2**20, 1), "peak_rss_mb": round(sampler.peak / 2**20, 1),
        "access_log_lines": server.access_lines, "requests_sent": sent + 2 * args.workers + 2,
        "exit_code_after_sigterm": exit_code, "shutdown_s": round(stop_s, 2),
    }


# ------------------------------------------------------------------------------------- soak
Mix = dict[str, tuple[int, bytes, str, int]]  # kind -> (weight, body, content type, expected status)


def soak_mix(modality: str, items: list[str], limits: dict[str, Any]) -> Mix:
    """The soak's requests: valid ones, and invalid ones each with the status the service documents."""
    field = "texts" if modality == "text" else "images"
    valid = json.dumps({field: items}).encode()
    mix: Mix = dict(
        valid=(60, valid, JSON_TYPE, 200),
        malformed_json=(4, valid[: len(valid) // 2], JSON_TYPE, 400),
        wrong_field=(4, json.dumps({"texts" if field == "images" else "images": ["x"]}).encode(), JSON_TYPE, 422),
        unknown_field=(3, json.dumps({field: items, "top_k": 3}).encode(), JSON_TYPE, 422),
        too_many_items=(3, json.dumps({field: items[:1] * (limits["max_batch"] + 1)}).encode(), JSON_TYPE, 413),
        wrong_content_type=(3, b"hello", "text/plain", 415),
        body_too_large=(1, b'{"x": "' + b"a" * limits["max_body_bytes"] + b'"}', JSON_TYPE, 413),
    )
    if modality == "text":
        long = " ".join(random.Random(0).choice(("offer", "free", "meeting", "noon", "reply")) for _ in range(25_000))
        mix.update(empty_text=(4, json.dumps({field: ["ok", " "]}).encode(), JSON_TYPE, 422),
                   long_texts=(6, json.dumps({field: [long[: limits["max_text_chars"]]] * 8}).encode(), JSON_TYPE, 200),
                   text_too_long=(2, json.dumps({field: ["a" * (limits["max_text_chars"] + 1)]}).encode(), JSON_TYPE, 413))
    else:
        flat = flat_png(4999, 5000)
        mix.update(undecodable=(4, json.dumps({field: [base64.b64encode(b"not an image").decode()]}).encode(), JSON_TYPE, 422),
                   bomb=(3, json.dumps({field: [base64.b64encode(png_header(20_000, 20_000)).decode()]}).encode(), JSON_TYPE, 413),
                   flat_flood=(3, json.dumps({field: [flat] * 64}).encode(), JSON_TYPE, 413),
                   flat_decoded=(2, json.dumps({field: [flat] * 4}).encode(), JSON_TYPE, 200))
    return mix


JSON_TYPE = "application/json"


def flat_png(width: int, height: int) -> str:
    """One grey PNG, 25 megapixels in ~35 kB (base64)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (width, height), 128).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds no pixels: what a decompression bomb looks like first."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


class SoakStats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: Counter = Counter()  # (kind, status or exception name)
        self.unexpected: Counter = Counter()
        self.latencies: list[float] = []

    def record(self, kind: str, status: Any, expected: int, seconds: float | None) -> None:
        with self.lock:
            self.answers[(kind, status)] += 1
            if status != expected:
                self.unexpected[(kind, status)] += 1
            if seconds is not None:
                self.latencies.append(seconds)


def soak_client(port: int, mix: Mix, deadline: float, seed: int, stats: SoakStats) -> None:
    """One client: a keep-alive connection, the mix's requests in a seeded random order."""
    rng = random.Random(seed)
    kinds, weights = list(mix), [mix[k][0] for k in mix]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while time.perf_counter() < deadline:
        kind = rng.choices(kinds, weights)[0]
        _weight, body, content_type, expected = mix[kind]
        start = time.perf_counter()
        try:
            conn.request("POST", "/predict", body=body, headers={"Content-Type": content_type})
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as e:
            stats.record(kind, type(e).__name__, expected, None)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            continue
        stats.record(kind, resp.status, expected, time.perf_counter() - start)
        if resp.will_close:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.close()


def slow_clients(port: int, n: int, deadline: float, dropped: Counter) -> None:
    """Keep ``n`` half-sent requests open (headers or body a few bytes short); count the server's answers."""
    opened: list[socket.socket] = []
    sent = 0
    while time.perf_counter() < deadline:
        while len(opened) < n:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            half = (b"POST /predict HTTP/1.1\r\nHost: x\r\n" if sent % 2 else
                    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99\r\n\r\n{")
            sock.sendall(half)
            opened.append(sock)
            sent += 1
        ready, _, _ = select.select(opened, [], [], 0.5)
        for sock in ready:
            try:
                answer = sock.recv(64)
            except OSError:
                answer = b""
            dropped[answer.split(b"\r\n", 1)[0].decode("latin-1") or "closed"] += 1
            opened.remove(sock)
            sock.close()
    dropped["still open at the end"] += len(opened)
    dropped["sent"] += sent
    for sock in opened:
        sock.close()


def soak(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        bundle = Path(scratch) if args.fake else Path(args.bundle)
        server = Server(bundle, args)
        sampler = MemorySampler(server.proc.pid, interval=0.1)
        sampler.start()
        try:
            server.wait_healthy()
            meta = request(server.port, "GET", "/metadata")[1]
            items = text_items(args.batch, args.max_chars) if meta["modality"] == "text" else image_items(args.batch)
            mix = soak_mix(meta["modality"], items, meta["limits"])
            for kind, (_w, body, content_type, expected) in mix.items():  # warm up: every kind once per worker
                for _ in range(args.workers):
                    status = post(server.port, body, content_type)
                    if status != expected:
                        raise SystemExit(f"warm-up: {kind} answered {status}, expected {expected}")
            time.sleep(1.0)
            start_rss = sampler.rss()
            sampler.peak = start_rss
            stats, dropped = SoakStats(), Counter()
            deadline = time.perf_counter() + args.soak
            threads = [threading.Thread(target=soak_client, args=(server.port, mix, deadline, seed, stats))
                       for seed in range(args.clients)]
            threads.append(threading.Thread(target=slow_clients, args=(server.port, 10, deadline, dropped)))
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
            time.sleep(3.0)  # idle: what the server keeps once the load is gone
            end_rss = sampler.rss()
            exit_code, stop_s = server.stop()
        finally:
            sampler.stopped.set()
            server.kill()
    ms = np.array(stats.latencies) * 1000
    served = sum(stats.answers.values())
    tolerance = max(64 * 2**20, 0.1 * start_rss)
    return {
        "bundle": "fake " + args.fake if args.fake else str(args.bundle), "engine": meta.get("engine"),
        "modality": meta["modality"], "workers": args.workers, "clients": args.clients, "seconds": round(wall, 1),
        "requests": served, "requests_per_s": round(served / wall, 1),
        "by_kind_and_status": {f"{k} {s}": n for (k, s), n in sorted(stats.answers.items(), key=str)},
        "unexpected": sum(stats.unexpected.values()),
        "unexpected_kinds": {f"{k} {s}": n for (k, s), n in stats.unexpected.items()},
        "p50_ms": _pct(ms, 50), "p95_ms": _pct(ms, 95), "max_ms": round(float(ms.max()), 1) if ms.size else None,
        "slow_clients": dict(dropped),
        "rss_start_mb": round(start_rss / 2**20, 1), "rss_peak_mb": round(sampler.peak / 2**20, 1),
        "rss_end_mb": round(end_rss / 2**20, 1), "rss_returned_to_baseline": end_rss - start_rss <= tolerance,
        "rss_tolerance_mb": round(tolerance / 2**20, 1),
        "exit_code_after_sigterm": exit_code, "shutdown_s": round(stop_s, 2),
    }


def post(port: int, body: bytes, content_type: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/predict", body=body, headers={"Content-Type": content_type})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def soak_markdown(r: dict[str, Any]) -> str:
    rows = [
        ("served", f"{r['bundle']} ({r['modality']}; engine {r['engine']}); {r['workers']} workers; {r['clients']} "
                   f"clients + 10 slow ones; {r['seconds']} s"),
        ("requests (per s)", f"{r['requests']} ({r['requests_per_s']})"),
        ("answers by kind and status", ", ".join(f"{k}: {n}" for k, n in r["by_kind_and_status"].items())),
        ("unexpected answers", f"{r['unexpected']} {r['unexpected_kinds'] or ''}".strip()),
        ("latency p50 / p95 / max (ms)", f"{r['p50_ms']} / {r['p95_ms']} / {r['max_ms']}"),
        ("slow clients (server's answer)", ", ".join(f"{k}: {n}" for k, n in r["slow_clients"].items())),
        ("RSS start / peak / end (MB, server tree)", f"{r['rss_start_mb']} / {r['rss_peak_mb']} / {r['rss_end_mb']}"),
        ("back to baseline (end − start ≤ tolerance)", f"{r['rss_returned_to_baseline']} (tolerance "
                                                        f"{r['rss_tolerance_mb']} MB)"),
        ("SIGTERM: exit code, seconds", f"{r['exit_code_after_sigterm']}, {r['shutdown_s']}"),
    ]
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def _pct(ms: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(ms, q)), 1) if ms.size else None


def markdown(r: dict[str, Any]) -> str:
    rows = [
        ("served", f"{r['bundle']} ({r['modality']}; engine {r['engine']}, model {r['model']})"),
        ("setup", f"{r['workers']} workers × {r['threads']} thread(s); {r['clients']} clients; {r['batch']} items "
                  f"per request ({r['body_bytes']} bytes); {r['seconds']} s"),
        ("requests/s", r["requests_per_s"]), ("items/s", r["items_per_s"]),
        ("latency p50 / p95 / p99 / max (ms)", f"{r['p50_ms']} / {r['p95_ms']} / {r['p99_ms']} / {r['max_ms']}"),
        ("errors", f"{r['errors']} {r['error_kinds'] or ''}".strip()),
        ("RSS idle / peak (MB, server tree)", f"{r['idle_rss_mb']} / {r['peak_rss_mb']}"),
        ("access-log lines / requests sent", f"{r['access_log_lines']} / {r['requests_sent']}"),
        ("SIGTERM: exit code, seconds", f"{r['exit_code_after_sigterm']}, {r['shutdown_s']}"),
    ]
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", help="A bundle folder (omit with --fake).")
    parser.add_argument("--fake", choices=("text", "image"), help="Serve a fake engine: measures the service alone.")
    parser.add_argument("--engine", default="auto", help="auto, torch, onnx or onnx-int8.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="Predictions at once per worker.")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent clients (threads, keep-alive).")
    parser.add_argument("--duration", type=float, default=30.0, help="Seconds of load.")
    parser.add_argument("--batch", type=int, default=8, help="Items per request.")
    parser.add_argument("--max-chars", type=int, default=4000, help="Characters kept of each e-mail.")
    parser.add_argument("--json", type=Path, help="Also write the results to this file.")
    parser.add_argument("--soak", type=float, nargs="?", const=600.0, metavar="SECONDS",
                        help="Endurance run of mixed valid and invalid requests instead (default 600 s).")
    args = parser.parse_args(argv)
    if bool(args.bundle) == bool(args.fake):
        parser.error("give a bundle folder or --fake text|image (not both)")
    if args.soak is not None and args.soak <= 0:
        parser.error("--soak takes a positive number of seconds")
    result = soak(args) if args.soak else run(args)
    print(soak_markdown(result) if args.soak else markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.soak:
        return 0 if not result["unexpected"] and result["rss_returned_to_baseline"] and not result["exit_code_after_sigterm"] else 1
    return 0 if result["errors"] == 0 and result["exit_code_after_sigterm"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

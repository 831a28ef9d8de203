"""The HTTP service: request validation in-process, then a real uvicorn server on a loopback port
with a real HTTP client, then ``serve()`` itself in a subprocess with two workers and SIGTERM.

No backbone is involved: a deterministic fake engine stands in for
``headstart.serving.engine`` (text: P(spam) = words / 10, capped at 1; image: P(bright) = mean
brightness), so every expected probability is known exactly.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import typer
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from conftest import make_image
from headstart.cli.serve import serve_command
from headstart.errors import BundleError, ConfigError, DataError
from headstart.serving import server, service
from headstart.serving.server import JsonLogFormatter, serve
from headstart.serving.service import create_app, create_app_from_env

TESTS = Path(__file__).resolve().parent
LIMITS = {"max_batch": 4, "max_body_bytes": 8192, "max_text_chars": 200, "max_image_pixels": 64 * 64}


# --------------------------------------------------------------------------- the fake engine
class FakeEngine:
    """The engine interface, deterministic. Special texts make it misbehave on purpose."""

    def __init__(self, modality: str = "text") -> None:
        self.name = "fake"
        self.modality = modality
        self.classes = ["ham", "spam"] if modality == "text" else ["dark", "bright"]
        self.metadata = {"labels": self.classes, "backbone": {"name": "fake-backbone", "n_params": np.int64(7)},
                         "strategy": "linear-probe", "metrics": {"test": {"accuracy": np.float32(0.75)}},
                         "verdict": "transfer helps", "engine": "fake", "bundle": Path("/nowhere"),
                         "saved": datetime(2026, 1, 2, tzinfo=timezone.utc)}

    def predict_proba(self, items: Sequence[Any]) -> np.ndarray:
        if self.modality == "text":
            if "__explode__" in items:
                raise RuntimeError("secret-internal-detail")
            if "__dataerror__" in items:
                raise DataError("item 0 cannot be tokenized; send plain text.")
            if "__slow__" in items:
                time.sleep(1.0)
            p = [min(len(t.split()), 10) / 10 for t in items]
        else:
            assert all(isinstance(im, Image.Image) and im.mode == "RGB" for im in items)
            p = [float(np.asarray(im, dtype=np.float64).mean()) / 255 for im in items]
        p = np.asarray(p)
        return np.column_stack([1 - p, p])


def text_engine(bundle: str, engine: str) -> FakeEngine:
    """For HEADSTART_SERVE_ENGINE_FACTORY=test_serve:text_engine (subprocess tests)."""
    return FakeEngine("text")


def broken_engine(bundle: str, engine: str) -> FakeEngine:
    raise BundleError(f"{bundle} is damaged (fake); refit it.")


def png(value: int, size: int = 16) -> bytes:
    out = io.BytesIO()
    Image.new("L", (size, size), value).save(out, format="PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def js(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[str, bytes]:
    """A multipart/form-data body: (field name, file name or None for a plain field, content)."""
    boundary = "headstart-test-boundary"
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        kind = "Content-Type: image/png\r\n" if filename else ""
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode() + content + b"\r\n"
    return f"multipart/form-data; boundary={boundary}", body + f"--{boundary}--\r\n".encode()


JSON = "application/json"
BRIGHT, DARK = png(204), png(51)  # P(bright) = 0.8 and 0.2 exactly


# ------------------------------------------------------------------------ the bad requests
class Bad(NamedTuple):
    modality: str
    content_type: str | None
    body: bytes
    status: int
    code: str
    says: str  # a fragment the message must hold (where / what)


BAD = {
    "malformed JSON": Bad("text", JSON, b'{"texts": [', 400, "invalid_json", "not valid JSON"),
    "not UTF-8": Bad("text", JSON, b'{"texts": ["\xff"]}', 400, "invalid_json", "not valid JSON"),
    "JSON nested too deep": Bad("text", JSON, b"[" * 4000 + b"]" * 4000, 400, "invalid_json", "not valid JSON"),
    "body not an object": Bad("text", JSON, js(["a"]), 422, "invalid_body", "an array"),
    "images to a text model": Bad("text", JSON, js({"images": [b64(BRIGHT)]}), 422, "wrong_field", "'texts'"),
    "unknown field": Bad("text", JSON, js({"texts": ["a"], "top_k": 3}), 422, "unknown_field", "'top_k'"),
    "missing field": Bad("text", JSON, js({}), 422, "missing_field", "'texts'"),
    "texts not a list": Bad("text", JSON, js({"texts": "hello"}), 422, "invalid_field", "a string"),
    "empty list": Bad("text", JSON, js({"texts": []}), 422, "empty_batch", "at least one"),
    "non-string text": Bad("text", JSON, js({"texts": ["ok", 3]}), 422, "invalid_item", "texts[1]"),
    "null text": Bad("text", JSON, js({"texts": [None]}), 422, "invalid_item", "texts[0] is null"),
    "empty text": Bad("text", JSON, js({"texts": ["ok", ""]}), 422, "empty_text", "texts[1]"),
    "whitespace text": Bad("text", JSON, js({"texts": ["ok", "ok", " \n\t"]}), 422, "empty_text", "texts[2]"),
    "unpaired surrogate": Bad("text", JSON, b'{"texts": ["ok", "bad \\ud800 text"]}', 422, "invalid_text",
                              "texts[1]"),
    "text too long": Bad("text", JSON, js({"texts": ["a" * 201]}), 413, "text_too_long", "at most 200"),
    "batch too large": Bad("text", JSON, js({"texts": ["a"] * 5}), 413, "batch_too_large", "at most 4"),
    "body too large": Bad("text", JSON, js({"texts": ["a"]}) + b" " * 9000, 413, "body_too_large", "8192 bytes"),
    "engine refuses an item": Bad("text", JSON, js({"texts": ["__dataerror__"]}), 422, "invalid_item", "tokenized"),
    "plain-text content type": Bad("text", "text/plain", b"hello", 415, "unsupported_media_type", "text/plain"),
    "no content type": Bad("text", None, js({"texts": ["a"]}), 415, "unsupported_media_type", "(none)"),
    "multipart to a text model": Bad("text", *multipart([("files", "a.png", BRIGHT)]), 415, "unsupported_media_type",
                                     "multipart/form-data"),
    "texts to an image model": Bad("image", JSON, js({"texts": ["a"]}), 422, "wrong_field", "'images'"),
    "image not a string": Bad("image", JSON, js({"images": [b64(BRIGHT), 12]}), 422, "invalid_item", "images[1]"),
    "invalid base64": Bad("image", JSON, js({"images": [b64(BRIGHT), "not base64!"]}), 422, "invalid_base64",
                          "images[1]"),
    "base64 of a non-image": Bad("image", JSON, js({"images": [b64(b"hello world")]}), 422, "invalid_image",
                                 "images[0]"),
    "truncated PNG": Bad("image", JSON, js({"images": [b64(BRIGHT), b64(DARK[:40])]}), 422, "invalid_image",
                         "images[1]"),
    "SVG image": Bad("image", JSON, js({"images": [b64(b"<svg xmlns='http://www.w3.org/2000/svg'/>")]}), 422,
                     "invalid_image", "PNG, JPEG"),
    "image too large": Bad("image", JSON, js({"images": [b64(png(0, size=65))]}), 413, "image_too_large", "65×65"),
    "data URL without base64": Bad("image", JSON, js({"images": ["data:image/png,abc"]}), 422, "invalid_base64",
                                   "images[0]"),
    "multipart: unknown field": Bad("image", *multipart([("file", "a.png", BRIGHT)]), 422, "unknown_field", "'file'"),
    "multipart: plain field": Bad("image", *multipart([("files", None, b"abc")]), 422, "invalid_item", "files[0]"),
    "multipart: undecodable file": Bad("image", *multipart([("files", "a.png", BRIGHT), ("files", "b.png", b"xyz")]),
                                       422, "invalid_image", "files[1]"),
    "multipart: empty file": Bad("image", *multipart([("files", "a.png", b"")]), 422, "invalid_image", "files[0]"),
    "multipart: too many files": Bad("image", *multipart([("files", f"{i}.png", DARK) for i in range(5)]), 413,
                                     "batch_too_large", "at most 4"),
    "multipart: no boundary": Bad("image", "multipart/form-data", b"--x\r\n\r\n", 400, "invalid_multipart",
                                  "boundary"),
}


def assert_error(status: int, body: dict[str, Any], bad: Bad) -> None:
    assert status == bad.status, body
    assert body["error"]["code"] == bad.code, body
    assert bad.says in body["error"]["message"], body


# ------------------------------------------------------------ (a) in-process, TestClient
@pytest.fixture(scope="module")
def clients() -> dict[str, TestClient]:
    return {m: TestClient(create_app(FakeEngine(m), **LIMITS)) for m in ("text", "image")}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_request_in_process(clients: dict[str, TestClient], case: str) -> None:
    bad = BAD[case]
    headers = {"content-type": bad.content_type} if bad.content_type else {}
    r = clients[bad.modality].post("/predict", content=bad.body, headers=headers)
    assert_error(r.status_code, r.json(), bad)
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


def test_text_predictions_in_process(clients: dict[str, TestClient]) -> None:
    r = clients["text"].post("/predict", json={"texts": ["one two three", "a b c d e f g h", "x"]})
    assert r.status_code == 200
    body = r.json()
    assert body["engine"] == "fake" and body["model"] == "fake-backbone"
    assert [p["label"] for p in body["predictions"]] == ["ham", "spam", "ham"]  # input order kept
    assert body["predictions"][1] == {"label": "spam", "confidence": 0.8, "probabilities": {"ham": 1 - 0.8, "spam": 0.8}}


def test_image_predictions_in_process(clients: dict[str, TestClient]) -> None:
    data_url = "data:image/png;base64," + b64(DARK)
    wrapped = "\n".join(b64(BRIGHT)[i:i + 76] for i in range(0, len(b64(BRIGHT)), 76))  # MIME line breaks
    r = clients["image"].post("/predict", json={"images": [b64(BRIGHT), data_url, wrapped]})
    assert r.status_code == 200, r.text
    assert [(p["label"], p["confidence"]) for p in r.json()["predictions"]] == [
        ("bright", pytest.approx(0.8)), ("dark", pytest.approx(0.8)), ("bright", pytest.approx(0.8))]


def test_routes_methods_and_metadata_in_process(clients: dict[str, TestClient]) -> None:
    client = clients["text"]
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found" and "/predict" in r.json()["error"]["message"]
    r = client.get("/predict")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed" and r.headers["allow"] == "POST"
    assert client.post("/health").status_code == 405
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["engine"] == "fake" and health["uptime_s"] >= 0
    meta = client.get("/metadata").json()
    assert meta["labels"] == ["ham", "spam"] and meta["verdict"] == "transfer helps"
    assert meta["backbone"] == {"name": "fake-backbone", "n_params": 7}  # numpy made plain
    assert meta["metrics"]["test"]["accuracy"] == pytest.approx(0.75)
    assert meta["bundle"] == "nowhere"  # the folder's name: the server's file system is not shown
    assert meta["saved"] == "2026-01-02 00:00:00+00:00"
    assert meta["limits"] == {"max_batch": 4, "max_body_bytes": 8192, "max_text_chars": 200, "max_image_pixels": 4096,
                              "max_request_pixels": service.DEFAULT_MAX_REQUEST_PIXELS}


def test_internal_error_is_500_without_internals(clients: dict[str, TestClient],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    r = clients["text"].post("/predict", json={"texts": ["__explode__"]})
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert "secret" not in r.text and "Traceback" not in r.text
    assert r.headers["x-request-id"] in r.json()["error"]["message"]
    logged = [rec for rec in caplog.records if rec.levelno == logging.ERROR and rec.exc_info]
    assert logged and "secret-internal-detail" in str(logged[0].exc_info[1])
    assert clients["text"].get("/health").status_code == 200


def test_limits_are_validated() -> None:
    with pytest.raises(ConfigError, match="max_batch=0"):
        create_app(FakeEngine(), max_batch=0)
    engine = FakeEngine()
    engine.modality = "audio"
    with pytest.raises(ConfigError, match="audio"):
        create_app(engine)


def test_json_log_lines() -> None:
    record = logging.LogRecord("headstart.serving.access", logging.INFO, __file__, 1, "%s %s", ("GET", "/health"), None)
    record.fields = {"status": 200, "request_id": "abc"}
    line = json.loads(JsonLogFormatter().format(record))
    assert line["message"] == "GET /health" and line["status"] == 200 and line["request_id"] == "abc"
    assert {"ts", "level", "logger", "pid"} <= set(line)
    loggers = server.log_config("info")["loggers"]
    assert loggers["headstart.serving"]["level"] == "INFO" and loggers["headstart"]["level"] == "WARNING"
    assert loggers["uvicorn.access"]["handlers"] == []  # replaced by the middleware's richer line


# ---------------------------------------------------------------- (b) a real server, real client
class Reply(NamedTuple):
    status: int
    headers: dict[str, str]
    body: Any


def fetch(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    """One request over a fresh connection with the standard library's client."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(raw) if raw else None)
    finally:
        conn.close()


@contextmanager
def running(app: Any) -> Iterator[int]:
    """``app`` served by uvicorn in a thread on a free loopback port; stopped (gracefully) on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()
        assert not thread.is_alive(), "server did not stop"


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, int]]:
    with running(create_app(FakeEngine("text"), **LIMITS)) as text, \
         running(create_app(FakeEngine("image"), **LIMITS)) as image:
        yield {"text": text, "image": image}


def healthy(port: int) -> bool:
    reply = fetch(port, "GET", "/health")
    return reply.status == 200 and reply.body["status"] == "ok"


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_request_on_a_real_server(ports: dict[str, int], case: str) -> None:
    bad = BAD[case]
    reply = fetch(ports[bad.modality], "POST", "/predict", bad.body,
                  {"Content-Type": bad.content_type} if bad.content_type else {})
    assert_error(reply.status, reply.body, bad)
    assert healthy(ports[bad.modality])


def test_predictions_on_a_real_server(ports: dict[str, int]) -> None:
    texts = ["one two three", "a b c d e f g h", "x"]
    reply = fetch(ports["text"], "POST", "/predict", js({"texts": texts}), {"Content-Type": JSON})
    assert reply.status == 200
    expected = FakeEngine("text").predict_proba(texts)
    got = [[p["probabilities"]["ham"], p["probabilities"]["spam"]] for p in reply.body["predictions"]]
    np.testing.assert_allclose(got, expected)

    images = [BRIGHT, DARK, png(102)]
    reply = fetch(ports["image"], "POST", "/predict", js({"images": [b64(x) for x in images]}), {"Content-Type": JSON})
    assert reply.status == 200 and [p["label"] for p in reply.body["predictions"]] == ["bright", "dark", "dark"]
    content_type, body = multipart([("files", f"{i}.png", x) for i, x in enumerate(images)])
    by_file = fetch(ports["image"], "POST", "/predict", body, {"Content-Type": content_type})
    assert by_file.status == 200 and by_file.body == reply.body  # same answer, base64 or multipart


def test_a_real_image_predicts_like_the_engine(ports: dict[str, int]) -> None:
    image = make_image("disc", np.random.default_rng(0))
    encoded = io.BytesIO()
    image.save(encoded, format="PNG")
    reply = fetch(ports["image"], "POST", "/predict", js({"images": [b64(encoded.getvalue())]}), {"Content-Type": JSON})
    assert reply.status == 200
    expected = FakeEngine("image").predict_proba([image])[0]
    assert reply.body["predictions"][0]["probabilities"]["bright"] == pytest.approx(expected[1])


def test_oversized_bodies_refused_with_and_without_content_length(ports: dict[str, int]) -> None:
    port = ports["text"]
    body = js({"texts": ["a"]}) + b" " * 50_000
    declared = fetch(port, "POST", "/predict", body, {"Content-Type": JSON})
    assert declared.status == 413 and f"{len(body)} bytes" in declared.body["error"]["message"]
    # chunked transfer: no Content-Length at all, so only counting the streamed bytes can catch it
    chunks = (body[i:i + 1000] for i in range(0, len(body), 1000))
    chunked = fetch(port, "POST", "/predict", chunks, {"Content-Type": JSON})
    assert chunked.status == 413 and chunked.body["error"]["code"] == "body_too_large"
    assert "more than that" in chunked.body["error"]["message"]
    small = fetch(port, "POST", "/predict", iter([b'{"texts": ', b'["one two"]}']), {"Content-Type": JSON})
    assert small.status == 200  # chunked bodies under the limit are fine
    assert healthy(port)


def test_wrong_routes_and_methods_on_a_real_server(ports: dict[str, int]) -> None:
    assert fetch(ports["text"], "GET", "/nope").status == 404
    reply = fetch(ports["text"], "DELETE", "/predict")
    assert reply.status == 405 and reply.body["error"]["code"] == "method_not_allowed"
    assert fetch(ports["text"], "GET", "/metadata").body["limits"]["max_batch"] == 4


def test_access_log_and_request_id(ports: dict[str, int], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="headstart.serving.access")
    reply = fetch(ports["text"], "POST", "/predict", js({"texts": ["a b", "c"]}),
                  {"Content-Type": JSON, "X-Request-ID": "client-id-42"})
    assert reply.headers["x-request-id"] == "client-id-42"
    forged = fetch(ports["text"], "GET", "/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["x-request-id"])  # not echoed: replaced
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [r.fields for r in caplog.records if r.name == "headstart.serving.access"]
        if len(lines) >= 2:
            break
        time.sleep(0.05)
    line = next(f for f in lines if f["request_id"] == "client-id-42")
    assert line["method"] == "POST" and line["path"] == "/predict" and line["status"] == 200
    assert line["n_items"] == 2 and line["duration_ms"] > 0 and line["client"].startswith("127.0.0.1:")


def test_concurrent_requests_and_a_free_event_loop(ports: dict[str, int]) -> None:
    port = ports["text"]
    slow = threading.Thread(target=fetch, args=(port, "POST", "/predict", js({"texts": ["__slow__"]}),
                                                {"Content-Type": JSON}))
    slow.start()
    time.sleep(0.2)  # the slow prediction holds the predict thread for 1 s
    start = time.monotonic()
    assert healthy(port)
    assert time.monotonic() - start < 0.5, "/health waited for a prediction: the event loop is blocked"
    slow.join()

    results: queue.Queue[tuple[int, Any, str]] = queue.Queue()

    def client(i: int) -> None:
        text = " ".join(["w"] * (i % 10 + 1))
        r = fetch(port, "POST", "/predict", js({"texts": [text]}), {"Content-Type": JSON})
        results.put((r.status, r.body, text))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.qsize() == 24
    while not results.empty():
        status, body, text = results.get()
        assert status == 200 and body["predictions"][0]["probabilities"]["spam"] == pytest.approx(len(text.split()) / 10)


def test_in_flight_request_finishes_on_shutdown() -> None:
    done: list[Reply] = []
    with running(create_app(FakeEngine("text"))) as port:
        slow = threading.Thread(target=lambda: done.append(
            fetch(port, "POST", "/predict", js({"texts": ["__slow__"]}), {"Content-Type": JSON})))
        slow.start()
        time.sleep(0.3)
    # leaving `running` asked the server to exit while the slow request was in flight
    slow.join(10)
    assert done and done[0].status == 200


# ------------------------------------------------------------- entry points: env factory, serve()
def test_create_app_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv(service.ENV_BUNDLE, str(tmp_path))
    monkeypatch.setenv(service.ENV_ENGINE_FACTORY, "test_serve:text_engine")
    monkeypatch.setenv(service.ENV_MAX_BATCH, "2")
    client = TestClient(create_app_from_env())
    assert client.post("/predict", json={"texts": ["a b"]}).json()["predictions"][0]["label"] == "ham"
    assert client.post("/predict", json={"texts": ["a", "b", "c"]}).status_code == 413

    report = tmp_path / "report.json"
    monkeypatch.setenv(service.ENV_STARTUP_REPORT, str(report))
    monkeypatch.setenv(service.ENV_ENGINE_FACTORY, "test_serve:broken_engine")
    with pytest.raises(SystemExit) as exited:
        create_app_from_env()
    assert exited.value.code == service.STARTUP_FAILURE  # uvicorn's supervisor stops, no restart loop
    assert json.loads(report.read_text()) == {"error": "BundleError", "message": f"{tmp_path} is damaged (fake); refit it."}
    monkeypatch.setenv(service.ENV_MAX_BATCH, "many")
    monkeypatch.setenv(service.ENV_ENGINE_FACTORY, "test_serve:text_engine")
    with pytest.raises(SystemExit):
        create_app_from_env()
    assert "HEADSTART_SERVE_MAX_BATCH='many' is not a whole number" in report.read_text()


def test_serve_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        serve(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"port must be in 0\.\.65535"):
        serve(tmp_path, port=70000)
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        serve(tmp_path, workers=0)
    with pytest.raises(ConfigError, match="engine must be one of"):
        serve(tmp_path, engine="tensorrt")
    with pytest.raises(ConfigError, match="max_body_mb"):
        serve(tmp_path, max_body_mb=0)


def test_serve_command_help_and_usage_errors() -> None:
    cli = typer.Typer()
    cli.command("serve")(serve_command)
    cli.command("other")(lambda: None)  # two commands, so `serve` is a sub-command as in headstart's CLI
    runner = CliRunner()
    result = runner.invoke(cli, ["serve", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    for needle in ("127.0.0.1", "NO authentication", "--workers", "--max-batch", "--max-body-mb", "413", "415", "422",
                   "Exit codes", "X-Request-ID"):
        assert needle in result.output, needle
    assert runner.invoke(cli, ["serve", ".", "--port", "70000"]).exit_code == 2
    assert runner.invoke(cli, ["serve", ".", "--engine", "tensorrt"]).exit_code == 2


# ------------------------------------------------------------------ (c) serve() in a subprocess
SERVE_SCRIPT = """
import sys
from headstart.errors import HeadstartError
from headstart.serving.server import serve
try:
    serve(sys.argv[1], port=int(sys.argv[2]), workers=int(sys.argv[3]), graceful_timeout=10)
except HeadstartError as e:
    print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
"""


@contextmanager
def serve_process(bundle: Path, factory: str, *, port: int = 0, workers: int = 2) -> Iterator[tuple[subprocess.Popen, list[str]]]:
    env = {**os.environ, service.ENV_ENGINE_FACTORY: factory,
           "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)}
    # A session of its own: if the test fails midway, the whole group (workers too) is killed.
    proc = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT, str(bundle), str(port), str(workers)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        yield proc, lines
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a no-op after a clean stop: the group is gone
        proc.wait(10)
        reader.join(10)


def wait_for_port(proc: subprocess.Popen, lines: list[str], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(lines):
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if found:
                return int(found.group(1))
        assert proc.poll() is None, "".join(lines)
        time.sleep(0.05)
    raise AssertionError("the service never logged its port:\n" + "".join(lines))


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_stops_gracefully_on_sigterm(tmp_path: Path, workers: int) -> None:
    with serve_process(tmp_path, "test_serve:text_engine", workers=workers) as (proc, lines):
        port = wait_for_port(proc, lines)
        deadline = time.monotonic() + 60
        while True:
            try:
                if healthy(port):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            time.sleep(0.1)
        for _ in range(6):
            reply = fetch(port, "POST", "/predict", js({"texts": ["a b c d e f g h i"]}), {"Content-Type": JSON})
            assert reply.status == 200 and reply.body["predictions"][0]["label"] == "spam"
        assert fetch(port, "POST", "/predict", js({"texts": [""]}), {"Content-Type": JSON}).status == 422
        # keep-alive answers must not wait for the client's delayed ACK (~40 ms: TCP_NODELAY missing)
        conn, seconds = http.client.HTTPConnection("127.0.0.1", port, timeout=30), []
        for _ in range(10):
            start = time.perf_counter()
            conn.request("GET", "/health")
            assert conn.getresponse().read()
            seconds.append(time.perf_counter() - start)
        conn.close()
        assert sorted(seconds)[5] < 0.025, seconds

        in_flight: list[Reply] = []
        slow = threading.Thread(target=lambda: in_flight.append(
            fetch(port, "POST", "/predict", js({"texts": ["__slow__"]}), {"Content-Type": JSON})))
        slow.start()
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, "".join(lines)
        slow.join(10)
    assert in_flight and in_flight[0].status == 200  # the request in flight at SIGTERM was answered

    records = [json.loads(line) for line in lines if line.strip()]  # every stderr line is JSON
    access = [r for r in records if r["logger"] == "headstart.serving.access"]
    assert sorted(r["status"] for r in access if r["path"] == "/predict") == [200] * 7 + [422]
    assert all({"ts", "method", "status", "duration_ms", "n_items", "client", "request_id"} <= set(r) for r in access)
    assert sum(r["message"] == "service ready" for r in records) == workers  # one per worker
    assert sum(r["message"] == "service stopped" for r in records) == workers


def test_serve_reports_an_engine_that_cannot_load(tmp_path: Path) -> None:
    with serve_process(tmp_path, "test_serve:broken_engine") as (proc, lines):
        assert proc.wait(60) == 1
    assert f"error: BundleError: {tmp_path} is damaged (fake); refit it." in "".join(lines)


def test_serve_reports_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with serve_process(tmp_path, "test_serve:text_engine", port=port, workers=1) as (proc, lines):
            assert proc.wait(60) == 1
    assert f"error: HeadstartError: cannot listen on 127.0.0.1:{port}" in "".join(lines)

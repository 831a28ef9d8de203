"""The ``headstart serve`` command: parses options and calls :func:`headstart.serving.server.serve`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from headstart.serving.engine_names import EngineName
from headstart.serving.limits import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_REQUEST_PIXELS,
    DEFAULT_MAX_TEXT_CHARS,
    ConnectionLimits,
    MiB,
)

_LIMITS = ConnectionLimits()


class LogLevel(str, Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def serve_command(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder written by `headstart fit`.")],
    host: Annotated[str, typer.Option(help="Address to listen on. The default 127.0.0.1 accepts connections from this machine only; 0.0.0.0 (or any other address) opens the service, which has NO authentication, to the network (a warning is logged): put an authenticating proxy in front.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port; 0 picks a free one (logged at startup).")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes, each with its own copy of the model; connections are spread over them.")] = 1,
    engine: Annotated[EngineName, typer.Option(help="Inference engine: auto is onnx when the bundle has been exported (`headstart export`), else torch; onnx-int8 needs `export --quantize int8`.")] = EngineName.auto,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Most items in one request (more: 413).")] = DEFAULT_MAX_BATCH,
    max_body_mb: Annotated[float, typer.Option("--max-body-mb", min=0.001, max=1024, help="Largest request body in MiB, enforced while it streams in (more: 413).")] = DEFAULT_MAX_BODY_BYTES / MiB,
    max_text_chars: Annotated[int, typer.Option("--max-text-chars", min=1, help="Longest text item in characters (more: 413).")] = DEFAULT_MAX_TEXT_CHARS,
    max_request_megapixels: Annotated[float, typer.Option("--max-request-megapixels", min=0.001, max=100_000, help="Most pixels in all of one request's images together, in millions, read from the image headers before decoding (more: 413). Each image is also limited to 25 megapixels.")] = DEFAULT_MAX_REQUEST_PIXELS / 1e6,
    threads: Annotated[int, typer.Option(min=1, help="Predictions running at once per worker; further requests wait their turn.")] = 1,
    max_connections: Annotated[int, typer.Option("--max-connections", min=1, help="Open connections per worker. Beyond it the connection waiting longest for its client (idle, or slow to send its request) is closed; when every connection has a request in progress the new one gets 503.")] = _LIMITS.max_connections,
    header_timeout: Annotated[float, typer.Option("--header-timeout", min=0.001, help="Seconds a request's headers may take to arrive, from the connection opening or the previous response (then 408, connection closed).")] = _LIMITS.header_timeout,
    body_timeout: Annotated[float, typer.Option("--body-timeout", min=0.001, help="Seconds a request's body may take to arrive after its headers (then 408, connection closed).")] = _LIMITS.body_timeout,
    keep_alive_timeout: Annotated[float, typer.Option("--keep-alive-timeout", min=0.001, help="Seconds an idle keep-alive connection stays open.")] = _LIMITS.keep_alive_timeout,
    max_requests_per_connection: Annotated[int, typer.Option("--max-requests-per-connection", min=1, help="Requests on one keep-alive connection before the answer says Connection: close.")] = _LIMITS.max_requests_per_connection,
    graceful_timeout: Annotated[int, typer.Option("--graceful-timeout", min=0, help="Seconds in-flight requests get to finish after SIGTERM or Ctrl+C.")] = 30,
    log_level: Annotated[LogLevel, typer.Option("--log-level", help="info logs one JSON line per request; warning keeps only problems.")] = LogLevel.info,
) -> None:
    """Serve a bundle over HTTP: POST /predict, GET /health, GET /metadata.

    POST /predict takes {"texts": [...]} (text bundles), or {"images": ["<base64>", ...]} or
    multipart/form-data with one `files` part per image (image bundles), and answers
    {"predictions": [{"label", "confidence", "probabilities"}, ...], "engine", "model"} in input
    order. GET /health answers {"status": "ok", "engine", "uptime_s"}; GET /metadata the labels,
    backbone, metrics, verdict and limits.

    Errors are JSON {"error": {"code", "message"}}: 400 malformed JSON or multipart; 404 unknown
    path; 405 wrong method; 408 headers or body slower than --header-timeout / --body-timeout;
    413 body over --max-body-mb, more items than --max-batch, a text over --max-text-chars, an
    image over 25 megapixels or images over --max-request-megapixels together; 415 content type
    other than JSON (or multipart, for images); 422 missing, unknown or wrong field, not a list,
    empty list, empty text, undecodable base64 or image; 500 internal error (details in the log
    only); 503 --max-connections reached with every connection busy. GET /openapi.json
    describes the API; GET /metadata lists every limit.

    Logs go to stderr as JSON lines, one per request (method, path, status, duration_ms, n_items,
    client, request_id); every answer carries X-Request-ID. SIGTERM or Ctrl+C stops the service
    gracefully: it stops accepting connections and lets in-flight requests finish.

    Exit codes: 0 after a graceful stop, 1 when the service cannot start (no bundle, engine
    cannot load, port in use), 2 usage.

    Example: headstart serve runs/spam --port 8080 --workers 2
    """
    from headstart.serving.server import serve  # uvicorn and the service load only when serving

    serve(bundle, host=host, port=port, workers=workers, engine=engine.value, max_batch=max_batch,
          max_body_mb=max_body_mb, max_text_chars=max_text_chars, max_request_megapixels=max_request_megapixels,
          threads=threads, max_connections=max_connections, header_timeout=header_timeout, body_timeout=body_timeout,
          keep_alive_timeout=keep_alive_timeout, max_requests_per_connection=max_requests_per_connection,
          graceful_timeout=graceful_timeout, log_level=log_level.value)

"""The HTTP service behind ``headstart serve``: a bundle's inference engine answering over HTTP.

Endpoints:

- ``POST /predict``: ``{"texts": [...]}`` for a text bundle; ``{"images": ["<base64>", ...]}`` or
  ``multipart/form-data`` with one ``files`` part per image for an image bundle; for a plugin
  modality its ``plural`` (:mod:`headstart.modalities`), each item read by the modality. Answers
  ``{"predictions": [{"label", "confidence", "probabilities": {label: p}}, ...], "engine", "model"}``
  in input order.
- ``GET /health``: ``{"status": "ok", "engine", "uptime_s"}``.
- ``GET /metadata``: the engine's metadata (labels, backbone, strategy, metrics, verdict...) and
  the service's ``limits``.

Every error is JSON ``{"error": {"code": ..., "message": ...}}``, the message saying what was
wrong, where (field, item index) and how to fix it:

- 400 the body is not JSON / not parseable multipart (``invalid_json``, ``invalid_multipart``);
- 404 unknown path, 405 wrong method;
- 413 a size limit: body bytes (``body_too_large``, checked on ``Content-Length`` and again while
  the body streams in, so a chunked or lying client cannot exceed it), items per request
  (``batch_too_large``), characters per text (``text_too_long``), pixels per image
  (``image_too_large``) and per request (``too_many_pixels``), the last two read from the image
  headers before any pixel is decoded;
- 415 a content type other than JSON (or multipart, for image bundles);
- 422 a well-formed request that is wrong: missing, unknown or wrong-modality field, not a list,
  non-string item, empty list, empty text, undecodable base64 or image, an item the engine
  refuses;
- 500 anything else; the body carries the request id only, the traceback goes to the log.

The server itself (:mod:`headstart.serving.connections`) answers 408 to a request whose headers or
body do not arrive in time and 503 when a worker's connection cap is reached with every
connection busy. ``GET /openapi.json`` describes all of it (:mod:`headstart.serving.openapi`).

The modality batches the items (:meth:`headstart.modalities.base.Modality.serve_batches`): images
are decoded and predicted in small batches (at most ``max_image_pixels`` decoded pixels at a
time), never all of a request's images at once, so a request's memory is bounded by the body
limit plus one batch, whatever the images decode to.

Each request is logged as one JSON line on stderr (method, path, status, duration_ms, n_items,
client, request_id, pid) and answered with an ``X-Request-ID`` header. Predictions run in worker
threads (``threads`` at once per process) so the event loop keeps accepting requests; ``workers``
processes each hold their own engine.

Example::

    from headstart.serving.server import serve

    serve("runs/spam", port=8080, workers=2)   # blocks; SIGTERM or Ctrl+C stops it gracefully

    # curl -s localhost:8080/predict -H 'content-type: application/json' \\
    #      -d '{"texts": ["WIN a FREE cruise, reply now"]}'
"""

# No `from __future__ import annotations` here: FastAPI reads the route handlers' annotations at
# registration, and `Request` is imported inside the factory (FastAPI costs 0.4 s to import, which
# every other `headstart` command would otherwise pay), so it must be a real object, not a string.
import ctypes
import importlib
import json
import logging
import logging.config
import os
import re
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict
from functools import partial
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Protocol

from headstart.errors import ConfigError, DataError, HeadstartError, RequestError
from headstart.jsonable import jsonable
from headstart.modalities import get_modality
from headstart.serving.limits import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_REQUEST_PIXELS,
    DEFAULT_MAX_TEXT_CHARS,
    MAX_IMAGE_PIXELS,
    Limits,
    MiB,
)
from headstart.serving.request_body import ApiError, read_items

if TYPE_CHECKING:
    import numpy as np
    from fastapi import FastAPI

    from headstart.modalities.base import Modality

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("headstart.serving.access")

SERVE_BATCH = 16  # most items decoded at once (images), when the engine does not say its batch size
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
STARTUP_FAILURE = 3  # uvicorn's exit code for a worker that never served: its supervisor gives up

APP_FACTORY = "headstart.serving.service:create_app_from_env"
ENV_BUNDLE = "HEADSTART_SERVE_BUNDLE"
ENV_ENGINE = "HEADSTART_SERVE_ENGINE"
ENV_MAX_BATCH = "HEADSTART_SERVE_MAX_BATCH"
ENV_MAX_BODY_BYTES = "HEADSTART_SERVE_MAX_BODY_BYTES"
ENV_MAX_TEXT_CHARS = "HEADSTART_SERVE_MAX_TEXT_CHARS"
ENV_MAX_REQUEST_PIXELS = "HEADSTART_SERVE_MAX_REQUEST_PIXELS"
# The server's connection limits as JSON, for /metadata (the protocol gets them from serve()).
ENV_CONNECTION_LIMITS = "HEADSTART_SERVE_CONNECTION_LIMITS"
ENV_THREADS = "HEADSTART_SERVE_THREADS"
# Where a worker that cannot load its engine writes why, for serve() to raise it (internal).
ENV_STARTUP_REPORT = "HEADSTART_SERVE_STARTUP_REPORT"
# Test-only escape hatch: "module:function" called as function(bundle, engine) instead of
# headstart.serving.engine.load_engine, so tests and benchmarks can serve a fake engine.
ENV_ENGINE_FACTORY = "HEADSTART_SERVE_ENGINE_FACTORY"

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class Engine(Protocol):
    """What the service needs from an engine (see :func:`headstart.serving.engine.load_engine`)."""

    name: str
    modality: str  # a registered modality's name ("text", "image" or a plugin's)
    classes: list[Any]  # labels, in the order of the probability columns
    metadata: dict[str, Any]

    def predict_proba(self, items: Sequence[Any]) -> "np.ndarray": ...


# ------------------------------------------------------------------------------------ app
def create_app(engine: Engine, *, max_batch: int = DEFAULT_MAX_BATCH, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_text_chars: int = DEFAULT_MAX_TEXT_CHARS, max_image_pixels: int = MAX_IMAGE_PIXELS,
               max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS, threads: int = 1,
               connections: dict[str, Any] | None = None) -> "FastAPI":
    """Build the FastAPI application serving ``engine``.

    Args:
        engine: A loaded engine (``load_engine(bundle)``), or any object with the same interface.
        max_batch: Most items in one ``/predict`` request (more: 413).
        max_body_bytes: Largest request body (more: 413, before it is read in full).
        max_text_chars: Longest text item (more: 413).
        max_image_pixels: Largest image, width × height, checked before decoding (more: 413).
        max_request_pixels: Most pixels in all of a request's images, checked before decoding (more: 413).
        threads: Predictions running at once in this process; further requests wait their turn.
        connections: The server's connection limits, only to show them in ``/metadata``
            (:meth:`headstart.serving.limits.ConnectionLimits.describe`).

    Example:
        >>> app = create_app(load_engine("runs/spam"), max_batch=16)
        >>> uvicorn.run(app, host="127.0.0.1", port=8080)  # doctest: +SKIP
    """
    from fastapi import FastAPI

    limits = Limits(max_batch=max_batch, max_body_bytes=max_body_bytes, max_text_chars=max_text_chars,
                    max_image_pixels=max_image_pixels, max_request_pixels=max_request_pixels, threads=threads)
    modality = _served_modality(engine)
    metadata = _public_metadata(_plain(dict(engine.metadata)))
    counts = {"requests": 0}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        logger.info("service ready", extra={"fields": {"engine": engine.name, "model": _model_name(metadata),
                                                       "modality": engine.modality, "limits": asdict(limits)}})
        yield
        logger.info("service stopped", extra={"fields": {"requests": counts["requests"]}})

    app = FastAPI(title="headstart", summary=f"{engine.modality} classifier ({_model_name(metadata)})",
                  lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.add_middleware(AccessLogMiddleware, counts=counts)
    _add_error_handlers(app)
    public_limits = {**{k: v for k, v in asdict(limits).items() if k != "threads"},
                     **({"connections": dict(connections)} if connections else {})}
    _add_routes(app, engine, modality, limits, metadata, public_limits)
    return app


def _served_modality(engine: Engine) -> "Modality":
    """The engine's modality, if it is a known one that the service can read (items in a JSON field)."""
    try:
        modality = get_modality(engine.modality)
    except ConfigError as e:
        raise ConfigError(f"engine {engine.name!r} has modality {engine.modality!r}, which the service cannot "
                          f"read: {e}") from e
    if not modality.plural:
        raise ConfigError(f"engine {engine.name!r} has modality {engine.modality!r}, which names no request "
                          "field (its `plural`); the service cannot read its items.")
    return modality


def _add_routes(app: "FastAPI", engine: Engine, modality: "Modality", limits: Limits, metadata: dict[str, Any],
                public_limits: dict[str, Any]) -> None:
    import anyio
    from fastapi import Request
    from fastapi.responses import JSONResponse

    from headstart.serving import openapi

    labels = _plain(list(engine.classes))
    model = _model_name(metadata)
    started = time.monotonic()
    limiter: list[anyio.CapacityLimiter] = []  # made on first use, inside the server's event loop

    @app.get("/health", response_class=JSONResponse, responses=openapi.health_responses())
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "engine": engine.name, "uptime_s": round(time.monotonic() - started, 3)})

    @app.get("/metadata", response_class=JSONResponse, responses=openapi.metadata_responses())
    async def get_metadata() -> JSONResponse:
        return JSONResponse({**metadata, "engine": engine.name, "modality": engine.modality, "limits": public_limits})

    # The handler reads the raw body itself (size enforced while it streams in); its schema is declared.
    body = openapi.predict_request_body(modality, limits)

    @app.post("/predict", response_class=JSONResponse, responses=openapi.predict_responses(labels),
              openapi_extra={"requestBody": body})
    async def predict(request: Request) -> JSONResponse:
        field, items = await read_items(request, modality, limits)
        request.state.n_items = len(items)
        if not limiter:
            limiter.append(anyio.CapacityLimiter(limits.threads))
        work = partial(_predict_batch, engine, modality, field, items, limits)
        proba = await anyio.to_thread.run_sync(work, limiter=limiter[0])
        return JSONResponse({"predictions": _predictions(proba, labels), "engine": engine.name, "model": model})


def _add_error_handlers(app: "FastAPI") -> None:
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def api_error(_request: Request, exc: ApiError) -> Any:
        return _error_response(exc.status, exc.code, exc.message)

    async def http_error(request: Request, exc: HTTPException) -> Any:
        method, path = request.method, request.url.path
        if exc.status_code == 404:
            return _error_response(404, "not_found", f"no such path {path}; the service answers POST /predict, "
                                   "GET /health and GET /metadata.")
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            return _error_response(405, "method_not_allowed", f"{path} does not answer {method}; use {allowed}.",
                                   headers=exc.headers)
        return _error_response(exc.status_code, "http_error", str(exc.detail), headers=exc.headers)

    async def validation_error(_request: Request, exc: RequestValidationError) -> Any:
        where = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors())
        return _error_response(422, "invalid_request", f"the request does not validate ({where}).")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def _error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class AccessLogMiddleware:
    """Plain ASGI middleware: request id, one JSON access line per request, and the 500 of last resort.

    Unhandled exceptions are logged with their traceback and the request id, and answered with a
    JSON 500 that holds no internals.
    """

    def __init__(self, app: Any, counts: dict[str, int]) -> None:
        self.app, self.counts = app, counts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        response = {"status": 500, "started": False}

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response.update(status=message["status"], started=True)
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error", extra={"fields": {"request_id": request_id}})
            if not response["started"]:
                body = json.dumps({"error": {"code": "internal_error", "message": (
                    f"the service failed on this request (request id {request_id}); the details are in "
                    "the server log. Retrying will not help if the input is the cause.")}}).encode()
                await send_with_id({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send_with_id({"type": "http.response.body", "body": body})
        finally:
            self.counts["requests"] += 1
            client = scope.get("client")
            access_logger.info(
                "%s %s %s", scope["method"], scope["path"], response["status"],
                extra={"fields": {"method": scope["method"], "path": scope["path"], "status": response["status"],
                                  "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                                  "n_items": state.get("n_items"), "client": f"{client[0]}:{client[1]}" if client else None,
                                  "request_id": request_id}})


# ------------------------------------------------------------------------------- predicting
def _predict_batch(engine: Engine, modality: "Modality", field: str, items: list[Any],
                   limits: Limits) -> "np.ndarray":
    """Run the engine on the batches the modality makes (images: decoded a few at a time, within the
    pixel budget; texts: all at once); in a worker thread, off the event loop."""
    import numpy as np

    most = int(getattr(engine, "batch_size", SERVE_BATCH))
    rows = np.zeros((len(items), len(engine.classes)), dtype=np.float64)
    done = np.zeros(len(items), dtype=bool)
    try:
        for indices, batch in modality.serve_batches(items, field, limits, most):
            rows[indices] = _run_engine(engine, batch)
            done[indices] = True
            del batch  # decoded items live one batch at a time
    except RequestError as e:  # an item the modality refuses (too large, undecodable)
        raise ApiError(e.status, e.code, e.message) from e
    if not done.all():
        raise RuntimeError(f"the {modality.name} modality's serve_batches left items "
                           f"{np.flatnonzero(~done)[:5].tolist()} out")
    return rows


def _run_engine(engine: Engine, items: list[Any]) -> "np.ndarray":
    import numpy as np

    try:
        proba = np.asarray(engine.predict_proba(items), dtype=np.float64)
    except DataError as e:
        raise ApiError(422, "invalid_item", str(e)) from e
    if proba.shape != (len(items), len(engine.classes)):
        raise RuntimeError(f"engine {engine.name!r} returned probabilities of shape {proba.shape} for "
                           f"{len(items)} items and {len(engine.classes)} classes")
    return proba


def _predictions(proba: "np.ndarray", labels: list[Any]) -> list[dict[str, Any]]:
    keys = [str(label) for label in labels]
    rows = []
    for row in proba.tolist():
        best = max(range(len(row)), key=row.__getitem__)
        rows.append({"label": labels[best], "confidence": row[best], "probabilities": dict(zip(keys, row))})
    return rows


def _public_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The engine's metadata without the server's file system: folder names, not absolute paths."""
    out = dict(metadata)
    if isinstance(out.get("bundle"), str):
        out["bundle"] = PurePath(out["bundle"]).name
    backbone = out.get("backbone")
    if isinstance(backbone, dict) and isinstance(backbone.get("source"), str) and os.path.isabs(backbone["source"]):
        out["backbone"] = {**backbone, "source": PurePath(backbone["source"]).name}  # a local model folder
    return out


def _model_name(metadata: dict[str, Any]) -> Any:
    backbone = metadata.get("backbone")
    return backbone.get("name") if isinstance(backbone, dict) else backbone


def _plain(value: Any) -> Any:
    """``value`` as plain JSON types; anything else (datetimes...) as its text: readable rather than a 500 at /metadata."""
    return jsonable(value, default=str)


# ------------------------------------------------------------------------- process entry points
def create_app_from_env() -> "FastAPI":
    """The application of one ``headstart serve`` worker, configured by ``HEADSTART_SERVE_*`` variables.

    For uvicorn's import-string mode (``factory=True``), which ``--workers N`` needs: every worker
    process calls this and loads its own engine. When the engine cannot be loaded, the error is
    logged (and written where :func:`serve` reads it) and the process exits with uvicorn's
    startup-failure code, so the supervisor stops instead of restarting the worker forever.
    """
    try:
        bundle = os.environ.get(ENV_BUNDLE)
        if not bundle:
            raise ConfigError(f"{ENV_BUNDLE} is not set; start the service with `headstart serve BUNDLE`.")
        _return_freed_memory_to_the_os()
        engine = _engine_loader()(bundle, os.environ.get(ENV_ENGINE, "auto"))
        connections = os.environ.get(ENV_CONNECTION_LIMITS)
        return create_app(engine, max_batch=_env_int(ENV_MAX_BATCH, DEFAULT_MAX_BATCH),
                          max_body_bytes=_env_int(ENV_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES),
                          max_text_chars=_env_int(ENV_MAX_TEXT_CHARS, DEFAULT_MAX_TEXT_CHARS),
                          max_request_pixels=_env_int(ENV_MAX_REQUEST_PIXELS, DEFAULT_MAX_REQUEST_PIXELS),
                          threads=_env_int(ENV_THREADS, 1), connections=json.loads(connections) if connections else None)
    except Exception as e:
        if isinstance(e, HeadstartError):
            logger.error("cannot start: %s", e)
        else:
            logger.exception("cannot start: %s: %s", type(e).__name__, e)
        report = os.environ.get(ENV_STARTUP_REPORT)
        if report:
            with suppress(OSError):
                Path(report).write_text(json.dumps({"error": type(e).__name__, "message": str(e)}))
        raise SystemExit(STARTUP_FAILURE) from e


def _return_freed_memory_to_the_os() -> None:
    """Allocate blocks of 8 MiB and more (decoded images, batches) with mmap, so that freeing them
    gives the memory back to the OS.

    glibc's threshold otherwise grows with the largest block freed (to 32 MiB), after which PIL's
    16 MiB image blocks come from the heap, which keeps its high-water mark: measured, a worker
    stayed 120 MB above its baseline after one request of 16 flat 25-megapixel images; with
    this, 7 MB. Not glibc (musl, macOS, Windows): nothing to tune.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 8 * MiB)
    except (OSError, AttributeError):
        logger.debug("not glibc: the allocator's mmap threshold is left as it is")


def _engine_loader() -> Any:
    factory = os.environ.get(ENV_ENGINE_FACTORY)
    if not factory:
        from headstart.serving.engine import load_engine

        return load_engine
    module, _, name = factory.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"{ENV_ENGINE_FACTORY}={factory!r} cannot be imported ({e}); it is a test hook taking "
                          "'module:function', unset it to serve the bundle.") from e


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError as e:
        raise ConfigError(f"{name}={value!r} is not a whole number.") from e

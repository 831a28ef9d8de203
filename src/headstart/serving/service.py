"""The HTTP service behind ``headstart serve``: a bundle's inference engine answering over HTTP.

Endpoints:

- ``POST /predict``: ``{"texts": [...]}`` for a text bundle; ``{"images": ["<base64>", ...]}`` or
  ``multipart/form-data`` with one ``files`` part per image for an image bundle. Answers
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
  (``image_too_large``);
- 415 a content type other than JSON (or multipart, for image bundles);
- 422 a well-formed request that is wrong: missing, unknown or wrong-modality field, not a list,
  non-string item, empty list, empty text, undecodable base64 or image, an item the engine
  refuses;
- 500 anything else; the body carries the request id only, the traceback goes to the log.

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
import base64
import binascii
import importlib
import io
import json
import logging
import logging.config
import os
import re
import time
import uuid
from collections.abc import Sequence
from contextlib import aclosing, asynccontextmanager, suppress
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from headstart.errors import ConfigError, DataError, HeadstartError

if TYPE_CHECKING:
    import numpy as np
    from fastapi import FastAPI

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("headstart.serving.access")

MiB = 1024 * 1024
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_BODY_BYTES = 8 * MiB
DEFAULT_MAX_TEXT_CHARS = 100_000
# A PNG of one flat colour compresses a gigapixel into a few kB: refuse images this large before
# decoding them (25 Mpx ≈ 75 MB as RGB), whatever the body size.
MAX_IMAGE_PIXELS = 25_000_000
# Only the raster formats headstart reads from folders; PIL's other plugins (EPS calls Ghostscript...)
# have no business parsing bytes from the network.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")  # JPEG covers MPO (phone JPEGs)
ENGINES = ("auto", "torch", "onnx", "onnx-int8")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
STARTUP_FAILURE = 3  # uvicorn's exit code for a worker that never served: its supervisor gives up

APP_FACTORY = "headstart.serving.service:create_app_from_env"
ENV_BUNDLE = "HEADSTART_SERVE_BUNDLE"
ENV_ENGINE = "HEADSTART_SERVE_ENGINE"
ENV_MAX_BATCH = "HEADSTART_SERVE_MAX_BATCH"
ENV_MAX_BODY_BYTES = "HEADSTART_SERVE_MAX_BODY_BYTES"
ENV_MAX_TEXT_CHARS = "HEADSTART_SERVE_MAX_TEXT_CHARS"
ENV_THREADS = "HEADSTART_SERVE_THREADS"
# Where a worker that cannot load its engine writes why, for serve() to raise it (internal).
ENV_STARTUP_REPORT = "HEADSTART_SERVE_STARTUP_REPORT"
# Test-only escape hatch: "module:function" called as function(bundle, engine) instead of
# headstart.serving.engine.load_engine, so tests and benchmarks can serve a fake engine.
ENV_ENGINE_FACTORY = "HEADSTART_SERVE_ENGINE_FACTORY"

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
               float: "a number", type(None): "null"}


class Engine(Protocol):
    """What the service needs from an engine (see :func:`headstart.serving.engine.load_engine`)."""

    name: str
    modality: str  # "text" or "image"
    classes: list[Any]  # labels, in the order of the probability columns
    metadata: dict[str, Any]

    def predict_proba(self, items: Sequence[Any]) -> "np.ndarray": ...


class ApiError(Exception):
    """A request the service refuses: answered with ``status`` and a JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Limits:
    """Bounds on one request. Every one is checked before any work is done on the items."""

    max_batch: int = DEFAULT_MAX_BATCH
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_image_pixels: int = MAX_IMAGE_PIXELS
    threads: int = 1

    def __post_init__(self) -> None:
        bad = [f"{name}={value!r}" for name, value in asdict(self).items()
               if isinstance(value, bool) or not isinstance(value, int) or value < 1]
        if bad:
            raise ConfigError(f"service limits must be whole numbers >= 1; got {', '.join(bad)}.")


# ------------------------------------------------------------------------------------ app
def create_app(engine: Engine, *, max_batch: int = DEFAULT_MAX_BATCH, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_text_chars: int = DEFAULT_MAX_TEXT_CHARS, max_image_pixels: int = MAX_IMAGE_PIXELS,
               threads: int = 1) -> "FastAPI":
    """Build the FastAPI application serving ``engine``.

    Args:
        engine: A loaded engine (``load_engine(bundle)``), or any object with the same interface.
        max_batch: Most items in one ``/predict`` request (more: 413).
        max_body_bytes: Largest request body (more: 413, before it is read in full).
        max_text_chars: Longest text item (more: 413).
        max_image_pixels: Largest image, width × height, checked before decoding (more: 413).
        threads: Predictions running at once in this process; further requests wait their turn.

    Example:
        >>> app = create_app(load_engine("runs/spam"), max_batch=16)
        >>> uvicorn.run(app, host="127.0.0.1", port=8080)  # doctest: +SKIP
    """
    from fastapi import FastAPI

    limits = Limits(max_batch=max_batch, max_body_bytes=max_body_bytes, max_text_chars=max_text_chars,
                    max_image_pixels=max_image_pixels, threads=threads)
    if engine.modality not in ("text", "image"):
        raise ConfigError(f"engine {engine.name!r} has modality {engine.modality!r}; the service serves 'text' or 'image'.")
    metadata = _plain(dict(engine.metadata))
    counts = {"requests": 0}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        logger.info("service ready", extra={"fields": {"engine": engine.name, "model": _model_name(metadata),
                                                       "modality": engine.modality, "limits": asdict(limits)}})
        yield
        logger.info("service stopped", extra={"fields": {"requests": counts["requests"]}})

    app = FastAPI(title="headstart", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(AccessLogMiddleware, counts=counts)
    _add_error_handlers(app)
    _add_routes(app, engine, limits, metadata)
    return app


def _add_routes(app: "FastAPI", engine: Engine, limits: Limits, metadata: dict[str, Any]) -> None:
    import anyio
    from fastapi import Request
    from fastapi.responses import JSONResponse

    labels = _plain(list(engine.classes))
    model = _model_name(metadata)
    started = time.monotonic()
    limiter: list[anyio.CapacityLimiter] = []  # made on first use, inside the server's event loop

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "engine": engine.name, "uptime_s": round(time.monotonic() - started, 3)})

    @app.get("/metadata")
    async def get_metadata() -> JSONResponse:
        return JSONResponse({**metadata, "engine": engine.name, "modality": engine.modality,
                             "limits": {k: v for k, v in asdict(limits).items() if k != "threads"}})

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        field, items = await _read_items(request, engine.modality, limits)
        request.state.n_items = len(items)
        if not limiter:
            limiter.append(anyio.CapacityLimiter(limits.threads))
        work = partial(_predict_batch, engine, field, items, limits)
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


# ------------------------------------------------------------------------- request reading
async def _read_items(request: Any, modality: str, limits: Limits) -> tuple[str, list[Any]]:
    """The request's field name and items: texts (checked) or raw image bytes (not yet decoded)."""
    mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if mime == "application/json" or mime.endswith("+json"):
        items = _json_items(await _read_body(request, limits.max_body_bytes), modality, limits)
        return ("texts" if modality == "text" else "images"), items
    if mime == "multipart/form-data" and modality == "image":
        body = await _read_body(request, limits.max_body_bytes)
        return "files", await _multipart_items(request.headers, body, limits)
    accepted = ("application/json, or multipart/form-data with one `files` part per image" if modality == "image"
                else 'application/json with {"texts": [...]}')
    raise ApiError(415, "unsupported_media_type", f"Content-Type {mime or '(none)'} is not accepted; send {accepted}.")


async def _read_body(request: Any, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _body_too_large(limit, int(declared))
    chunks, size = [], 0
    try:
        async with aclosing(request.stream()) as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > limit:  # chunked, or a Content-Length that understated the body
                    raise _body_too_large(limit, None)
                chunks.append(chunk)
    except ClientDisconnect as e:
        raise ApiError(400, "client_disconnected", "the client closed the connection before the body was complete.") from e
    return b"".join(chunks)


def _body_too_large(limit: int, size: int | None) -> ApiError:
    got = f"{size} bytes" if size is not None else "more than that"
    return ApiError(413, "body_too_large", f"the request body is limited to {limit} bytes and this one has {got}; "
                    "split the items over several requests (or shrink the images).")


def _json_items(body: bytes, modality: str, limits: Limits) -> list[Any]:
    field, other = ("texts", "images") if modality == "text" else ("images", "texts")
    example = '{"texts": ["first text", "second text"]}' if modality == "text" else '{"images": ["<base64 PNG/JPEG>"]}'
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError; RecursionError: [[[[...
        raise ApiError(400, "invalid_json", f"the body is not valid JSON ({e}); send e.g. {example}.") from e
    if not isinstance(payload, dict):
        raise ApiError(422, "invalid_body", f"the body must be a JSON object like {example}, not {_json_type(payload)}.")
    if other in payload:
        raise ApiError(422, "wrong_field", f"this model classifies {modality}s, so it takes {field!r}, not "
                       f"{other!r}: send {example}. GET /metadata describes the model.")
    unknown = sorted(set(payload) - {field})
    if unknown:
        raise ApiError(422, "unknown_field", f"unknown field(s) {', '.join(map(repr, unknown))}; the body holds only "
                       f"{field!r}: {example}.")
    if field not in payload:
        raise ApiError(422, "missing_field", f"the body has no {field!r} field; send {example}.")
    items = payload[field]
    if not isinstance(items, list):
        raise ApiError(422, "invalid_field", f"{field!r} must be an array, not {_json_type(items)}: send {example}.")
    _check_batch(len(items), field, limits)
    if modality == "text":
        return _check_texts(items, limits)
    return [_b64decode(value, f"images[{i}]") for i, value in enumerate(items)]


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _check_batch(n: int, field: str, limits: Limits) -> None:
    if n == 0:
        raise ApiError(422, "empty_batch", f"{field!r} is empty; send at least one item.")
    if n > limits.max_batch:
        raise ApiError(413, "batch_too_large", f"{n} items in {field!r}; at most {limits.max_batch} per request. "
                       "Split them over several requests.")


def _check_texts(items: list[Any], limits: Limits) -> list[str]:
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise ApiError(422, "invalid_item", f"texts[{i}] is {_json_type(text)}; every item must be a string.")
        if not text.strip():
            raise ApiError(422, "empty_text", f"texts[{i}] is empty or only whitespace; remove it or send its text.")
        if len(text) > limits.max_text_chars:
            raise ApiError(413, "text_too_long", f"texts[{i}] has {len(text)} characters; at most "
                           f"{limits.max_text_chars} per text. Truncate it (the model reads only the start anyway).")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # JSON allows "\ud800"; tokenizers do not
            raise ApiError(422, "invalid_text", f"texts[{i}] holds an unpaired surrogate ({e.object[e.start]!r} at "
                           f"character {e.start}); send valid Unicode.") from e
    return items


def _b64decode(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError(422, "invalid_item", f"{where} is {_json_type(value)}; every image must be a base64 string.")
    data = value
    if data.startswith("data:"):  # a data URL: data:image/png;base64,....
        head, _, data = data.partition(",")
        if not head.endswith(";base64"):
            raise ApiError(422, "invalid_base64", f"{where} is a data URL without ';base64'; send base64 image bytes.")
    data = "".join(data.split())  # line-wrapped base64 (MIME style) is fine
    try:
        raw = base64.b64decode(data, altchars=b"-_" if ("-" in data or "_" in data) else None, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ApiError(422, "invalid_base64", f"{where} is not valid base64 ({e}); send the image file's bytes "
                       "base64-encoded, e.g. `base64 -w0 cat.png`.") from e
    if not raw:
        raise ApiError(422, "invalid_image", f"{where} is empty; send the image file's bytes base64-encoded.")
    return raw


async def _multipart_items(headers: Any, body: bytes, limits: Limits) -> list[bytes]:
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def replay():  # the parser reads an async generator of chunks
        yield body
        yield b""

    parser = MultiPartParser(headers, replay(), max_files=limits.max_batch, max_fields=limits.max_batch)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        if "files" in e.message.lower():
            raise ApiError(413, "batch_too_large", f"more than {limits.max_batch} files; at most {limits.max_batch} "
                           "per request. Split them over several requests.") from e
        raise ApiError(400, "invalid_multipart", f"the multipart body cannot be parsed ({e.message}); send one "
                       "`files` part per image, e.g. curl -F files=@cat.png -F files=@dog.jpg.") from e
    try:
        unknown = sorted({key for key in form if key != "files"})
        if unknown:
            raise ApiError(422, "unknown_field", f"unknown form field(s) {', '.join(map(repr, unknown))}; send "
                           "one `files` part per image.")
        parts = form.getlist("files")
        if not parts:
            raise ApiError(422, "missing_field", "the form has no `files` part; send one per image "
                           "(curl -F files=@cat.png).")
        _check_batch(len(parts), "files", limits)
        raws = []
        for i, part in enumerate(parts):
            if not isinstance(part, UploadFile):
                raise ApiError(422, "invalid_item", f"files[{i}] is a plain form field, not a file; attach the "
                               "image as a file (curl -F files=@cat.png).")
            raws.append(await part.read())
            if not raws[-1]:
                raise ApiError(422, "invalid_image", f"files[{i}] ({part.filename}) is empty.")
        return raws
    finally:
        await form.close()


# ------------------------------------------------------------------------------- predicting
def _predict_batch(engine: Engine, field: str, items: list[Any], limits: Limits) -> "np.ndarray":
    """Decode the images (if any) and run the engine; in a worker thread, off the event loop."""
    import numpy as np

    if engine.modality == "image":
        items = [_decode_image(raw, f"{field}[{i}]", limits.max_image_pixels) for i, raw in enumerate(items)]
    try:
        proba = np.asarray(engine.predict_proba(items), dtype=np.float64)
    except DataError as e:
        raise ApiError(422, "invalid_item", str(e)) from e
    if proba.shape != (len(items), len(engine.classes)):
        raise RuntimeError(f"engine {engine.name!r} returned probabilities of shape {proba.shape} for "
                           f"{len(items)} items and {len(engine.classes)} classes")
    return proba


def _decode_image(raw: bytes, where: str, max_pixels: int) -> Any:
    from PIL import Image, UnidentifiedImageError

    from headstart.data.items import open_image

    Image.init()  # registers every plugin, so that `formats` can name TIFF and WebP
    try:
        with Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS) as opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise ApiError(413, "image_too_large", f"{where} is {width}×{height} pixels; at most {max_pixels} "
                               "pixels per image. Downscale it first.")
            opened.load()
            image = opened.copy()
        return open_image(image, where)  # the same RGB conversion as images read from files
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ApiError(422, "invalid_image", f"{where} cannot be decoded as an image ({e}); send PNG, JPEG, GIF, "
                       "BMP, TIFF or WebP file bytes.") from e


def _predictions(proba: "np.ndarray", labels: list[Any]) -> list[dict[str, Any]]:
    keys = [str(label) for label in labels]
    rows = []
    for row in proba.tolist():
        best = max(range(len(row)), key=row.__getitem__)
        rows.append({"label": labels[best], "confidence": row[best], "probabilities": dict(zip(keys, row))})
    return rows


def _model_name(metadata: dict[str, Any]) -> Any:
    backbone = metadata.get("backbone")
    return backbone.get("name") if isinstance(backbone, dict) else backbone


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, paths and anything else non-JSON turned into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy scalar or array
        return value.tolist()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # datetimes, enums...: readable rather than a 500 at /metadata


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
        engine = _engine_loader()(bundle, os.environ.get(ENV_ENGINE, "auto"))
        return create_app(engine, max_batch=_env_int(ENV_MAX_BATCH, DEFAULT_MAX_BATCH),
                          max_body_bytes=_env_int(ENV_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES),
                          max_text_chars=_env_int(ENV_MAX_TEXT_CHARS, DEFAULT_MAX_TEXT_CHARS),
                          threads=_env_int(ENV_THREADS, 1))
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

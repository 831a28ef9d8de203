"""Reading a ``POST /predict`` request within the service's limits: the body, refused with 413 as
soon as it is known to be too large (before it is read in full, whatever ``Content-Length``
says), then its items checked one by one, each error naming the field or item and the fix.

Texts come out checked; images come out as raw bytes, decoded later a batch at a time
(:mod:`headstart.serving.service`).
"""

from __future__ import annotations

import base64
import binascii
import json
from contextlib import aclosing
from typing import Any

from headstart.serving.limits import Limits

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
               float: "a number", type(None): "null"}


class ApiError(Exception):
    """A request the service refuses: answered with ``status`` and a JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def read_items(request: Any, modality: str, limits: Limits) -> tuple[str, list[Any]]:
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

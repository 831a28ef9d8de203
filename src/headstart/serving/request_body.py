"""Reading a ``POST /predict`` request within the service's limits: the body, refused with 413 as
soon as it is known to be too large (before it is read in full, whatever ``Content-Length``
says), then its items checked one by one, each error naming the field or item and the fix.

The JSON field is the modality's plural (``texts``, ``images``...) and each item is read by the
modality (:meth:`headstart.modalities.base.Modality.read_json_item`): texts come out checked,
images as raw bytes, decoded later a batch at a time (:mod:`headstart.serving.service`).
"""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from headstart.errors import RequestError
from headstart.modalities import modalities
from headstart.modalities.base import json_type
from headstart.serving.limits import Limits

if TYPE_CHECKING:
    from headstart.modalities.base import Modality


class ApiError(Exception):
    """A request the service refuses: answered with ``status`` and a JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def read_items(request: Any, modality: Modality, limits: Limits) -> tuple[str, list[Any]]:
    """The request's field name and items, as the modality reads them (texts checked, images as raw
    bytes not yet decoded)."""
    mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if mime == "application/json" or mime.endswith("+json"):
        items = _json_items(await _read_body(request, limits.max_body_bytes), modality, limits)
        return modality.plural, items
    if mime == "multipart/form-data" and modality.multipart:
        body = await _read_body(request, limits.max_body_bytes)
        return "files", await _multipart_items(request.headers, body, limits)
    accepted = (f"application/json, or multipart/form-data with one `files` part per {modality.name}"
                if modality.multipart else f'application/json with {{"{modality.plural}": [...]}}')
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


def _json_items(body: bytes, modality: Modality, limits: Limits) -> list[Any]:
    field, example = modality.plural, json.dumps(modality.request_example())
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError; RecursionError: [[[[...
        raise ApiError(400, "invalid_json", f"the body is not valid JSON ({e}); send e.g. {example}.") from e
    if not isinstance(payload, dict):
        raise ApiError(422, "invalid_body", f"the body must be a JSON object like {example}, not {json_type(payload)}.")
    # Another modality's field (images sent to a text model): say which field this model takes.
    others = {m.plural for m in modalities()} - {field}
    other = next((key for key in payload if key in others), None)
    if other is not None:
        raise ApiError(422, "wrong_field", f"this model classifies {modality.plural}, so it takes {field!r}, not "
                       f"{other!r}: send {example}. GET /metadata describes the model.")
    unknown = sorted(set(payload) - {field})
    if unknown:
        raise ApiError(422, "unknown_field", f"unknown field(s) {', '.join(map(repr, unknown))}; the body holds only "
                       f"{field!r}: {example}.")
    if field not in payload:
        raise ApiError(422, "missing_field", f"the body has no {field!r} field; send {example}.")
    items = payload[field]
    if not isinstance(items, list):
        raise ApiError(422, "invalid_field", f"{field!r} must be an array, not {json_type(items)}: send {example}.")
    _check_batch(len(items), field, limits)
    try:
        return [modality.read_json_item(value, f"{field}[{i}]", limits) for i, value in enumerate(items)]
    except RequestError as e:
        raise ApiError(e.status, e.code, e.message) from e


def _check_batch(n: int, field: str, limits: Limits) -> None:
    if n == 0:
        raise ApiError(422, "empty_batch", f"{field!r} is empty; send at least one item.")
    if n > limits.max_batch:
        raise ApiError(413, "batch_too_large", f"{n} items in {field!r}; at most {limits.max_batch} per request. "
                       "Split them over several requests.")


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

"""The service's OpenAPI description: request bodies, answers and errors as JSON Schema.

``POST /predict`` reads its body itself (so that the size limit holds while the body streams in,
before anything is parsed), so FastAPI cannot infer its schema: it is declared here, with the
service's limits in it (``maxItems``, ``maxLength``), and published at ``GET /openapi.json``.
The schema-driven fuzz test (``tests/test_serve_hardening.py``) holds the service to it: every
answer a documented status, every error the documented shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headstart.modalities import get_modality, modalities

if TYPE_CHECKING:
    from headstart.modalities.base import Modality
    from headstart.serving.limits import Limits

# Error codes by status: what ``{"error": {"code": ...}}`` can hold.
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: ("invalid_json", "invalid_multipart", "client_disconnected"),
    408: ("request_timeout",),
    413: ("body_too_large", "batch_too_large", "text_too_long", "image_too_large", "too_many_pixels"),
    415: ("unsupported_media_type",),
    422: ("invalid_body", "wrong_field", "unknown_field", "missing_field", "invalid_field", "empty_batch",
          "invalid_item", "empty_text", "invalid_text", "invalid_base64", "invalid_image", "invalid_request"),
    500: ("internal_error",),
    503: ("too_many_connections",),
}
ERROR_MEANINGS = {
    400: "The body is not JSON, or not parseable multipart.",
    408: "The request's headers or body did not arrive in time (sent by the server; the connection is closed).",
    413: "A size limit: body bytes, items per request, characters per text, pixels per image or per request "
         "(GET /metadata lists them).",
    415: "A content type the model does not take.",
    422: "A well-formed request that is wrong: the message says which field or item, and how to fix it.",
    500: "The service failed; the message holds the request id, the details are in the server log.",
    503: "The worker is at its connection cap with every connection busy (sent by the server); retry.",
}


def error_schema(status: int) -> dict[str, Any]:
    return {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {
        "error": {"type": "object", "required": ["code", "message"], "additionalProperties": False, "properties": {
            "code": {"type": "string", "enum": list(ERROR_CODES[status])},
            "message": {"type": "string", "description": "What was wrong, where, and how to fix it."}}}}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses."""
    return {status: {"description": ERROR_MEANINGS[status],
                     "content": {"application/json": {"schema": error_schema(status)}}} for status in statuses}


def predict_request_body(modality: Modality | str, limits: Limits) -> dict[str, Any]:
    """The ``requestBody`` of ``POST /predict`` for a model of this modality (an object or its name):
    a JSON object holding the modality's items, and file uploads when the modality takes them."""
    if isinstance(modality, str):
        modality = get_modality(modality)
    json_body: dict[str, Any] = {"schema": _items_object(modality.plural, modality.item_schema(limits), limits.max_batch)}
    example = modality.request_example()
    if _accepted(modality, example, limits):  # a placeholder such as "<base64 PNG/JPEG>" is no example
        json_body["example"] = example
    content = {"application/json": json_body}
    if modality.multipart:
        upload = {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}
        # The media types of the uploads (images: PNG, JPEG...); a modality may name them.
        types = modality.upload_types
        content["multipart/form-data"] = {"schema": _items_object("files", upload, limits.max_batch),
                                          "encoding": {"files": {"contentType": types}}}
    return {"required": True, "content": content}


def _accepted(modality: Modality, example: dict[str, Any], limits: Limits) -> bool:
    """Whether the service would read every item of the example body."""
    from headstart.errors import RequestError

    try:
        for i, value in enumerate(example.get(modality.plural) or []):
            modality.read_json_item(value, f"{modality.plural}[{i}]", limits)
    except RequestError:
        return False
    return True


def _items_object(field: str, item: dict[str, Any], max_batch: int) -> dict[str, Any]:
    return {"type": "object", "required": [field], "additionalProperties": False, "properties": {
        field: {"type": "array", "minItems": 1, "maxItems": max_batch, "items": item}}}


def predict_responses(labels: list[Any]) -> dict[int | str, dict[str, Any]]:
    prediction = {"type": "object", "required": ["label", "confidence", "probabilities"], "properties": {
        "label": {"enum": labels, "description": "The most probable label."},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "probabilities": {"type": "object", "required": [str(label) for label in labels],
                          "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}}}}
    answer = {"type": "object", "required": ["predictions", "engine", "model"], "properties": {
        "predictions": {"type": "array", "items": prediction, "description": "One per item, in input order."},
        "engine": {"type": "string"}, "model": {"type": ["string", "null"]}}}
    return {200: {"description": "One prediction per item.", "content": {"application/json": {"schema": answer}}},
            **errors(400, 408, 413, 415, 422, 500, 503)}


def health_responses() -> dict[int | str, dict[str, Any]]:
    answer = {"type": "object", "required": ["status", "engine", "uptime_s"], "properties": {
        "status": {"const": "ok"}, "engine": {"type": "string"}, "uptime_s": {"type": "number", "minimum": 0}}}
    return {200: {"description": "The service is up.", "content": {"application/json": {"schema": answer}}},
            **errors(500)}


def metadata_responses() -> dict[int | str, dict[str, Any]]:
    answer = {"type": "object", "required": ["labels", "modality", "engine", "limits"], "properties": {
        "labels": {"type": "array"}, "modality": {"enum": [m.name for m in modalities()]}, "engine": {"type": "string"},
        "limits": {"type": "object", "description": "Every limit the service enforces.",
                   "additionalProperties": {"type": ["number", "object", "null"]}}}}
    return {200: {"description": "The model (labels, backbone, metrics, verdict) and the service's limits.",
                  "content": {"application/json": {"schema": answer}}}, **errors(500)}

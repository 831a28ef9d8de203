"""Images: files in class folders, a table's column of image paths, PIL images and arrays in memory,
encoded bytes sent to the service.

Items stay paths until a backbone reads them (:func:`headstart.data.items.open_image`); the
export's preprocessing is torchvision's eval transform as data (:mod:`headstart.modalities.pixels`).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from headstart.data.items import IMAGE_EXTENSIONS, is_image_path, open_image
from headstart.errors import DataError, ImageTooLargeError, RequestError
from headstart.modalities import register_modality
from headstart.modalities.base import ExportInputs, Modality, Reject, json_type
from headstart.modalities.pixels import (
    ImagePreprocessor,
    decode_image,
    decode_image_bytes,
    describe_image,
    open_encoded_image,
)

PIXELS = 32        # the classic baseline: logistic regression on PIXELS×PIXELS grey levels
THUMB_SIDE = 16    # the no-backbone near-duplicate search: 16×16 RGB thumbnails
PREVIEW_SIDE = 128
IMAGE_TYPES = "image/png, image/jpeg, image/gif, image/bmp, image/tiff, image/webp"


def thumbnail_vector(image: Image.Image) -> np.ndarray:
    """The image as a THUMB_SIDE² RGB thumbnail (box filter), mean removed, unit length.

    Resized or re-encoded copies keep a cosine similarity near 1 with their original (≥ 0.991 on
    28-px silhouettes), where a backbone's features blur them with other items of the class.
    """
    small = image.convert("RGB").resize((THUMB_SIDE, THUMB_SIDE), Image.BOX)
    v = np.asarray(small, dtype=np.float32).ravel()
    v = v - v.mean()
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def grey_pixels(items: Sequence[Any], locators: Sequence[str], size: int = PIXELS) -> np.ndarray:
    """Grey-level pixels of each image, ``size``×``size``, in [0, 1], one row per image."""
    rows = []
    for item, locator in zip(items, locators):
        img = open_image(item, locator).convert("L").resize((size, size))
        rows.append(np.asarray(img, dtype=np.float32).ravel() / 255.0)
    return np.stack(rows)


class ImageModality(Modality):
    name = "image"
    plural = "images"
    default_backbone = "efficientnet_lite0"
    column_guesses = ("image", "image_path", "path", "file", "filepath", "filename")
    file_suffixes = IMAGE_EXTENSIONS
    reads_files = True
    augment_by_default = True
    finetune_lr = 5e-4
    lora_lr = 2e-3
    scratch_lr = 1e-3
    classic_recipe = "dense"
    classic_name = "classic: logistic regression on pixels"
    classic_note = f"{PIXELS}×{PIXELS} grey"
    quantization = "static"
    multipart = True
    upload_types = IMAGE_TYPES  # the media types of multipart uploads, for the service's OpenAPI description
    near_fingerprint_how = "pixel"
    near_without_backbone = "resized/re-encoded copies only"

    # ------------------------------------------------------------------ reading
    @property
    def table_option(self) -> str:
        return "--image-col NAME"  # the built-ins' own option; `--col image=NAME` works too

    def claims(self, items: Sequence[Any]) -> int:
        if isinstance(items, np.ndarray) and items.ndim >= 3:
            return 2
        first = items[0]
        if isinstance(first, (Path, Image.Image)) or (isinstance(first, np.ndarray) and first.ndim >= 2):
            return 2
        sample = items[: min(len(items), 20)]
        if isinstance(first, str) and all(isinstance(s, str) and is_image_path(Path(s)) and Path(s).is_file()
                                          for s in sample):
            return 2
        return 0

    def from_memory(self, items: list[Any], source: str) -> list[Any]:
        return [Path(i) if isinstance(i, str) else i for i in items]

    def from_column(self, values: list[Any], table: Path, column: str, reject: Reject) -> list[Any]:
        from headstart.data.items import is_valid_text
        from headstart.data.labels import plain_label
        from headstart.data.tables import is_file, missing, rows_text

        bad = [i for i, v in enumerate(values)
               if missing(v) or not isinstance(v, (str, int, float)) or not is_valid_text(str(v))]
        if bad:
            reject(bad, "unreadable-files", f"no image path in column {column!r}",
                   f"{table}: {rows_text(bad)} of column {column!r} have no image path (empty, or not a file "
                   "name). Give each row the path of its image file, relative to the table's folder.")
        items = [None if i in bad else Path(str(plain_label(v))) if Path(str(plain_label(v))).is_absolute()
                 else table.parent / str(plain_label(v)) for i, v in enumerate(values)]
        absent = [i for i, v in enumerate(items) if v is not None and not is_file(v)]
        if absent:
            reject(absent, "unreadable-files", "image file not found",
                   f"{table}: {rows_text(absent)}: image file not found ({items[absent[0]]}). Paths are read "
                   f"relative to {table.parent}.")
        return items

    # ------------------------------------------------------------------ showing
    def describe(self, item: Any, locator: str) -> str:
        if isinstance(item, (str, Path)):
            return str(item)
        shape = getattr(item, "shape", None) or getattr(item, "size", None)
        return f"<{type(item).__name__} {shape}>"

    def preview(self, item: Any, locator: str) -> dict[str, Any]:
        try:
            img = open_image(item, locator)
        except Exception as e:  # a preview must never break the report
            return {"kind": "none", "error": str(e)}
        img.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
        return {"kind": "image", "data_uri": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()}

    # ------------------------------------------------------------------ model
    def auto_candidates(self, per_class: float, gpu: bool) -> list[tuple[str, dict[str, Any], str]]:
        picks = [("partial", {"unfreeze": 2, "epochs": 4}, "top layer groups adapt to the new images; the "
                                                           "generic lower layers stay frozen (safe with few images)")]
        if per_class >= 100 or gpu:
            picks.append(("lora", {"epochs": 8}, "adapters on every layer, few trainable weights"))
        if gpu:
            picks.append(("full", {"epochs": 10}, "a GPU makes full fine-tuning affordable"))
        return picks

    def classic_inputs(self, items: Sequence[Any], locators: Sequence[str]) -> np.ndarray:
        return grey_pixels(items, locators)

    # ------------------------------------------------------------------ audit
    def inspect(self, item: Any, locator: str) -> dict[str, Any]:
        """Mode, size, a thumbnail fingerprint, and the error if the image cannot be decoded."""
        info: dict[str, Any] = {"mode": None, "size": None, "error": None, "fingerprint": None}
        try:
            if isinstance(item, (str, Path)):
                with Image.open(item) as im:
                    info["mode"], info["size"] = im.mode, im.size
            elif isinstance(item, Image.Image):
                info["mode"], info["size"] = item.mode, item.size
            elif isinstance(item, np.ndarray):
                info["mode"], info["size"] = f"array{item.shape}", (item.shape[1], item.shape[0])
            image = open_image(item, locator)  # the full decode, exactly as training will do it
            info["fingerprint"] = thumbnail_vector(image)
        except Exception as e:  # any failure to decode is the finding itself
            info["error"] = str(e).split(". ")[0]
        return info

    # ------------------------------------------------------------------ export and serving
    def export_inputs(self, backbone: Any, items: list[Any], folder: Path) -> ExportInputs:
        batch = {"pixel_values": backbone.preprocess([decode_image(item, i) for i, item in enumerate(items)])}
        return ExportInputs(batch=batch, axes={"pixel_values": {0: "batch"}},
                            preprocessing=describe_image(backbone.transform))

    def pack(self, tensors: dict[str, Any]) -> Any:
        return tensors["pixel_values"]

    def preprocessor(self, description: dict[str, Any], folder: Path) -> ImagePreprocessor:
        return ImagePreprocessor(description)

    def decode(self, item: Any, index: int) -> Any:
        return decode_image(item, index)

    def item_schema(self, limits: Any) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "format": "byte", "contentEncoding": "base64",
                "contentMediaType": "image/*",
                "description": "Image file bytes (PNG, JPEG, GIF, BMP, TIFF or WebP), base64-encoded; a data URL is fine."}

    def request_example(self) -> dict[str, Any]:
        return {"images": ["<base64 PNG/JPEG>"]}

    def read_json_item(self, value: Any, where: str, limits: Any) -> bytes:
        if not isinstance(value, str):
            raise RequestError(422, "invalid_item", f"{where} is {json_type(value)}; every image must be a base64 string.")
        data = value
        if data.startswith("data:"):  # a data URL: data:image/png;base64,....
            head, _, data = data.partition(",")
            if not head.endswith(";base64"):
                raise RequestError(422, "invalid_base64", f"{where} is a data URL without ';base64'; send base64 "
                                   "image bytes.")
        data = "".join(data.split())  # line-wrapped base64 (MIME style) is fine
        try:
            raw = base64.b64decode(data, altchars=b"-_" if ("-" in data or "_" in data) else None, validate=True)
        except (binascii.Error, ValueError) as e:
            raise RequestError(422, "invalid_base64", f"{where} is not valid base64 ({e}); send the image file's "
                               "bytes base64-encoded, e.g. `base64 -w0 cat.png`.") from e
        if not raw:
            raise RequestError(422, "invalid_image", f"{where} is empty; send the image file's bytes base64-encoded.")
        return raw

    def serve_batches(self, items: list[Any], field: str, limits: Any, most: int) -> Iterator[tuple[list[int], list[Any]]]:
        """Sizes read from the headers first (the request's pixel budget is checked before any decoding),
        then decoded a few at a time: decoded pixels live one batch at a time."""
        pixels = [_image_pixels(raw, f"{field}[{i}]", limits) for i, raw in enumerate(items)]
        if sum(pixels) > limits.max_request_pixels:
            raise RequestError(413, "too_many_pixels", f"the {len(items)} images in {field!r} hold {sum(pixels)} "
                               f"pixels together; at most {limits.max_request_pixels} per request. Send fewer images "
                               "per request, or downscale them.")
        for chunk in image_batches(pixels, budget=limits.max_image_pixels, most=most):
            with _image_errors():
                yield chunk, [decode_image_bytes(items[i], f"{field}[{i}]", max_pixels=limits.max_image_pixels)
                              for i in chunk]


def image_batches(pixels: list[int], *, budget: int, most: int) -> list[list[int]]:
    """Consecutive item indices, grouped so that a group holds at most ``most`` images and at most
    ``budget`` pixels (or is one image)."""
    batches: list[list[int]] = []
    current: list[int] = []
    held = 0
    for i, n in enumerate(pixels):
        if current and (len(current) >= most or held + n > budget):
            batches.append(current)
            current, held = [], 0
        current.append(i)
        held += n
    return [*batches, current] if current else batches


def _image_pixels(raw: bytes, where: str, limits: Any) -> int:
    """Width × height from the image's header (format and size checked, no pixel decoded)."""
    with _image_errors():
        opened = open_encoded_image(raw, where, max_pixels=limits.max_image_pixels)
    width, height = opened.size
    opened.close()
    return width * height


@contextmanager
def _image_errors() -> Iterator[None]:
    """The shared image decoder's errors as the service's answers: 413 too large, 422 undecodable."""
    try:
        yield
    except ImageTooLargeError as e:
        raise RequestError(413, "image_too_large", str(e)) from e
    except RequestError:
        raise
    except DataError as e:
        raise RequestError(422, "invalid_image", str(e)) from e


IMAGE = register_modality(ImageModality())

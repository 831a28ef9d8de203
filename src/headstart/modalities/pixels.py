"""Image pixels without torch: decoding encoded bytes safely, and torchvision's eval transform as data.

An exported image bundle's graph starts at ``float32 [B, 3, H, W]``. What happens before, the
torch path's timm/torchvision eval transform, is described by :func:`describe_image` at export
and replayed by :class:`ImagePreprocessor` with numpy and PIL only, exactly: ``Resize`` (shorter
side, or an exact size) with the same PIL filter, ``CenterCrop`` (zero padding when the crop is
larger), ``ToTensor`` (÷255 in float32) and ``Normalize`` (float32), channels RGB, layout NCHW.
:func:`open_encoded_image` is the one decoder of image bytes (the engine's and the service's).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from headstart.data.items import max_image_pixels, open_image
from headstart.errors import BundleError, DataError, ImageTooLargeError

# torchvision InterpolationMode value -> PIL filter (torchvision's own ``pil_modes_mapping``).
PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
# Only the raster formats headstart reads from folders; PIL's other plugins (EPS calls
# Ghostscript...) have no business parsing bytes someone sent.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")  # JPEG covers MPO (phone JPEGs)
_FILE_OBJECT = re.compile(r"\s*<_?io\.\w+ object at 0x[0-9a-fA-F]+>")



def describe_image(transform: Any) -> dict[str, Any]:
    """The steps of a torchvision ``Compose`` eval transform as data.

    Only the steps this module can replay exactly are accepted (Resize, CenterCrop,
    ToTensor/MaybeToTensor, Normalize); anything else raises, so an export never ships a
    preprocessing description that differs from what the model was trained with.
    """
    steps: list[dict[str, Any]] = []
    for t in getattr(transform, "transforms", [transform]):
        kind = type(t).__name__
        if kind == "Resize":
            if getattr(t, "max_size", None) is not None:
                raise BundleError(f"cannot export preprocessing step {t!r}: Resize with max_size is not supported.")
            size = [t.size] if isinstance(t.size, int) else list(t.size)
            mode = getattr(t.interpolation, "value", t.interpolation)
            if mode not in PIL_FILTERS:
                raise BundleError(f"cannot export preprocessing step {t!r}: interpolation {mode!r} is not supported.")
            steps.append({"op": "resize", "size": size, "interpolation": mode,
                          "meaning": "one number: the shorter side; two: exact (height, width)"})
        elif kind == "CenterCrop":
            steps.append({"op": "center_crop", "size": [int(s) for s in t.size]})
        elif kind in ("ToTensor", "MaybeToTensor"):
            steps.append({"op": "to_float", "scale": 1 / 255, "layout": "CHW"})
        elif kind == "Normalize":
            steps.append({"op": "normalize", "mean": [float(m) for m in t.mean], "std": [float(s) for s in t.std]})
        else:
            raise BundleError(
                f"cannot export preprocessing step {kind} ({t!r}): the ONNX engine replays only Resize, "
                "CenterCrop, ToTensor and Normalize. Use the torch engine for this bundle."
            )
    if [s["op"] for s in steps][-2:] != ["to_float", "normalize"]:
        raise BundleError(f"cannot export preprocessing {transform!r}: it must end with ToTensor, Normalize.")
    return {"kind": "image", "decode": "headstart.data.items.open_image (RGB; 16-bit and float images "
            "scaled to 8 bits; palette, alpha and grey converted to RGB)", "channels": "RGB",
            "layout": "NCHW", "dtype": "float32", "steps": steps}


def decode_image(item: Any, index: int) -> Image.Image:
    """An RGB PIL image from a path, PIL image, array or encoded bytes; errors name the item."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return decode_image_bytes(bytes(item), f"item {index}")
    if not isinstance(item, (str, Path, Image.Image, np.ndarray)):
        raise DataError(f"item {index}: expected an image (file path, PIL image, array or PNG/JPEG bytes), "
                        f"got {type(item).__name__}.")
    try:
        return open_image(item, str(item) if isinstance(item, (str, Path)) else f"item {index}")
    except DataError as e:
        raise DataError(f"item {index}: {e}") from e


def open_encoded_image(raw: bytes, where: str, *, max_pixels: int | None = None) -> Image.Image:
    """Encoded image bytes opened lazily: format and size read from the header, no pixel decoded.

    The one decoder of image bytes (the engine's and the service's): only ``IMAGE_FORMATS`` are
    parsed, and an image over ``max_pixels`` (or over PIL's decompression-bomb bound,
    :func:`headstart.data.items.max_image_pixels`) is refused before its pixels are allocated.

    Raises:
        ImageTooLargeError: Too many pixels.
        DataError: Not an image in one of the formats, or a damaged one.
    """
    Image.init()  # registers every plugin, so that `formats` can name TIFF and WebP
    try:
        opened = Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as e:
        raise _too_large(where, e, max_pixels) from e
    except Exception as e:  # Pillow's parsers raise many types (EOFError, struct.error...) on hostile bytes
        raise DataError(_undecodable(where, e)) from e
    width, height = opened.size
    if max_pixels is not None and width * height > max_pixels:
        opened.close()
        raise ImageTooLargeError(f"{where} is {width}×{height} pixels; at most {max_pixels} pixels per image. "
                                 "Downscale it first.")
    return opened


def decode_image_bytes(raw: bytes, where: str, *, max_pixels: int | None = None) -> Image.Image:
    """An RGB image from encoded bytes, converted as :func:`headstart.data.items.open_image`
    converts files (errors as :func:`open_encoded_image`)."""
    opened = open_encoded_image(raw, where, max_pixels=max_pixels)
    try:
        opened.load()
    except Image.DecompressionBombError as e:
        opened.close()
        raise _too_large(where, e, max_pixels) from e
    except Exception as e:  # truncated or damaged data, whatever the decoder raises for it
        opened.close()
        raise DataError(_undecodable(where, e)) from e
    return open_image(opened, where)


def _too_large(where: str, error: Exception, max_pixels: int | None) -> ImageTooLargeError:
    limit = max_pixels if max_pixels is not None else max_image_pixels()  # PIL refuses over twice its bound
    size = re.search(r"\((\d+) pixels\)", str(error))  # "Image size (400000000 pixels) exceeds limit..."
    has = size.group(1) if size else f"more than {max_image_pixels()}"
    return ImageTooLargeError(f"{where} has {has} pixels; at most {limit} pixels per image. Downscale it first.")


def _undecodable(where: str, error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):
        why = "not a PNG, JPEG, GIF, BMP, TIFF or WebP image"
    else:  # PIL names the file object it read from: <_io.BytesIO object at 0x...> means nothing to a client
        why = _FILE_OBJECT.sub("the bytes", str(error)) or type(error).__name__
    return f"{where}: cannot decode the bytes as an image ({why}); send PNG, JPEG, GIF, BMP, TIFF or WebP file bytes."


class ImagePreprocessor:
    """Decoded RGB images -> ``float32 [B, 3, H, W]``, as the described torchvision steps do."""

    def __init__(self, description: dict[str, Any]) -> None:
        self.steps = description["steps"]

    def one(self, img: Image.Image) -> np.ndarray:
        arr: np.ndarray | None = None
        for step in self.steps:
            op = step["op"]
            if op == "resize":
                img = _resize(img, step["size"], PIL_FILTERS[step["interpolation"]])
            elif op == "center_crop":
                img = _center_crop(img, *step["size"])
            elif op == "to_float":
                arr = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255)
                arr = arr.transpose(2, 0, 1)
            elif op == "normalize":
                mean = np.asarray(step["mean"], np.float32)[:, None, None]
                std = np.asarray(step["std"], np.float32)[:, None, None]
                arr = (arr - mean) / std
        return np.ascontiguousarray(arr, dtype=np.float32)

    def __call__(self, images: Sequence[Image.Image]) -> dict[str, np.ndarray]:
        return {"pixel_values": np.stack([self.one(img) for img in images])}


def _resize(img: Image.Image, size: list[int], resample: int) -> Image.Image:
    """torchvision ``F.resize`` on a PIL image (``_compute_resized_output_size``, no max_size)."""
    w, h = img.size
    if len(size) == 1:
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size[0], int(size[0] * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    else:
        new_h, new_w = size
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), resample)


def _center_crop(img: Image.Image, crop_h: int, crop_w: int) -> Image.Image:
    """torchvision ``F.center_crop`` on a PIL image, with its zero padding when the crop is larger."""
    w, h = img.size
    if crop_w > w or crop_h > h:
        left, top = (crop_w - w) // 2 if crop_w > w else 0, (crop_h - h) // 2 if crop_h > h else 0
        padded = Image.new(img.mode, (w + max(crop_w - w, 0), h + max(crop_h - h, 0)))
        padded.paste(img, (left, top))
        img, (w, h) = padded, padded.size
        if (crop_w, crop_h) == (w, h):
            return img
    top = round((h - crop_h) / 2.0)
    left = round((w - crop_w) / 2.0)
    return img.crop((left, top, left + crop_w, top + crop_h))

"""Single items: content hashing and image decoding with clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from headstart.errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def max_image_pixels() -> int | None:
    """The most pixels an image file may have: PIL refuses more than twice ``PIL.Image.MAX_IMAGE_PIXELS``
    (and only warns between one and two times it). Read at each call, so raising it takes effect."""
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def is_valid_text(text: str) -> bool:
    """Whether a string can be written as UTF-8 (no lone surrogates, which tokenizers refuse)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def item_sha256(item: Any, locator: str = "") -> str:
    """Content hash of one item: what the embedding cache and fingerprints key on."""
    h = hashlib.sha256()
    if isinstance(item, str):
        h.update(b"text\0")
        h.update(item.encode("utf-8"))
    elif isinstance(item, Path):
        h.update(b"file\0")
        try:
            with open(item, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
            raise DataError(f"cannot read {item}: {getattr(e, 'strerror', None) or e}. Check the path and "
                            "permissions.") from e
    elif isinstance(item, Image.Image):
        h.update(f"pil\0{item.mode}\0{item.size}\0".encode())
        h.update(item.tobytes())
    elif isinstance(item, np.ndarray):
        arr = np.ascontiguousarray(item)
        h.update(f"array\0{arr.dtype.str}\0{arr.shape}\0".encode())
        h.update(arr.tobytes())
    else:
        where = f" ({locator})" if locator else ""
        raise DataError(
            f"unsupported item type {type(item).__name__}{where}: give text as str, images as a "
            "file path (pathlib.Path), a PIL image or a numpy array."
        )
    return h.hexdigest()


def open_image(item: Any, locator: str = "") -> Image.Image:
    """Decode an image item to an RGB PIL image, or raise a DataError naming it."""
    where = locator or (str(item) if isinstance(item, Path) else "image item")
    if isinstance(item, Image.Image):
        img = item
    elif isinstance(item, np.ndarray):
        img = _array_to_image(item, where)
    elif isinstance(item, (str, Path)):
        img = _decode_file(item, where)
    else:
        raise DataError(f"{where}: expected an image (path, PIL image or array), got {type(item).__name__}.")
    try:
        return _to_rgb(img)
    except DataError:
        raise
    except Exception as e:  # a mode PIL cannot convert (LAB, HSV...), a truncated frame...
        raise DataError(f"cannot convert image {where} (mode {img.mode}) to RGB: {e}. Save it as an RGB or "
                        "grayscale PNG/JPEG.") from e


def _decode_file(path: str | Path, where: str) -> Image.Image:
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.copy()
    except FileNotFoundError as e:
        raise DataError(f"image not found: {where}. Check the path.") from e
    except Image.DecompressionBombError as e:
        raise DataError(
            f"image {where} is too large to decode safely ({e}). headstart refuses images over "
            f"{max_image_pixels():,} pixels (twice PIL.Image.MAX_IMAGE_PIXELS), a guard against decompression "
            "bombs. Downscale the image; or, if you trust the file, raise the limit in Python before loading: "
            "PIL.Image.MAX_IMAGE_PIXELS = <pixels> (None removes it)."
        ) from e
    except Exception as e:  # Pillow's decoders raise many types on damaged or hostile files
        raise DataError(
            f"cannot decode image {where}: {e or type(e).__name__}. The file is corrupt or not an image; "
            "remove it or replace it with a valid PNG/JPEG."
        ) from e


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode.startswith(("I", "F")):
        # 16/32-bit and float images: PIL's convert("RGB") would clip at 255 (nearly all white).
        img = Image.fromarray(_scale_to_uint8(np.asarray(img), sixteen_bit=img.mode.startswith("I;16")))
    if img.mode != "RGB":
        # Palette/alpha/grayscale images all become plain RGB, as pretrained backbones expect.
        img = img.convert("RGBA").convert("RGB") if img.mode in ("P", "PA", "LA") else img.convert("RGB")
    return img


def _scale_to_uint8(arr: np.ndarray, sixteen_bit: bool = False) -> np.ndarray:
    """Map an image array of any numeric type onto 0..255.

    Floats up to 1.0 are taken as [0, 1]; 16-bit data (uint16, or integers above 255) as
    0..65535; larger integers by their maximum; 8-bit-range integers stay as they are.
    """
    if arr.dtype == np.uint8:
        return arr
    values = np.nan_to_num(arr.astype(np.float64))
    top = float(values.max()) if values.size else 0.0
    if np.issubdtype(arr.dtype, np.floating):
        scale = 255.0 if top <= 1.0 else 1.0
    elif sixteen_bit or arr.dtype == np.uint16 or 255 < top <= 65535:
        scale = 255.0 / 65535.0
    elif top > 65535:
        scale = 255.0 / top
    else:
        scale = 1.0
    return np.clip(values * scale + (0.5 if scale != 1.0 else 0.0), 0, 255).astype(np.uint8)


def _array_to_image(arr: np.ndarray, where: str) -> Image.Image:
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # CHW -> HWC
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise DataError(
            f"{where}: image array has shape {arr.shape}; expected H×W (grayscale), H×W×3 (RGB) "
            "or H×W×4 (RGBA)."
        )
    if arr.dtype.kind not in "biuf" or 0 in arr.shape:
        raise DataError(f"{where}: image array has dtype {arr.dtype} and shape {arr.shape}; give a non-empty "
                        "array of numbers (uint8 0..255, or floats 0..1).")
    try:
        return Image.fromarray(_scale_to_uint8(arr)).convert("RGB")
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: cannot make an image of an array of shape {arr.shape} and dtype {arr.dtype}: {e}.") from e

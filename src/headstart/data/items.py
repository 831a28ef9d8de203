"""Single items: content hashing and image decoding with clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from headstart.errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

# Decompression bombs are refused by PIL above this many pixels; keep its guard, with a clear message.
_MAX_PIXELS = Image.MAX_IMAGE_PIXELS


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


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
        except OSError as e:
            raise DataError(f"cannot read {item}: {e.strerror or e}. Check the path and permissions.") from e
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
        try:
            with Image.open(item) as opened:
                opened.load()
                img = opened.copy()
        except FileNotFoundError as e:
            raise DataError(f"image not found: {where}. Check the path.") from e
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise DataError(
                f"cannot decode image {where}: {e}. The file is corrupt or not an image; "
                "remove it or replace it with a valid PNG/JPEG."
            ) from e
        except Image.DecompressionBombError as e:
            raise DataError(f"image {where} is larger than {_MAX_PIXELS} pixels; downscale it first.") from e
    else:
        raise DataError(f"{where}: expected an image (path, PIL image or array), got {type(item).__name__}.")
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
    img = Image.fromarray(_scale_to_uint8(arr))
    return img.convert("RGB")

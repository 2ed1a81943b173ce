"""Image and randomness helpers: seeded rngs, decoding untrusted images to plain RGB, PNG encoding, digests.

Every random choice in data_builders comes from ``rng_for(seed, source_id, purpose)``, so one row can be
rebuilt alone; Python's salted ``hash()`` is never used.

Image normalisation (on-disk data), in order: decode fully (truncated / non-image bytes -> ``BadImage``),
apply the EXIF orientation, convert to RGB (CMYK, YCbCr, LAB, HSV, palette, 1-bit and grayscale by PIL's
conversion; transparency (RGBA, LA, PA, palette with a transparent index) composited over white; 16-bit
(I;16*) divided by 257; 32-bit integer (I) treated as 16-bit when its max is <= 65535, else min-max scaled;
float (F) scaled by 255 when its max <= 1, else clipped), then check the size: a side below ``min_side`` or
more than ``max_pixels`` pixels -> ``BadImage``; a longer side above ``max_side`` -> downscaled to it.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class BadImage(ValueError):
    """An image that cannot be used; the message says why (the caller adds row and file)."""


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same in every process and Python version."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def rng_for(seed: int, source_id: str, purpose: str = "") -> np.random.Generator:
    """The generator for one random decision about one source question."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, stable_hash(source_id), stable_hash(purpose)])


def encode_png(image: Image.Image, compress_level: int = 1) -> bytes:
    """PNG bytes of ``image`` (lossless, so the stored pixels equal the built ones)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def pixel_digest(image: Image.Image) -> bytes:
    """A digest of the decoded pixels (mode, size, raw bytes): independent of the PNG encoder's version."""
    h = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes())
    return h.digest()


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        if pixels.ndim == 3:  # some plugins give (H, W, 1)
            pixels = pixels[..., 0]
        if mode.startswith("I;16"):
            pixels = pixels / 257.0
        elif mode == "I":
            top, bottom = float(pixels.max(initial=0)), float(pixels.min(initial=0))
            if top <= 65535 and bottom >= 0:
                pixels = pixels / 257.0
            else:
                pixels = (pixels - bottom) * (255.0 / max(top - bottom, 1.0))
        elif float(np.nanmax(pixels, initial=0)) <= 1.0:
            pixels = pixels * 255.0
        gray = np.clip(np.nan_to_num(pixels) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise BadImage(f"cannot convert image mode {mode!r} to RGB ({exc})") from exc


def normalise(image: Image.Image, min_side: int = 8, max_side: int = 1024,
              max_pixels: int = 64_000_000) -> Image.Image:
    """Return a plain RGB image within the size limits (see the module docstring), or raise ``BadImage``."""
    width, height = image.size
    if width * height > max_pixels:
        raise BadImage(f"image is {width}x{height} = {width * height} pixels, more than max_pixels={max_pixels} "
                       "(raise disk.max_pixels if this is intended)")
    if min(width, height) < min_side:
        raise BadImage(f"image is {width}x{height}, a side is below min_side={min_side} px")
    image = ImageOps.exif_transpose(image) or image
    rgb = _to_rgb(image)
    if max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        size = (max(1, round(rgb.size[0] * scale)), max(1, round(rgb.size[1] * scale)))
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    return rgb


def decode(data: bytes, min_side: int = 8, max_side: int = 1024, max_pixels: int = 64_000_000) -> Image.Image:
    """Decode untrusted image bytes completely and normalise them; ``BadImage`` says what is wrong."""
    if not data:
        raise BadImage("empty image bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                width, height = opened.size
                if width * height > max_pixels:  # check before decoding the pixels
                    raise BadImage(f"image is {width}x{height} = {width * height} pixels, more than "
                                   f"max_pixels={max_pixels} (raise disk.max_pixels if this is intended)")
                opened.load()
                return normalise(opened, min_side, max_side, max_pixels)
    except BadImage:
        raise
    except UnidentifiedImageError as exc:
        raise BadImage(f"not an image file PIL can read ({len(data)} bytes starting {data[:8]!r})") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"image too large, refused as a decompression bomb ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImage(f"corrupt or truncated image ({type(exc).__name__}: {exc})") from exc


def load_image_value(value: Any, image_root: str | None, **limits: int) -> tuple[Image.Image, str]:
    """Decode one cell of an image column: PIL image, bytes, a path, or an HF ``{"bytes", "path"}`` dict.

    Returns the normalised image and a description of where it came from (for error messages).
    """
    if isinstance(value, Image.Image):
        try:
            value.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadImage(f"corrupt or truncated image ({exc})") from exc
        return normalise(value, **limits), "<in-memory image>"
    path = None
    if isinstance(value, dict):
        if value.get("bytes"):
            return decode(value["bytes"], **limits), value.get("path") or "<image bytes>"
        path = value.get("path")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        return decode(bytes(value), **limits), "<image bytes>"
    elif isinstance(value, str):
        path = value
    if not path:
        raise BadImage(f"no image in this cell (got {type(value).__name__}: {str(value)[:60]!r})")
    full = path if os.path.isabs(path) or image_root is None else os.path.join(image_root, path)
    try:
        with open(full, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise BadImage(f"cannot read image file {full!r} ({exc.strerror or exc})") from exc
    try:
        return decode(data, **limits), full
    except BadImage as exc:
        raise BadImage(f"{full}: {exc}") from exc

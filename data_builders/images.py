"""Image and randomness helpers: seeded rngs, decoding untrusted images to plain RGB, PNG encoding, digests.

Every random choice in data_builders comes from ``rng_for(seed, source_id, purpose)`` (or, for one draw,
``stable_uniform`` / ``stable_choice``), so one row can be rebuilt alone; Python's salted ``hash()`` is never used.

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
import struct
import warnings
import zlib
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class BadImage(ValueError):
    """An image that cannot be used; the message says why (the caller adds row and file)."""


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same in every process and Python version."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def _words(value: int) -> tuple[int, ...]:
    """A non-negative int as ``SeedSequence`` reads one: its 32-bit words, least significant first, at least one."""
    words = [value & 0xFFFFFFFF]
    value >>= 32
    while value:
        words.append(value & 0xFFFFFFFF)
        value >>= 32
    return tuple(words)


@lru_cache(maxsize=65536)
def _hash_words(text: str) -> tuple[int, ...]:
    return _words(stable_hash(text))


def rng_for(seed: int, source_id: str, purpose: str = "") -> np.random.Generator:
    """The generator for one random decision about one source question.

    The same stream as ``np.random.default_rng([seed & 0xFFFFFFFF, stable_hash(source_id), stable_hash(purpose)])``
    (tested), ~3x faster: ``SeedSequence`` splits each Python int into 32-bit words in a Python loop, so the words
    are handed to it as one uint32 array (and cached per text).
    """
    words = _words(int(seed) & 0xFFFFFFFF) + _hash_words(source_id) + _hash_words(purpose)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(np.array(words, np.uint32))))


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def stable_uniform(seed: int, source_id: str, purpose: str) -> float:
    """A number in [0, 1) fixed by ``(seed, source_id, purpose)``: for single draws, ~20x cheaper than an rng."""
    return stable_hash(f"{int(seed)}|{source_id}|{purpose}") / 2.0**64


def stable_choice(options: list[Any], seed: int, source_id: str, purpose: str) -> Any:
    """One of ``options``, fixed by ``(seed, source_id, purpose)``."""
    return options[min(int(stable_uniform(seed, source_id, purpose) * len(options)), len(options) - 1)]


def encode_png(image: Image.Image, compress_level: int = 1, raw: bytes | None = None) -> bytes:
    """PNG bytes of an RGB ``image`` (lossless: the stored pixels equal the built ones).

    A minimal writer (IHDR, one IDAT of "Sub"-filtered rows, IEND): for small images it is ~6x faster than
    ``Image.save(format="PNG")``, whose fixed cost dominates at 64 px; the Sub filter (each byte minus the one
    a pixel to its left) halves zlib's time and size on smooth (blurred, downscaled) images. Other modes go
    through PIL.
    ``raw`` may pass ``image.tobytes()`` when the caller already has it.
    """
    if image.mode != "RGB":
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=compress_level)
        return buffer.getvalue()
    width, height = image.size
    pixels = np.frombuffer(image.tobytes() if raw is None else raw, np.uint8).reshape(height, width * 3)
    rows = np.empty((height, width * 3 + 1), np.uint8)
    rows[:, 0] = 1  # PNG filter type 1, "Sub"
    rows[:, 1:4] = pixels[:, :3]
    np.subtract(pixels[:, 3:], pixels[:, :-3], out=rows[:, 4:])  # uint8 arithmetic wraps mod 256, as PNG wants
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), compress_level)) + _chunk(b"IEND", b""))


def pixel_digest(image: Image.Image, raw: bytes | None = None) -> bytes:
    """A digest of the decoded pixels (mode, size, raw bytes): independent of the PNG encoder's version."""
    h = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes() if raw is None else raw)
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


def decode(data: bytes, min_side: int = 8, max_side: int = 1024,
           max_pixels: int = 64_000_000) -> tuple[Image.Image, tuple[int, int]]:
    """Decode untrusted image bytes completely and normalise them; ``BadImage`` says what is wrong.

    Returns the RGB image and the size it had before normalising.
    """
    if not data:
        raise BadImage("empty image bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                width, height = opened.size
                if width * height > max_pixels:  # checked before the pixels are decoded
                    raise BadImage(f"image is {width}x{height} = {width * height} pixels, more than "
                                   f"max_pixels={max_pixels} (raise disk.max_pixels if this is intended)")
                opened.load()
                return normalise(opened, min_side, max_side, max_pixels), (width, height)
    except BadImage:
        raise
    except UnidentifiedImageError as exc:
        raise BadImage(f"not an image file PIL can read ({len(data)} bytes starting {data[:8]!r})") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"image too large, refused as a decompression bomb ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImage(f"corrupt or truncated image ({type(exc).__name__}: {exc})") from exc


def load_image_value(value: Any, image_root: str | None,
                     **limits: int) -> tuple[Image.Image, str, tuple[int, int]]:
    """Decode one cell of an image column: PIL image, bytes, a path, or an HF ``{"bytes", "path"}`` dict.

    Returns the normalised image, where it came from (for messages) and the size before normalising.
    """
    if isinstance(value, Image.Image):
        try:
            value.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadImage(f"corrupt or truncated image ({exc})") from exc
        return normalise(value, **limits), "<in-memory image>", value.size
    path = None
    if isinstance(value, dict):
        if value.get("bytes"):
            image, size = decode(value["bytes"], **limits)
            return image, value.get("path") or "<image bytes>", size
        path = value.get("path")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        image, size = decode(bytes(value), **limits)
        return image, "<image bytes>", size
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
        image, size = decode(data, **limits)
    except BadImage as exc:
        raise BadImage(f"{full}: {exc}") from exc
    return image, full, size

"""Image corruptions: pure, seeded functions ``PIL.Image -> PIL.Image``, a registry by name, each with a severity.

Every corruption takes a severity in (0, 1] (``blank`` and ``irrelevant`` are not graded: 1.0 only) and turns it
into concrete parameters (``params``, stored per row), then applies them deterministically, so a row can be
re-made from its clean image and its ``params`` alone::

    >>> import numpy as np
    >>> from PIL import Image
    >>> from data_builders.corruptions import corrupt
    >>> img, params = corrupt("blur", Image.new("RGB", (64, 64), "white"), np.random.default_rng(0), 0.5)
    >>> params
    {'radius': 4.0}

Severity -> parameters (``W x H`` is the image size):
  blur         Gaussian blur, radius = severity * min(W, H) / 8 px.
  noise        additive Gaussian noise, std = severity * 128 (0-255 scale), clipped; its seed is in params.
  thumbnail    downscale so the longer side is max(4, round(max(W, H) * (1 - 0.9 * severity))) px, JPEG at
               quality max(5, round(90 - 85 * severity)), then upscale back to W x H (the low-quality regime).
  occlude_key  a flat box over the key region (the queried object's box, or a configured region) covering a
               fraction ``severity`` of it from one side (chosen by the rng); severity 1 covers it whole + 1 px.
  blank        a flat image of the blank colour: "no image".
  irrelevant   another image (chosen by the caller and recorded in params), resized to W x H.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), pixels


@dataclass(frozen=True)
class Context:
    """What a corruption may need besides the image: the key box, a replacement image, colours."""

    key_box: Box | None = None
    replacement: Image.Image | None = None
    blank_color: tuple[int, int, int] = (128, 128, 128)
    occluder_color: tuple[int, int, int] = (128, 128, 128)


@dataclass(frozen=True)
class Corruption:
    """One registry entry: severity -> params (``make_params``), params -> image (``apply``)."""

    name: str
    graded: bool
    random: bool  # make_params draws from the rng (the others get None: seeding a Generator costs ~20 us)
    make_params: Callable[[tuple[int, int], float, np.random.Generator, Context], dict[str, Any]]
    apply: Callable[[Image.Image, dict[str, Any], Context], Image.Image]


# ---- blur ---------------------------------------------------------------------------------------------------------
def _blur_params(size: tuple[int, int], severity: float, rng: np.random.Generator, ctx: Context) -> dict[str, Any]:
    return {"radius": round(severity * min(size) / 8.0, 3)}


def _blur(image: Image.Image, params: dict[str, Any], ctx: Context | None = None) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(params["radius"]))


# ---- noise --------------------------------------------------------------------------------------------------------
def _noise_params(size: tuple[int, int], severity: float, rng: np.random.Generator, ctx: Context) -> dict[str, Any]:
    return {"std": round(severity * 128.0, 3), "noise_seed": int(rng.integers(2**31))}


def _noise(image: Image.Image, params: dict[str, Any], ctx: Context | None = None) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(params["noise_seed"]).standard_normal(pixels.shape, dtype=np.float32)
    # in place: pixels + std * noise + 0.5, clipped (the same float32 operations, no temporaries)
    noise *= params["std"]
    noise += pixels
    noise += 0.5
    np.clip(noise, 0, 255, out=noise)
    return Image.fromarray(noise.astype(np.uint8), image.mode)


# ---- thumbnail ----------------------------------------------------------------------------------------------------
def _thumb_params(size: tuple[int, int], severity: float, rng: np.random.Generator, ctx: Context) -> dict[str, Any]:
    return {"side": max(4, round(max(size) * (1.0 - 0.9 * severity))), "quality": max(5, round(90 - 85 * severity))}


def small_size(size: tuple[int, int], side: int) -> tuple[int, int]:
    """The thumbnail size: the longer side becomes ``side``, the aspect ratio is kept."""
    scale = side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _thumbnail(image: Image.Image, params: dict[str, Any], ctx: Context | None = None) -> Image.Image:
    small = image.resize(small_size(image.size, params["side"]), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=params["quality"])
    # PIL's JPEG decoder run directly on the bytes: the same pixels as Image.open(...).convert("RGB") (tested),
    # without the file parsing that costs ~0.1 ms an image (more than the decoding at 64 px)
    decoded = Image.frombytes("RGB", small.size, buffer.getvalue(), "jpeg", "RGB", "")
    return decoded.resize(image.size, Image.Resampling.BILINEAR)


# ---- occlude_key --------------------------------------------------------------------------------------------------
SIDES = ("left", "right", "top", "bottom")


def occluder_box(key_box: Box, severity: float, side: str, size: tuple[int, int]) -> Box:
    """The part of ``key_box`` an occluder of this severity covers, from ``side``; whole box + 1 px at 1.0."""
    x0, y0, x1, y1 = key_box
    if severity >= 1.0:
        return max(0, x0 - 1), max(0, y0 - 1), min(size[0], x1 + 1), min(size[1], y1 + 1)
    w = max(1, round((x1 - x0) * severity))
    h = max(1, round((y1 - y0) * severity))
    return {"left": (x0, y0, x0 + w, y1), "right": (x1 - w, y0, x1, y1),
            "top": (x0, y0, x1, y0 + h), "bottom": (x0, y1 - h, x1, y1)}[side]


def _occlude_params(size: tuple[int, int], severity: float, rng: np.random.Generator, ctx: Context) -> dict[str, Any]:
    if ctx.key_box is None:
        raise ValueError("occlude_key needs the key region (Context.key_box); for on-disk data set "
                         "disk.occlude_region or a box column in disk.columns")
    side = SIDES[int(rng.integers(len(SIDES)))]
    box = occluder_box(ctx.key_box, severity, side, size)
    return {"box": list(box), "key_box": list(ctx.key_box), "side": side, "color": list(ctx.occluder_color)}


def _draw_box(image: Image.Image, box: list[int], fill: Any) -> Image.Image:
    out = image.copy()
    x0, y0, x1, y1 = box
    if x1 > x0 and y1 > y0:
        ImageDraw.Draw(out).rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
    return out


def _occlude(image: Image.Image, params: dict[str, Any], ctx: Context | None = None) -> Image.Image:
    return _draw_box(image, params["box"], tuple(params["color"]))


# ---- blank / irrelevant -------------------------------------------------------------------------------------------
def _blank_params(size: tuple[int, int], severity: float, rng: np.random.Generator, ctx: Context) -> dict[str, Any]:
    return {"color": list(ctx.blank_color)}


def _blank(image: Image.Image, params: dict[str, Any], ctx: Context | None = None) -> Image.Image:
    return Image.new("RGB", image.size, tuple(params["color"]))


def _irrelevant_params(size: tuple[int, int], severity: float, rng: np.random.Generator,
                       ctx: Context) -> dict[str, Any]:
    return {}  # the caller records where the replacement came from


def _irrelevant(image: Image.Image, params: dict[str, Any], ctx: Context | None = None) -> Image.Image:
    if ctx is None or ctx.replacement is None:
        raise ValueError("the irrelevant corruption needs a replacement image (Context.replacement)")
    replacement = ctx.replacement.convert("RGB")
    if replacement.size != image.size:
        replacement = replacement.resize(image.size, Image.Resampling.BILINEAR)
    return replacement


REGISTRY: dict[str, Corruption] = {
    "blur": Corruption("blur", True, False, _blur_params, _blur),
    "noise": Corruption("noise", True, True, _noise_params, _noise),
    "thumbnail": Corruption("thumbnail", True, False, _thumb_params, _thumbnail),
    "occlude_key": Corruption("occlude_key", True, True, _occlude_params, _occlude),
    "blank": Corruption("blank", False, False, _blank_params, _blank),
    "irrelevant": Corruption("irrelevant", False, False, _irrelevant_params, _irrelevant),
}
NAMES = tuple(REGISTRY)


def get(name: str) -> Corruption:
    """The registry entry for ``name``; unknown names fail with the closest match and the list."""
    if name not in REGISTRY:
        from difflib import get_close_matches

        close = get_close_matches(name, NAMES, n=1)
        hint = f" did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown corruption {name!r};{hint} available: {list(NAMES)}")
    return REGISTRY[name]


def check_severity(name: str, severity: float) -> None:
    """Raise ``ValueError`` unless ``severity`` is allowed for ``name`` ((0, 1]; exactly 1.0 if not graded)."""
    entry = get(name)
    if not isinstance(severity, (int, float)) or isinstance(severity, bool) or not 0.0 < float(severity) <= 1.0:
        raise ValueError(f"severity {severity!r} of corruption {name!r} is out of range: use a number in (0, 1]")
    if not entry.graded and float(severity) != 1.0:
        raise ValueError(f"corruption {name!r} is not graded: its severity list must be [1.0], got {severity!r}")


def corrupt(name: str, image: Image.Image, rng: np.random.Generator | None, severity: float,
            ctx: Context | None = None) -> tuple[Image.Image, dict[str, Any]]:
    """Apply corruption ``name`` at ``severity``; return the new image and the params that reproduce it.

    ``rng`` may be None for a corruption whose registry entry is not ``random``.
    """
    check_severity(name, severity)
    entry = get(name)
    if entry.random and rng is None:
        raise ValueError(f"corruption {name!r} draws random parameters: pass an rng")
    ctx = ctx or Context()
    params = entry.make_params(image.size, float(severity), rng, ctx)
    return entry.apply(image, params, ctx), params


def reapply(name: str, image: Image.Image, params: dict[str, Any], ctx: Context | None = None) -> Image.Image:
    """Re-make a corrupted image from the clean one and the stored params (no randomness involved)."""
    return get(name).apply(image, params, ctx or Context())

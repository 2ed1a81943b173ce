"""Exact answerability of a synthetic question on a corrupted image, computed from the scene.

    >>> answerable, why = judge(cfg, scene, query, "blur", params, corrupted, clean)   # doctest: +SKIP

An object is *readable* on a corrupted image when all of these hold:
  1. visibility: at least ``synthetic.min_visible`` of its mask pixels lie outside the occluder (occlude_key);
  2. shape: for every other shape kind k the scene could contain, drawing k in the same box instead would change
     the image by at least ``synthetic.shape_margin`` (0-255 units): the root of sum (g(mask_k) - g(mask_true))^2
     over the box area, times the colour contrast (mean |colour - background| over RGB, / 255), where g is the
     corruption's geometry as a linear map (a Gaussian of std = the blur radius, cut at 4 std, edges extended;
     PIL's bilinear downscale + upscale for thumbnail, JPEG left out; the occluder zeroing its box; identity for
     noise). Blur and downscaling spread the difference and shrink this RMS;
  3. noise only: the actual noisy pixels are nearer (L2, over the box) to the true shape than to every other kind;
  4. colour (only when the answer is its colour): the mean RGB of the corrupted image over its visible mask
     pixels is nearer to its palette colour than to every other palette colour and to the background.

A question is answerable on a corrupted image when:
  color, prior_conflict (color)  the named object is readable, colour included;
  exists: yes                    at least one object of the asked shape is readable;
  exists: no, count, prior_conflict (count)  every object is readable, and no occluder is large enough to hide a
                                 whole object (its box is at least the smallest object side in both directions);
  position, size                 both named objects are readable (centres and areas survive these corruptions);
  blank                          never ("no image"); irrelevant / mismatched: never (the image is verified to lack
                                 a shape the question names, see ``shapes.lacks``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from data_builders.config import DataConfig
from data_builders.corruptions import small_size
from data_builders.sources.shapes import (
    Obj,
    Query,
    Scene,
    object_mask,
    shape_mask,
    side_range,
)


def _kinds(cfg: DataConfig) -> list[str]:
    syn = cfg.synthetic
    kinds = set(syn.shapes)
    if syn.task_weights.get("prior_conflict", 0) > 0:
        kinds |= {spec[0] for spec in syn.prior_objects.values()}
    return sorted(kinds)


def _box_slice(box: tuple[int, ...], occ: list[int]) -> tuple[slice, slice]:
    """The occluder's rows / columns in the object's box coordinates."""
    x0, y0 = box[0], box[1]
    return (slice(max(0, occ[1] - y0), max(0, occ[3] - y0)), slice(max(0, occ[0] - x0), max(0, occ[2] - x0)))


@lru_cache(maxsize=256)
def _gaussian(n: int, sigma: float) -> np.ndarray:
    """(n, n) matrix of a Gaussian blur (std ``sigma``, kernel cut at 4 sigma, edges extended) along one axis."""
    reach = max(1, math.ceil(4 * sigma))
    offsets = np.arange(-reach, reach + 1)
    weights = np.exp(-0.5 * (offsets / max(sigma, 1e-6)) ** 2)
    weights /= weights.sum()
    matrix = np.zeros((n, n), np.float64)
    rows = np.repeat(np.arange(n), len(offsets))
    cols = np.clip(rows + np.tile(offsets, n), 0, n - 1)
    np.add.at(matrix, (rows, cols), np.tile(weights, n))
    return matrix.astype(np.float32)


@lru_cache(maxsize=256)
def _resample(n: int, small: int) -> np.ndarray:
    """(n, n) matrix of PIL's bilinear downscale to ``small`` then upscale back, along one axis."""
    eye = Image.fromarray(np.eye(n, dtype=np.float32), "F")  # row i: an impulse at column i
    there = eye.resize((small, n), Image.Resampling.BILINEAR).resize((n, n), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(there, np.float32).T)


@lru_cache(maxsize=256)
def _gram(kind: str, n: int, value: float) -> np.ndarray:
    """G = A^T A for the one-axis operator A (``_gaussian(n, value)`` or ``_resample(n, value)``)."""
    matrix = _gaussian(n, value) if kind == "blur" else _resample(n, int(value))
    return np.ascontiguousarray(matrix.T @ matrix)


def _energy(diffs: np.ndarray, box: tuple[int, ...], gram_rows: np.ndarray, gram_cols: np.ndarray) -> np.ndarray:
    """Sum of squares of ``A d B^T`` for each difference image d (zero outside ``box``); ``diffs`` is (h, k, w).

    ||A d B^T||^2 = sum((G_A d) * (d G_B)) where G_A = A^T A restricted to the box's rows (a block of the
    cached full Gram matrix) and likewise G_B: two small products per difference instead of whole images. The
    (h, k, w) layout makes both products plain 2-D matmuls over every kind at once, without copies.
    """
    x0, y0, x1, y1 = box
    h, k, w = diffs.shape
    g_rows = np.ascontiguousarray(gram_rows[y0:y1, y0:y1])  # contiguous operands keep numpy on its BLAS path
    g_cols = np.ascontiguousarray(gram_cols[x0:x1, x0:x1])
    across = g_rows @ diffs.reshape(h, k * w)  # G_A d, every kind side by side
    down = diffs.reshape(h * k, w) @ g_cols  # d G_B
    return (across * down.reshape(h, k * w)).reshape(h, k, w).sum(axis=(0, 2), dtype=np.float64)


def _shape_energy(name: str, diffs: np.ndarray, obj: Obj, size: int, params: dict[str, Any]) -> np.ndarray:
    """Sum of squares of g(mask_k - mask_true) for each other kind k, g = the corruption's geometry."""
    if name == "blur":
        gram = _gram("blur", size, float(params["radius"]))
        return _energy(diffs, obj.box, gram, gram)
    if name == "thumbnail":
        small_w, small_h = small_size((size, size), params["side"])
        return _energy(diffs, obj.box, _gram("thumbnail", size, small_h), _gram("thumbnail", size, small_w))
    if name == "occlude_key":
        rows, cols = _box_slice(obj.box, params["box"])
        diffs = diffs.copy()
        diffs[rows, :, cols] = 0
    return np.square(diffs).sum(axis=(0, 2), dtype=np.float64)


@lru_cache(maxsize=4096)
def _differences(kind: str, w: int, h: int, others: tuple[str, ...]) -> np.ndarray:
    """(h, k, w) float32: 255 * (mask of other kind k - mask of ``kind``) in a w x h box, for each of ``others``.

    Depends only on the box size, so it is cached (scenes reuse a few sizes); read-only.
    """
    mask = shape_mask(kind, w, h)
    diffs = np.stack([shape_mask(k, w, h) for k in others], axis=1).astype(np.float32) - mask[:, None, :]
    diffs *= 255.0
    diffs.setflags(write=False)
    return diffs


def readable(cfg: DataConfig, obj: Obj, name: str, params: dict[str, Any], corrupted: np.ndarray | None,
             clean: np.ndarray | None, need_color: bool) -> tuple[bool, str]:
    """Is ``obj`` still readable on the corrupted image? (rules 1-4 of the module docstring) + the reason.

    ``corrupted`` (and for noise ``clean``) are the images as uint8 arrays; they are read only for the noise and
    colour rules and may be None otherwise.
    """
    syn = cfg.synthetic
    x0, y0, x1, y1 = obj.box
    mask = object_mask(obj)
    visible = mask
    if name == "occlude_key":
        visible = mask.copy()
        visible[_box_slice(obj.box, params["box"])] = False
        fraction = visible.sum() / mask.sum()
        if fraction < syn.min_visible:
            return False, f"the {obj.name} is {fraction:.0%} visible (< min_visible {syn.min_visible})"
    others = tuple(k for k in _kinds(cfg) if k != obj.kind)
    diffs = _differences(obj.kind, x1 - x0, y1 - y0, others)
    energy = _shape_energy(name, diffs, obj, syn.image_size, params)
    contrast = sum(abs(float(c) - float(b)) for c, b in zip(syn.colors[obj.color], syn.background)) / 3
    area = float((x1 - x0) * (y1 - y0))
    for kind, total in zip(others, energy):
        margin = math.sqrt(max(float(total), 0.0) / area) / 255.0 * contrast
        if margin < syn.shape_margin:
            return False, f"the {obj.name} could be a {kind} (shape margin {margin:.1f} < {syn.shape_margin})"
    if name == "noise":
        # Nearer to kind k than to the true shape iff 2 <noise, delta_k> >= |delta_k|^2, delta_k = (mask_k - mask)
        # x (colour - background). Per pixel <noise, delta_k> = d_k * (noise . (colour - background)), so one
        # projection of the noise serves every kind; integers in float64, so the sums are exact.
        delta = np.asarray(syn.colors[obj.color], np.float64) - np.asarray(syn.background, np.float64)
        noise = corrupted[y0:y1, x0:x1].astype(np.float64) - clean[y0:y1, x0:x1]
        along = noise @ delta  # (h, w)
        step = float((delta**2).sum())
        for j, kind in enumerate(others):
            d = diffs[:, j, :] / 255.0  # -1, 0 or 1
            if 2.0 * float((d * along).sum()) >= float(np.abs(d).sum()) * step:
                return False, f"the noisy {obj.name} looks more like a {kind}"
    if need_color:
        # mean RGB over the visible pixels as (mask @ pixels) / count: sums of integers, exact in float64 whatever
        # the summation order, and ~10x faster than boolean indexing at 224 px
        weights = visible.reshape(-1).astype(np.float64)
        sums = weights @ corrupted[y0:y1, x0:x1].reshape(-1, 3).astype(np.float64)
        seen = (sums / weights.sum()).tolist()
        palette = {**syn.colors, "background": syn.background}  # plain floats: numpy is slow on 3-vectors
        nearest = min(palette, key=lambda c: sum((float(v) - s) ** 2 for v, s in zip(palette[c], seen)))
        if nearest != obj.color:
            return False, f"the {obj.name}'s colour reads as {nearest}, not {obj.color}"
    return True, f"the {obj.name} is readable"


def judge(cfg: DataConfig, scene: Scene, query: Query, name: str, params: dict[str, Any],
          corrupted: Image.Image, clean: Image.Image) -> tuple[bool, str]:
    """Answerability of ``query`` on ``scene`` after corruption ``name`` with ``params``, and why."""
    if name == "blank":
        return False, "blank image: no visual evidence"
    if name == "irrelevant":
        return False, f"the irrelevant image has no {' / '.join(query.kinds)}"
    # uint8 arrays, made only for the rules that read pixels (a 224 px image takes ~0.1 ms to convert)
    seen = np.asarray(corrupted) if name == "noise" or query.color_of is not None else None
    base = np.asarray(clean) if name == "noise" else None
    objs = scene.objects
    if query.absence and name == "occlude_key":
        occ = params["box"]
        smallest = side_range(cfg, small=query.task == "size")[0]
        if occ[2] - occ[0] >= smallest and occ[3] - occ[1] >= smallest:
            return False, f"the occluder ({occ[2] - occ[0]}x{occ[3] - occ[1]} px) could hide a whole object"
    needed = range(len(objs)) if query.all_objects else query.named
    verdicts = {i: readable(cfg, objs[i], name, params, seen, base, i == query.color_of) for i in needed}
    if query.any_of:
        good = [verdicts[i] for i in query.named if verdicts[i][0]]
        return (True, good[0][1]) if good else (False, verdicts[query.named[0]][1])
    for ok, why in verdicts.values():
        if not ok:
            return False, why
    return True, "every object the answer needs is readable"

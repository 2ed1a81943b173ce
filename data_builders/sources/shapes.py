"""Synthetic shape scenes with exact ground truth: objects (shape, colour, box), rendered with PIL, and questions.

    >>> from data_builders.config import load_config
    >>> from data_builders.sources.shapes import make_source
    >>> scene, query = make_source(load_config(None), "syn-train-000000")
    >>> query.text, query.answer                                  # doctest: +SKIP
    ('What color is the circle?', 'red')

A scene holds ``min_objects..max_objects`` non-overlapping objects (a 2 px gap) of square boxes. Questions
name objects by shape ("the circle") or by a prior object's name ("the banana"), so an image without that shape
is exactly unanswerable. Tasks (``synthetic.task_weights``):
  color           "What color is the {shape}?"                      the shape is unique in the scene
  exists          "Is there a {shape}?"                             yes / no with probability 1/2 (POPE-style)
  count           "How many {shape}s are there?"                    1..max_objects of that shape
  position        "Is the {a} left or right of the {b}?" (or above / below)  boxes apart on that axis
  size            "Which is bigger, the {a} or the {b}?"            pixel areas differ by the size ratio
  prior_conflict  "What color is the banana?" (a banana drawn in a colour other than its usual one) or
                  "I count {h} {shape}s. How many {shape}s are there?" (h differs from the true count)
All randomness comes from ``rng_for(seed, source_id, ...)``.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate

import numpy as np
from PIL import Image, ImageDraw

from data_builders.config import DataConfig
from data_builders.images import rng_for

Box = tuple[int, int, int, int]
GAP = 2  # px between object boxes
CLEAR_MARGIN = 1.2  # area ratio that makes one object "the bigger one" in the reduced size question


@dataclass(frozen=True)
class Obj:
    kind: str  # shape drawn: circle, square, triangle, diamond, crescent
    color: str  # palette name
    box: Box  # x0, y0, x1, y1 (exclusive)
    name: str  # what questions call it: the kind, or a prior object's name ("banana")


@dataclass(frozen=True)
class Query:
    """A question about a scene and what its answer is read from (used by the answerability rules)."""

    task: str
    variant: str
    text: str
    answer: str
    choices: tuple[str, ...]
    named: tuple[int, ...]  # objects the answer is read from
    any_of: bool = False  # one readable named object suffices (exists: yes)
    color_of: int | None = None  # object whose colour is the answer
    all_objects: bool = False  # every object must be readable (count, exists: no)
    absence: bool = False  # a hidden extra object would change the answer (count, exists)
    kinds: tuple[str, ...] = ()  # shape kinds the question names
    presupposes: bool = True  # the question presumes the named objects exist (else any scene answers it)


@dataclass(frozen=True)
class Scene:
    size: int
    objects: tuple[Obj, ...]

    def to_json(self) -> list[list[object]]:
        return [[o.name, o.color, list(o.box)] for o in self.objects]


@lru_cache(maxsize=8192)
def shape_mask(kind: str, w: int, h: int) -> np.ndarray:
    """Boolean (h, w) mask of a shape filling a w x h box (no antialiasing: the mask is the drawing)."""
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    r, b = w - 1, h - 1
    if kind == "circle":
        draw.ellipse((0, 0, r, b), fill=255)
    elif kind == "square":
        draw.rectangle((0, 0, r, b), fill=255)
    elif kind == "triangle":
        draw.polygon([(0, b), (r, b), (r / 2, 0)], fill=255)
    elif kind == "diamond":
        draw.polygon([(r / 2, 0), (r, b / 2), (r / 2, b), (0, b / 2)], fill=255)
    elif kind == "crescent":
        draw.ellipse((0, 0, r, b), fill=255)
        draw.ellipse((round(0.4 * w), -round(0.1 * h), r + round(0.4 * w), b - round(0.1 * h)), fill=0)
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    out = np.asarray(mask) > 0
    out.setflags(write=False)
    return out


@lru_cache(maxsize=8192)
def mask_image(kind: str, w: int, h: int) -> Image.Image:
    """``shape_mask`` as an "L" image, for pasting."""
    return Image.fromarray(shape_mask(kind, w, h).astype(np.uint8) * 255, "L")


def object_mask(obj: Obj) -> np.ndarray:
    x0, y0, x1, y1 = obj.box
    return shape_mask(obj.kind, x1 - x0, y1 - y0)


def render(scene: Scene, cfg: DataConfig) -> Image.Image:
    """Draw the scene: background, then every object's mask in its palette colour."""
    syn = cfg.synthetic
    image = Image.new("RGB", (scene.size, scene.size), tuple(syn.background))
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.box
        image.paste(tuple(syn.colors[obj.color]), obj.box, mask_image(obj.kind, x1 - x0, y1 - y0))
    return image


def side_range(cfg: DataConfig, small: bool = False) -> tuple[int, int]:
    """Smallest and largest object side in px (``small``: the size task's smaller object may go to half)."""
    syn = cfg.synthetic
    scale = syn.image_size * (1.0 - 0.5 * syn.difficulty)
    lo, hi = max(6, round(syn.object_size[0] * scale)), max(6, round(syn.object_size[1] * scale))
    return (max(6, lo // 2) if small else lo), hi


def size_ratio(cfg: DataConfig) -> float:
    return 2.0 - 0.8 * cfg.synthetic.difficulty


def _apart(a: Box, b: Box, axis: int | None = None) -> bool:
    if axis is not None:
        return a[axis + 2] + GAP <= b[axis] or b[axis + 2] + GAP <= a[axis]
    return a[2] + GAP <= b[0] or b[2] + GAP <= a[0] or a[3] + GAP <= b[1] or b[3] + GAP <= a[1]


def _place(rng: np.random.Generator, size: int, sides: list[int], axis: int | None) -> list[Box] | None:
    boxes: list[Box] = []
    for side in sides:
        for x0, y0 in rng.integers(1, size - side, size=(32, 2)).tolist():  # candidates drawn in one call
            box = (x0, y0, x0 + side, y0 + side)
            if all(_apart(box, b) for b in boxes):
                boxes.append(box)
                break
        else:
            return None
    if axis is not None and not _apart(boxes[0], boxes[1], axis):
        return None
    return boxes


def _scene(cfg: DataConfig, rng: np.random.Generator, kinds: list[str], names: list[str] | None = None,
           colors: list[str] | None = None, sides: list[int] | None = None, axis: int | None = None) -> Scene:
    """Place objects of ``kinds`` (first ones first) with random colours / sides unless given."""
    syn = cfg.synthetic
    lo, hi = side_range(cfg)
    palette = sorted(syn.colors)
    for _ in range(200):
        sizes = sides or rng.integers(lo, hi + 1, size=len(kinds)).tolist()
        boxes = _place(rng, syn.image_size, sizes, axis)
        if boxes is not None:
            drawn = [palette[i] for i in rng.integers(len(palette), size=len(kinds)).tolist()]
            cols = list(colors or []) + drawn[len(colors or []):]
            objs = [Obj(k, c, b, (names[i] if names and i < len(names) else k))
                    for i, (k, c, b) in enumerate(zip(kinds, cols, boxes))]
            return Scene(syn.image_size, tuple(objs))
    raise ValueError(f"cannot place {len(kinds)} objects of side {lo}-{hi} px in a {syn.image_size} px image: "
                     "lower synthetic.object_size or synthetic.max_objects, or raise synthetic.image_size")


def _others(rng: np.random.Generator, shapes: list[str], exclude: set[str], n: int) -> list[str]:
    pool = [s for s in shapes if s not in exclude]
    return [pool[int(rng.integers(len(pool)))] for _ in range(n)] if pool else []


def _count_objects(cfg: DataConfig, rng: np.random.Generator) -> int:
    syn = cfg.synthetic
    return int(rng.integers(syn.min_objects, syn.max_objects + 1))


def _plural(name: str, n: int = 2) -> str:
    return name if n == 1 else name + "s"


def _task_color(cfg: DataConfig, rng: np.random.Generator, shapes: list[str]) -> tuple[Scene, Query]:
    q = shapes[int(rng.integers(len(shapes)))]
    n = _count_objects(cfg, rng)
    scene = _scene(cfg, rng, [q] + _others(rng, shapes, {q}, n - 1))
    return scene, Query("color", "color", f"What color is the {q}?", scene.objects[0].color, (), (0,),
                        color_of=0, kinds=(q,))


def _task_exists(cfg: DataConfig, rng: np.random.Generator, shapes: list[str]) -> tuple[Scene, Query]:
    q = shapes[int(rng.integers(len(shapes)))]
    n = _count_objects(cfg, rng)
    yes = bool(rng.random() < 0.5)
    kinds = ([q] if yes else []) + _others(rng, shapes, {q} if not yes else set(), n - (1 if yes else 0))
    scene = _scene(cfg, rng, kinds)
    named = tuple(i for i, o in enumerate(scene.objects) if o.kind == q)
    return scene, Query("exists", "yes" if yes else "no", f"Is there a {q}?", "yes" if yes else "no",
                        ("yes", "no"), named, any_of=yes, all_objects=not yes, absence=not yes, kinds=(q,),
                        presupposes=False)


def _counted(cfg: DataConfig, rng: np.random.Generator, shapes: list[str]) -> tuple[Scene, str, int]:
    q = shapes[int(rng.integers(len(shapes)))]
    k = int(rng.integers(1, cfg.synthetic.max_objects + 1))
    n = max(k, _count_objects(cfg, rng))
    return _scene(cfg, rng, [q] * k + _others(rng, shapes, {q}, n - k)), q, k


def _task_count(cfg: DataConfig, rng: np.random.Generator, shapes: list[str]) -> tuple[Scene, Query]:
    scene, q, k = _counted(cfg, rng, shapes)
    return scene, Query("count", "count", f"How many {_plural(q)} are there?", str(k), (), tuple(range(k)),
                        all_objects=True, absence=True, kinds=(q,), presupposes=False)


def _task_pair(cfg: DataConfig, rng: np.random.Generator, shapes: list[str], task: str) -> tuple[Scene, Query]:
    a, b = (str(s) for s in rng.choice(shapes, size=2, replace=False))
    n = max(2, _count_objects(cfg, rng))
    kinds = [a, b] + _others(rng, shapes, {a, b}, n - 2)
    if task == "position":
        axis = int(rng.integers(2))  # 0: x (left / right), 1: y (above / below)
        scene = _scene(cfg, rng, kinds, axis=axis)
        first = scene.objects[0].box[axis] < scene.objects[1].box[axis]
        words = ("left", "right") if axis == 0 else ("above", "below")
        answer = words[0] if first else words[1]
        text = f"Is the {a} {words[0]} or {words[1]} of the {b}?" if axis == 0 else \
            f"Is the {a} {words[0]} or {words[1]} the {b}?"
        return scene, Query("position", words[0] + "_" + words[1], text, answer, words, (0, 1), kinds=(a, b))
    lo, hi = side_range(cfg, small=True)
    for _ in range(200):
        sides = [int(s) for s in rng.integers(lo, hi + 1, size=n)]
        areas = [int(shape_mask(k, s, s).sum()) for k, s in zip(kinds[:2], sides[:2])]
        if max(areas) >= size_ratio(cfg) * min(areas):
            break
    else:
        raise ValueError("cannot draw two objects whose areas differ by the size ratio: widen synthetic.object_size")
    scene = _scene(cfg, rng, kinds, sides=sides)
    answer = a if areas[0] > areas[1] else b
    return scene, Query("size", "size", f"Which is bigger, the {a} or the {b}?", answer, (a, b), (0, 1),
                        kinds=(a, b))


def _task_prior(cfg: DataConfig, rng: np.random.Generator, shapes: list[str]) -> tuple[Scene, Query]:
    syn = cfg.synthetic
    if rng.random() < 0.5:  # a count that differs from the one the text hints
        scene, q, k = _counted(cfg, rng, shapes)
        hints = [h for h in range(1, max(3, syn.max_objects + 1) + 1) if h != k]
        h = hints[int(rng.integers(len(hints)))]
        text = f"I count {h} {_plural(q, h)}. How many {_plural(q)} are there?"
        return scene, Query("prior_conflict", "count", text, str(k), (), tuple(range(k)), all_objects=True,
                            absence=True, kinds=(q,), presupposes=False)
    names = sorted(syn.prior_objects)
    name = names[int(rng.integers(len(names)))]
    kind, usual = syn.prior_objects[name]
    unusual = [c for c in sorted(syn.colors) if c != usual]
    color = unusual[int(rng.integers(len(unusual)))]
    n = _count_objects(cfg, rng)
    scene = _scene(cfg, rng, [kind] + _others(rng, shapes, set(), n - 1), names=[name], colors=[color])
    return scene, Query("prior_conflict", "color", f"What color is the {name}?", color, (), (0,), color_of=0,
                        kinds=(kind,))


def make_source(cfg: DataConfig, source_id: str) -> tuple[Scene, Query]:
    """The scene and question of one synthetic source question (a pure function of ``(seed, source_id)``)."""
    rng = rng_for(cfg.seed, source_id, "scene")
    weights = cfg.synthetic.task_weights
    tasks = sorted(t for t, w in weights.items() if w > 0)
    cumulative = list(accumulate(weights[t] for t in tasks))
    task = tasks[min(bisect_right(cumulative, rng.random() * cumulative[-1]), len(tasks) - 1)]
    shapes = list(cfg.synthetic.shapes)
    if task == "color":
        return _task_color(cfg, rng, shapes)
    if task == "exists":
        return _task_exists(cfg, rng, shapes)
    if task == "count":
        return _task_count(cfg, rng, shapes)
    if task in ("position", "size"):
        return _task_pair(cfg, rng, shapes, task)
    return _task_prior(cfg, rng, shapes)


def lacks(scene: Scene, query: Query) -> bool:
    """True when ``scene`` cannot answer ``query`` because a shape the question presupposes is absent."""
    present = {o.kind for o in scene.objects}
    return query.presupposes and any(k not in present for k in query.kinds)


def irrelevant_scene(cfg: DataConfig, source_id: str, query: Query) -> Scene:
    """A fresh scene without any shape the question names (so it cannot show the answer)."""
    rng = rng_for(cfg.seed, source_id, "irrelevant")
    allowed = [s for s in cfg.synthetic.shapes if s not in query.kinds]
    return _scene(cfg, rng, _others(rng, allowed, set(), _count_objects(cfg, rng)))


def reduced_question(scene: Scene, query: Query) -> tuple[str, str | None] | None:
    """``remove_descriptors``: the question without the shape names, and its answer if unique in the scene.

    Returns None when the reduced question has a unique answer that differs from the original one (the row
    would teach a wrong label, so it is not made), else ``(text, answer-or-None)`` where None = ambiguous.
    """
    objs = scene.objects
    if query.task == "color" or (query.task == "prior_conflict" and query.variant == "color"):
        colors = {o.color for o in objs}
        return "What color is the object?", (query.answer if len(colors) == 1 else None)
    if query.task == "exists":
        return ("Is there an object?", "yes") if query.answer == "yes" else None
    if query.task in ("count", "prior_conflict"):
        if len(objs) != int(query.answer):
            return None
        prefix = query.text.split(". ")[0] + ". " if query.task == "prior_conflict" else ""
        for kind in query.kinds:
            prefix = prefix.replace(_plural(kind), "objects").replace(f" {kind}.", " object.")
        return prefix + "How many objects are there?", query.answer
    if query.task == "position":
        return query.text.replace(f"the {query.kinds[0]}", "the object", 1).replace(
            f"the {query.kinds[1]}", "the other object", 1), None
    # size: "Which object is bigger?" has one answer when the largest object is CLEAR_MARGIN x the next one.
    areas = sorted(((int(object_mask(o).sum()), o.kind) for o in objs), reverse=True)
    if areas[0][0] < CLEAR_MARGIN * areas[1][0]:
        return "Which object is bigger?", None
    return ("Which object is bigger?", query.answer) if areas[0][1] == query.answer else None

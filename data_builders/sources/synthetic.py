"""The synthetic source: shape scenes (``shapes.py``) with exact labels (``observer.py``) for every damage.

    >>> from data_builders.config import load_config
    >>> from data_builders.sources.synthetic import SyntheticSource
    >>> source = SyntheticSource(load_config(None))
    >>> item = source.item("eval", 0)          # the normal pair of source "syn-eval-000000"

Labelling rules besides the corruptions judged by ``observer.judge``:
  mismatched          the donor is the next source of the same split along a seeded cyclic order (a derangement:
                      never the question's own image) whose scene lacks a shape the question names, checked on
                      the donor's scene; unanswerable. Questions that any scene answers (exists, count, the
                      count variant of prior_conflict) get no mismatched row.
  irrelevant          a fresh scene drawn only from shapes the question does not name; unanswerable; none for
                      questions that any scene answers.
  misleading_hint     a wrong answer of the same type (another colour / number / yes-no / side / shape);
                      answerable (the image is untouched).
  remove_descriptors  ``shapes.reduced_question``: answerable iff the reduced question has one answer in the scene
                      and it is the original one; ambiguous -> unanswerable; another unique answer -> no row.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image

from data_builders.config import DataConfig
from data_builders.images import rng_for, stable_choice
from data_builders.sources import observer
from data_builders.sources.base import Item, NotApplicable
from data_builders.sources.shapes import (
    Query,
    Scene,
    irrelevant_scene,
    lacks,
    make_source,
    reduced_question,
    render,
)

DONOR_TRIES = 64  # how far along the cyclic order a mismatched donor is looked for


class SyntheticSource:
    kind = "synthetic"

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg

    def count(self, split: str) -> int:
        return (self.cfg.train_sources if split == "train" else self.cfg.eval_sources) or 0

    def ids(self, split: str) -> list[str]:
        return [f"syn-{split}-{i:06d}" for i in range(self.count(split))]

    def item(self, split: str, index: int) -> Item:
        if not 0 <= index < self.count(split):
            raise IndexError(f"source index {index} out of range for the {split} split ({self.count(split)})")
        source_id = f"syn-{split}-{index:06d}"
        scene, query = make_source(self.cfg, source_id)
        image = render(scene, self.cfg)
        # The key region: one named object (exists: no -> any object, where a hidden shape could be).
        pool = list(query.named) if query.named else list(range(len(scene.objects)))
        key = scene.objects[stable_choice(pool, self.cfg.seed, source_id, "key_box")].box
        return Item(source_id, split, index, image, query.text, query.answer, list(query.choices), query.task,
                    key_box=key, extra={"scene": scene.to_json(), "variant": query.variant},
                    native=(scene, query))

    def judge_corruption(self, item: Item, name: str, severity: float, params: dict[str, Any],
                         corrupted: Image.Image) -> tuple[bool, str]:
        scene, query = item.native
        return observer.judge(self.cfg, scene, query, name, params, corrupted, item.image)

    def _needs_scene(self, query: Query) -> None:
        if not query.presupposes:
            raise NotApplicable(f"{query.task} ({query.variant}) questions are answered by any scene")

    def irrelevant(self, item: Item) -> tuple[Image.Image, dict[str, Any]]:
        _, query = item.native
        self._needs_scene(query)
        other = irrelevant_scene(self.cfg, item.source_id, query)
        if not lacks(other, query):  # guaranteed by construction; verified because labels depend on it
            raise AssertionError(f"irrelevant scene for {item.source_id} shows {query.kinds}")
        return render(other, self.cfg), {"irrelevant_scene": other.to_json()}

    @cached_property
    def _orders(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        orders = {}
        for split in ("train", "eval"):
            order = rng_for(self.cfg.seed, f"mismatch-order-{split}").permutation(self.count(split))
            position = np.empty_like(order)
            position[order] = np.arange(len(order))
            orders[split] = (order, position)
        return orders

    def mismatched(self, item: Item) -> tuple[Image.Image, bool, str, dict[str, Any]]:
        _, query = item.native
        self._needs_scene(query)
        order, position = self._orders[item.split]
        n = len(order)
        for step in range(1, min(n, DONOR_TRIES + 1)):
            donor_id = f"syn-{item.split}-{int(order[(position[item.index] + step) % n]):06d}"
            donor: Scene = make_source(self.cfg, donor_id)[0]
            if lacks(donor, query):
                why = f"the image of {donor_id} has no {' / '.join(query.kinds)}"
                return render(donor, self.cfg), False, why, {"donor": donor_id, "donor_scene": donor.to_json()}
        raise NotApplicable(f"no donor without {' / '.join(query.kinds)} in {DONOR_TRIES} tries")

    def hint(self, item: Item) -> tuple[str, bool, str]:
        _, query = item.native
        syn = self.cfg.synthetic
        if query.task in ("color",) or query.variant == "color":
            options = sorted(syn.colors)
        elif query.task == "exists":
            options = ["yes", "no"]
        elif query.task in ("count", "prior_conflict"):
            options = [str(k) for k in range(1, max(3, syn.max_objects + 1) + 1)]
        else:
            options = list(query.choices)
        options = [o for o in options if o != query.answer]
        wrong = stable_choice(options, self.cfg.seed, item.source_id, "hint")
        return wrong, True, "misleading hint; the image still shows the answer"

    def reduce(self, item: Item) -> tuple[str, bool, str]:
        scene, query = item.native
        reduced = reduced_question(scene, query)
        if reduced is None:
            raise NotApplicable("the reduced question has another answer in this scene")
        text, answer = reduced
        if answer is None:
            return text, False, "without the shape name the question is ambiguous in this scene"
        return text, True, "without the shape name the answer is still unique"

"""Rows of one source question: the normal pair, its damaged variants, their labels and arms.

    >>> from data_builders.config import load_config
    >>> from data_builders.pairs import Planner
    >>> from data_builders.sources import open_source
    >>> cfg = load_config(None)
    >>> out = Planner(cfg, open_source(cfg)).rows("eval", 0)   # every condition of source syn-eval-000000
    >>> sorted({row["condition"] for row in out.rows})        # doctest: +SKIP
    ['corrupted', 'mismatched', 'normal', 'text_interference']

Which rows a source yields:
  eval   the normal row and every damage the config lists (each corruption at each severity, mismatched, each
         text interference kind) that applies to the question; the others are counted as not applicable.
  train  the normal row and ONE damaged row: a condition drawn by ``damaged_weights``, then one of its damages
         uniformly (re-drawn while not applicable). Arms: standard = every normal row, hallucination = every
         damaged row, mixed = the damaged row of round(mixed_damaged_ratio * N) sources (a seeded permutation
         of the train sources picks which) and the normal row of the others. So each arm has one row per
         source: the same N rows per source budget, and the same source questions.
A row is ``answerable`` as its source's rules say (``sources/``); ``target`` is "abstain" exactly when not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate
from typing import Any

import numpy as np
from PIL import Image

from data_builders import corruptions
from data_builders.config import DataConfig
from data_builders.images import encode_png, pixel_digest, rng_for, stable_uniform
from data_builders.prompts import make_prompt
from data_builders.sources.base import BadRow, Item, NotApplicable, Source
from data_builders.text import misleading_hint


@dataclass(frozen=True)
class Damage:
    condition: str  # corrupted | mismatched | text_interference
    name: str  # corruption name, "swap" (mismatched) or the text interference kind
    severity: float

    @property
    def label(self) -> str:
        return f"{self.name}@{self.severity:g}" if self.condition == "corrupted" else self.name


def damages(cfg: DataConfig) -> list[Damage]:
    """Every damage the config asks for, in a fixed order."""
    out = [Damage("corrupted", name, float(s)) for name, sevs in cfg.corruptions.items() for s in sevs]
    if cfg.mismatched:
        out.append(Damage("mismatched", "swap", 1.0))
    out += [Damage("text_interference", kind, 1.0) for kind in cfg.text_interference]
    return out


@dataclass
class SourceRows:
    """What one source question yields: storage-ready rows, their digests, and what was left out."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)
    not_applicable: list[tuple[str, str]] = field(default_factory=list)  # (damage label, reason)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # bad input rows (on_bad_row: skip)
    encoded: dict[int, tuple[Image.Image, bytes, bytes]] = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "encoded": {}}  # only the rows travel back from worker processes


# json.dumps(value, sort_keys=True) makes a new encoder per call; one shared encoder writes the same text faster
_SORTED_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=True)


def row_digest(row: dict[str, Any], pixels: bytes) -> bytes:
    """Content digest of one row: every column but the image (canonical JSON) + ``images.pixel_digest``."""
    fields = {k: v for k, v in row.items() if k != "image"}
    h = hashlib.sha256(_SORTED_JSON.encode(fields).encode())
    h.update(pixels)
    return h.digest()


class Planner:
    """Builds the rows of single source questions; picklable (worker processes get a copy)."""

    def __init__(self, cfg: DataConfig, source: Source) -> None:
        self.cfg = cfg
        self.source = source
        self.damages = damages(cfg)

    @cached_property
    def _mixed_damaged(self) -> np.ndarray:
        n = len(self.source.ids("train"))
        rank = np.empty(n, np.int64)
        rank[rng_for(self.cfg.seed, "mixed-arm").permutation(n)] = np.arange(n)
        return rank < round(self.cfg.mixed_damaged_ratio * n)

    def rows(self, split: str, index: int) -> SourceRows:
        """Every row of source question ``index`` of ``split`` (see the module docstring)."""
        out = SourceRows()
        try:
            item = self.source.item(split, index)
        except BadRow as exc:
            if self.cfg.on_bad_row == "error":
                raise
            out.skipped.append(exc.record())
            return out
        if split == "eval":
            self._add(out, self._normal(item, []))
            for damage in self.damages:
                try:
                    self._add(out, self.damaged(item, damage, []))
                except NotApplicable as exc:
                    out.not_applicable.append((damage.label, str(exc)))
            return out
        mixed_damaged = bool(self._mixed_damaged[index])
        damaged = self._train_damaged(item, ["hallucination"] + (["mixed"] if mixed_damaged else []), out)
        # The mixed arm takes the normal row when the damaged row is not its pick, or there is none.
        self._add(out, self._normal(item, ["standard"] + ([] if mixed_damaged and damaged else ["mixed"])))
        if damaged:
            self._add(out, damaged)
        return out

    def _normal(self, item: Item, arms: list[str]) -> dict[str, Any]:
        return self._row(item, item.image, item.question, "normal", "", 0.0, True, "clean image", arms, {})

    def _train_damaged(self, item: Item, arms: list[str], out: SourceRows) -> dict[str, Any] | None:
        """The one damaged row of a train source: condition by ``damaged_weights``, then a damage uniformly."""
        pool = list(self.damages)
        draw = 0
        while pool:
            counts = {c: sum(d.condition == c for d in pool) for c in {d.condition for d in pool}}
            # each condition's weight, split evenly over its damages still in the pool
            weights = [self.cfg.damaged_weights.get(d.condition, 0.0) / counts[d.condition] for d in pool]
            if sum(weights) <= 0:
                break
            cumulative = list(accumulate(weights))
            u = stable_uniform(self.cfg.seed, item.source_id, f"train-damage-{draw}") * cumulative[-1]
            damage = pool.pop(min(bisect_right(cumulative, u), len(pool) - 1))
            draw += 1
            try:
                return self.damaged(item, damage, arms)
            except NotApplicable as exc:
                out.not_applicable.append((damage.label, str(exc)))
        out.not_applicable.append(("train_damaged_row", "no damage in the config applies to this question"))
        return None

    def damaged(self, item: Item, damage: Damage, arms: list[str]) -> dict[str, Any]:
        """One damaged row of ``item`` (raises ``NotApplicable`` when the damage does not apply)."""
        cfg, source = self.cfg, self.source
        question = item.question
        extra: dict[str, Any] = {}
        if damage.condition == "corrupted":
            # seeding a Generator costs ~20 us a row; only the corruptions that draw (noise, occlude_key) get one
            random = corruptions.get(damage.name).random
            rng = rng_for(cfg.seed, item.source_id, damage.label) if random else None
            replacement = None
            if damage.name == "irrelevant":
                replacement, extra = source.irrelevant(item)
            ctx = corruptions.Context(key_box=item.key_box, replacement=replacement,
                                      blank_color=tuple(cfg.blank_color), occluder_color=tuple(cfg.occluder_color))
            image, params = corruptions.corrupt(damage.name, item.image, rng, damage.severity, ctx)
            answerable, why = source.judge_corruption(item, damage.name, damage.severity, params, image)
            params = {**params, **extra}
        elif damage.condition == "mismatched":
            image, answerable, why, params = source.mismatched(item)
        elif damage.name == "misleading_hint":
            image = item.image
            wrong, answerable, why = source.hint(item)
            question = misleading_hint(question, wrong, cfg.hint_template)
            params = {"hint": wrong}
        else:
            image = item.image
            question, answerable, why = source.reduce(item)
            params = {"shown_question": question}
        return self._row(item, image, question, damage.condition, damage.name, damage.severity, answerable, why,
                         arms, params)

    def _row(self, item: Item, image: Image.Image, shown: str, condition: str, corruption: str, severity: float,
             answerable: bool, why: str, arms: list[str], params: dict[str, Any]) -> dict[str, Any]:
        return {
            "image": image,
            "prompt": make_prompt(self.cfg.instruction.replace("{question}", shown)),
            "question": item.question,
            "answer": item.answer,
            "choices": list(item.choices),
            "task": item.task,
            "condition": condition,
            "corruption": corruption,
            "severity": float(np.float32(severity)),  # what the float32 column reads back
            "answerable": bool(answerable),
            "target": "answer" if answerable else "abstain",
            "source_id": item.source_id,
            "split": item.split,
            "arms": arms,
            "params": _SORTED_JSON.encode({**item.extra, **params, "reason": why}),
        }

    def _add(self, out: SourceRows, row: dict[str, Any]) -> None:
        image = row["image"]
        cached = out.encoded.get(id(image))  # text-interference rows reuse the normal row's image
        if cached is None or cached[0] is not image:
            raw = image.tobytes()
            cached = (image, encode_png(image, self.cfg.png_compress_level, raw), pixel_digest(image, raw))
            out.encoded[id(image)] = cached
        out.digests.append(row_digest(row, cached[2]))
        out.rows.append({**row, "image": {"bytes": cached[1], "path": None}})


@dataclass
class Chunk:
    """What building a run of source questions sends back: one Arrow table and the manifest's inputs."""

    split: str
    sources: int  # source questions in the run
    built: int  # of which gave rows (the others were skipped as bad input)
    table: Any  # pyarrow.Table of the rows (None when there are none)
    digests: list[bytes]
    summaries: list[tuple[str, str, str, str, tuple[str, ...]]]  # condition, damage label, target, task, arms
    not_applicable: list[tuple[str, str]]
    skipped: list[dict[str, Any]]


def damage_label(row: dict[str, Any]) -> str:
    """``blur@0.15`` for corruptions, the kind otherwise, ``none`` for normal rows (manifest counts)."""
    if row["condition"] == "corrupted":
        return f"{row['corruption']}@{row['severity']:g}"
    return row["corruption"] or "none"


_PLANNER: Planner | None = None  # set in each worker process by init_worker
_SCHEMA: Any = None
_BLAS_LIMIT: Any = None


def single_threaded_blas() -> Any:
    """Limit BLAS to one thread while rows are built (a context manager; a no-op without threadpoolctl).

    The answerability check multiplies many small matrices; a multi-threaded BLAS spends more time waking
    threads than computing (13x slower at 224 px on a busy 2-core machine). Parallelism comes from num_proc.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: installed with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def init_worker(planner: Planner, schema: Any, limit_blas: bool = True) -> None:
    """Keep this process's planner and the Arrow schema of the rows. In a pool worker (``limit_blas``) BLAS
    stays single-threaded for its lifetime; the building process uses ``single_threaded_blas()`` as a context."""
    global _PLANNER, _SCHEMA, _BLAS_LIMIT
    _PLANNER, _SCHEMA = planner, schema
    if limit_blas:
        _BLAS_LIMIT = single_threaded_blas()


def run_chunk(chunk: tuple[str, int, int]) -> Chunk:
    """Rows of the source questions ``start..stop`` of one split, as one Arrow table (runs in a worker, so
    the conversion to Arrow is parallel too)."""
    import pyarrow as pa

    split, start, stop = chunk
    if _PLANNER is None:
        raise RuntimeError("run_chunk called before init_worker")
    results = [_PLANNER.rows(split, index) for index in range(start, stop)]
    rows = [row for result in results for row in result.rows]
    return Chunk(
        split=split, sources=stop - start, built=sum(1 for r in results if r.rows),
        table=pa.Table.from_pylist(rows, schema=_SCHEMA) if rows else None,
        digests=[d for r in results for d in r.digests],
        summaries=[(row["condition"], damage_label(row), row["target"], row["task"], tuple(row["arms"]))
                   for row in rows],
        not_applicable=[n for r in results for n in r.not_applicable],
        skipped=[s for r in results for s in r.skipped])


__all__ = ["Chunk", "Damage", "Planner", "SourceRows", "damage_label", "damages", "init_worker", "row_digest",
           "run_chunk", "single_threaded_blas"]

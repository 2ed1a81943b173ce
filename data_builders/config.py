"""The data config: YAML validated into dataclasses; unknown keys fail with "did you mean ...".

    >>> from data_builders.config import load_config
    >>> cfg = load_config("recipes/tiny/data.yaml")     # or a dict, or None for the embedded default
    >>> cfg.synthetic.image_size
    64

Every key, its default and its meaning: ``docs/data.md`` (and the ``help`` metadata below).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any

import yaml

from data_builders import corruptions
from data_builders.text import KINDS as TEXT_KINDS

DEFAULT_INSTRUCTION = '{question} Answer with one word, or say "cannot tell" if the image does not show it.'
TASKS = ("color", "exists", "count", "position", "size", "prior_conflict")
SHAPES = ("circle", "square", "triangle", "crescent", "diamond")
DAMAGED = ("corrupted", "mismatched", "text_interference")


def _copy(value: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(value))


@dataclass
class SyntheticConfig:
    """Synthetic shape scenes with exact ground truth (``source: synthetic``)."""

    image_size: int = field(default=64, metadata={"help": "image side in px (56-64 px: 4 tokens for the tiny model)"})
    shapes: list[str] = field(
        default_factory=lambda: ["circle", "square", "triangle"],
        metadata={"help": f"shape kinds drawn; from {list(SHAPES)}"})
    colors: dict[str, list[int]] = field(
        default_factory=lambda: {"red": [220, 30, 30], "green": [30, 160, 50], "blue": [30, 70, 220],
                                 "yellow": [240, 200, 20]},
        metadata={"help": "palette: colour name -> RGB"})
    background: list[int] = field(default_factory=lambda: [255, 255, 255], metadata={"help": "background RGB"})
    min_objects: int = field(default=1, metadata={"help": "fewest objects per scene"})
    max_objects: int = field(default=1, metadata={"help": "most objects per scene (position / size need 2)"})
    object_size: list[float] = field(
        default_factory=lambda: [0.5, 0.6],
        metadata={"help": "[min, max] object box side as a fraction of image_size"})
    difficulty: float = field(
        default=0.0,
        metadata={"help": "0..1: shrinks objects by (1 - difficulty/2), size task area ratio 2.0 -> 1.2"})
    task_weights: dict[str, float] = field(
        default_factory=lambda: {"color": 0.6, "exists": 0.1, "count": 0.15, "position": 0.0, "size": 0.0,
                                 "prior_conflict": 0.15},
        metadata={"help": f"question mix over {list(TASKS)}"})
    prior_objects: dict[str, list[str]] = field(
        default_factory=lambda: {"banana": ["crescent", "yellow"]},
        metadata={"help": "prior_conflict objects: name -> [shape, usual colour]; drawn in another colour"})
    min_visible: float = field(
        default=0.5,
        metadata={"help": "an occluded object stays readable only if this fraction of its pixels is visible"})
    shape_margin: float = field(
        default=30.0,
        metadata={"help": "RMS difference (0-255) a corrupted shape must keep from every other kind (clean: >= 46)"})

    def check(self, where: str) -> None:
        _need(self.image_size >= 16, where, "synthetic.image_size", f"{self.image_size} is below 16 px")
        for shape in self.shapes:
            _need(shape in SHAPES, where, "synthetic.shapes", f"unknown shape {shape!r}; available: {list(SHAPES)}")
        _need(len(self.shapes) >= 2, where, "synthetic.shapes", "needs at least 2 shape kinds")
        _need(len(self.colors) >= 2, where, "synthetic.colors", "needs at least 2 colours")
        for name, rgb in {**self.colors, "background": self.background}.items():
            _need(_is_rgb(rgb), where, f"synthetic.colors.{name}", f"{rgb!r} is not an [r, g, b] list of 0-255 ints")
        _need(1 <= self.min_objects <= self.max_objects <= 6, where, "synthetic.max_objects",
              f"need 1 <= min_objects ({self.min_objects}) <= max_objects ({self.max_objects}) <= 6")
        lo_hi = self.object_size
        _need(len(lo_hi) == 2 and 0.05 <= lo_hi[0] <= lo_hi[1] <= 0.8, where, "synthetic.object_size",
              f"{lo_hi!r}: need [min, max] with 0.05 <= min <= max <= 0.8")
        _need(0.0 <= self.difficulty <= 1.0, where, "synthetic.difficulty", f"{self.difficulty} is not in [0, 1]")
        _need(0.0 < self.min_visible <= 1.0, where, "synthetic.min_visible", "must be in (0, 1]")
        _need(self.shape_margin > 0, where, "synthetic.shape_margin", "must be > 0")
        _check_keys(self.task_weights, TASKS, where, "synthetic.task_weights")
        _need(sum(self.task_weights.values()) > 0 and min(self.task_weights.values()) >= 0, where,
              "synthetic.task_weights", "weights must be >= 0 and not all 0")
        for name, spec in self.prior_objects.items():
            _need(isinstance(spec, list) and len(spec) == 2 and spec[0] in SHAPES and spec[1] in self.colors,
                  where, f"synthetic.prior_objects.{name}",
                  f"{spec!r}: need [shape, usual colour] with a shape in {list(SHAPES)} and a palette colour")
            _need(spec[0] not in self.shapes, where, f"synthetic.prior_objects.{name}",
                  f"shape {spec[0]!r} is also in synthetic.shapes; prior objects need their own shape")
        pair_tasks = [t for t in ("position", "size") if self.task_weights.get(t, 0) > 0]
        _need(not pair_tasks or self.max_objects >= 2, where, "synthetic.max_objects",
              f"tasks {pair_tasks} compare two objects: max_objects must be >= 2")
        _need(self.task_weights.get("prior_conflict", 0) == 0 or bool(self.prior_objects), where,
              "synthetic.prior_objects", "prior_conflict has weight > 0 but no prior_objects are defined")


@dataclass
class DiskConfig:
    """Any on-disk image-QA dataset (``source: disk``), or a hub id when online (``format: hub``)."""

    path: str = field(default="", metadata={"help": "dataset folder, .parquet/.jsonl/.json/.csv file, or hub id"})
    format: str = field(
        default="auto", metadata={"help": "auto | load_from_disk | parquet | json | csv | imagefolder | hub"})
    split: str | None = field(
        default=None, metadata={"help": "split of a DatasetDict / hub dataset (default: 'train' or the only one)"})
    columns: dict[str, str | None] = field(
        default_factory=lambda: {"image": "image", "question": "question", "answer": "answer", "choices": None,
                                 "id": None, "task": None, "box": None},
        metadata={"help": "column map: contract name -> column in your data (None: absent)"})
    image_root: str | None = field(
        default=None, metadata={"help": "folder relative image paths start from (default: the data file's)"})
    occlude_region: list[float] = field(
        default_factory=lambda: [0.25, 0.25, 0.75, 0.75],
        metadata={"help": "key region [x0, y0, x1, y1] as image fractions when no box column is mapped"})
    rules: dict[str, Any] = field(
        default_factory=lambda: {"blur": 0.25, "noise": 0.5, "thumbnail": 0.3, "occlude_key": False,
                                 "blank": False, "irrelevant": False, "mismatched": False,
                                 "misleading_hint": True, "remove_descriptors": False},
        metadata={"help": "answerable? per damage: true, false, or t (answerable iff severity <= t)"})
    descriptor_words: list[str] = field(
        default_factory=lambda: ["red", "green", "blue", "yellow", "black", "white", "orange", "purple", "pink",
                                 "brown", "gray", "grey", "big", "small", "large", "tiny", "left", "right", "top",
                                 "bottom"],
        metadata={"help": "words remove_descriptors deletes from questions"})
    min_side: int = field(default=8, metadata={"help": "images with a side below this are bad rows"})
    max_side: int = field(default=1024, metadata={"help": "longer image sides above this are downscaled to it"})
    max_pixels: int = field(
        default=64_000_000, metadata={"help": "images with more pixels are bad rows (decompression-bomb guard)"})

    def check(self, where: str) -> None:
        _need(bool(self.path), where, "disk.path", "empty: name the dataset folder, file or hub id")
        formats = ("auto", "load_from_disk", "parquet", "json", "csv", "imagefolder", "hub")
        _need(self.format in formats, where, "disk.format", f"{self.format!r} is not one of {list(formats)}")
        _check_keys(self.columns, ("image", "question", "answer", "choices", "id", "task", "box"), where,
                    "disk.columns")
        for key in ("image", "question", "answer"):
            _need(bool(self.columns.get(key)), where, f"disk.columns.{key}", "required: name the column")
        r = self.occlude_region
        _need(len(r) == 4 and 0 <= r[0] < r[2] <= 1 and 0 <= r[1] < r[3] <= 1, where, "disk.occlude_region",
              f"{r!r}: need [x0, y0, x1, y1] fractions with x0 < x1, y0 < y1")
        _check_keys(self.rules, (*corruptions.NAMES, "mismatched", *TEXT_KINDS), where, "disk.rules")
        for name, rule in self.rules.items():
            _need(isinstance(rule, (bool, int, float)), where, f"disk.rules.{name}",
                  f"{rule!r}: use true, false or a severity threshold in [0, 1]")
        _need(1 <= self.min_side <= self.max_side, where, "disk.min_side", "need 1 <= min_side <= max_side")


@dataclass
class DataConfig:
    """One data build: source, sizes, conditions, arms, prompt."""

    seed: int = field(default=0, metadata={"help": "all randomness derives from (seed, source_id)"})
    source: str = field(default="synthetic", metadata={"help": "synthetic | disk"})
    train_sources: int | None = field(
        default=800, metadata={"help": "train source questions (disk: at most; null = all the rest)"})
    eval_sources: int = field(default=100, metadata={"help": "eval source questions (disjoint from train)"})
    instruction: str = field(
        default=DEFAULT_INSTRUCTION, metadata={"help": "prompt text; {question} becomes the shown question"})
    hint_template: str = field(
        default="Hint: it is {wrong}.",
        metadata={"help": "misleading hint before the question; {wrong}: a wrong answer"})
    corruptions: dict[str, list[float]] = field(
        default_factory=lambda: {"blur": [0.15, 1.0], "occlude_key": [1.0], "noise": [0.3], "thumbnail": [0.5, 1.0],
                                 "blank": [1.0], "irrelevant": [1.0]},
        metadata={"help": f"corruption -> severities in (0, 1]; from {list(corruptions.NAMES)}"})
    mismatched: bool = field(default=True, metadata={"help": "make mismatched rows (another sample's image)"})
    text_interference: list[str] = field(
        default_factory=lambda: list(TEXT_KINDS),
        metadata={"help": f"text interference kinds; from {list(TEXT_KINDS)}"})
    mixed_damaged_ratio: float = field(default=0.5, metadata={"help": "damaged fraction of the mixed arm's rows"})
    damaged_weights: dict[str, float] = field(
        default_factory=lambda: {"corrupted": 0.6, "mismatched": 0.2, "text_interference": 0.2},
        metadata={"help": "how a train source's one damaged row picks its condition"})
    on_bad_row: str = field(
        default="error", metadata={"help": "error | skip (skips are counted in the manifest)"})
    blank_color: list[int] = field(
        default_factory=lambda: [128, 128, 128], metadata={"help": "RGB of blank images; not the scene background"})
    occluder_color: list[int] = field(
        default_factory=lambda: [128, 128, 128], metadata={"help": "RGB of occlude_key boxes"})
    png_compress_level: int = field(default=1, metadata={"help": "zlib level 0-9 of the stored PNGs (lossless)"})
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig, metadata={"help": "synthetic source"})
    disk: DiskConfig | None = field(default=None, metadata={"help": "on-disk source (needed when source: disk)"})

    def check(self, where: str) -> None:
        _need(self.source in ("synthetic", "disk"), where, "source", f"{self.source!r}: use synthetic or disk")
        _need(isinstance(self.seed, int), where, "seed", f"{self.seed!r} is not an integer")
        _need(self.eval_sources >= 1, where, "eval_sources", "must be >= 1")
        _need(self.train_sources is None or self.train_sources >= 1, where, "train_sources", "must be >= 1 or null")
        _need(self.source == "disk" or self.train_sources is not None, where, "train_sources",
              "null (all rows) only makes sense for source: disk")
        _need("{question}" in self.instruction, where, "instruction", "must contain {question}")
        _need("{wrong}" in self.hint_template, where, "hint_template", "must contain {wrong}")
        for name, severities in self.corruptions.items():
            _check_keys({name: 0}, corruptions.NAMES, where, "corruptions")
            _need(isinstance(severities, list) and len(severities) > 0, where, f"corruptions.{name}",
                  f"{severities!r}: give a non-empty list of severities")
            for severity in severities:
                try:
                    corruptions.check_severity(name, severity)
                except ValueError as exc:
                    raise ValueError(f"{where}: key 'corruptions.{name}': {exc}") from None
        for kind in self.text_interference:
            _check_keys({kind: 0}, TEXT_KINDS, where, "text_interference")
        _need(0.0 <= self.mixed_damaged_ratio <= 1.0, where, "mixed_damaged_ratio", "must be in [0, 1]")
        _check_keys(self.damaged_weights, DAMAGED, where, "damaged_weights")
        _need(min(self.damaged_weights.values(), default=0) >= 0, where, "damaged_weights", "weights must be >= 0")
        _need(self.on_bad_row in ("error", "skip"), where, "on_bad_row", f"{self.on_bad_row!r}: use error or skip")
        for key in ("blank_color", "occluder_color"):
            _need(_is_rgb(getattr(self, key)), where, key, "not an [r, g, b] list of 0-255 ints")
        _need(0 <= self.png_compress_level <= 9, where, "png_compress_level", "must be 0-9")
        _need(self.source != "disk" or self.disk is not None, where, "disk", "source is disk but no disk: section")
        if self.source == "synthetic":
            self.synthetic.check(where)
            _need(self.blank_color != self.synthetic.background, where, "blank_color",
                  "must differ from synthetic.background, or a blank image looks like an empty scene")
        if self.disk is not None:
            self.disk.check(where)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _is_rgb(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value))


def _need(ok: bool, where: str, key: str, problem: str) -> None:
    if not ok:
        raise ValueError(f"{where}: key {key!r}: {problem}")


def _check_keys(mapping: dict[str, Any], valid: tuple[str, ...] | list[str], where: str, key: str) -> None:
    _need(isinstance(mapping, dict), where, key, f"expected a mapping, got {type(mapping).__name__}")
    for name in mapping:
        if name not in valid:
            close = get_close_matches(str(name), list(valid), n=1)
            hint = f" did you mean {close[0]!r}?" if close else ""
            full = str(name) if key == "<top>" else f"{key}.{name}"
            raise ValueError(f"{where}: unknown key {full!r};{hint} valid keys here: {list(valid)}")


def _build(cls: type, data: Any, where: str, prefix: str) -> Any:
    if data is None:
        data = {}
    _need(isinstance(data, dict), where, prefix.rstrip(".") or "<top>",
          f"expected a mapping, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    _check_keys(data, names, where, prefix.rstrip(".") or "<top>")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "synthetic":
            value = _build(SyntheticConfig, value, where, "synthetic.")
        elif f.name == "disk" and value is not None:
            value = _build(DiskConfig, value, where, "disk.")
        elif f.name in ("columns", "rules") and isinstance(value, dict):
            value = {**_default(cls, f.name), **value}  # partial maps keep the defaults of the rest
        kwargs[f.name] = value
    return cls(**kwargs)


def _default(cls: type, name: str) -> Any:
    return getattr(cls(), name)


def load_config(source: str | os.PathLike | dict[str, Any] | DataConfig | None = None) -> DataConfig:
    """Read and check a data config: a YAML path, a dict, a ``DataConfig``, or None (embedded default).

    Raises ``ValueError`` naming the file and the key (unknown keys list the valid ones), or
    ``FileNotFoundError`` for a missing file.
    """
    if isinstance(source, DataConfig):
        cfg, where = source, "<DataConfig>"
    elif source is None:
        cfg, where = DataConfig(), "<default config>"
    elif isinstance(source, dict):
        where = "<config dict>"
        cfg = _build(DataConfig, _copy(source), where, "")
    else:
        where = os.fspath(source)
        if not os.path.isfile(where):
            raise FileNotFoundError(f"data config {where!r} not found (the embedded default is "
                                    "recipes/tiny/data.yaml)")
        with open(where, encoding="utf-8") as handle:
            try:
                data = yaml.safe_load(handle)
            except yaml.YAMLError as exc:
                raise ValueError(f"{where}: not valid YAML ({exc})") from exc
        cfg = _build(DataConfig, data, where, "")
    try:
        cfg.check(where)
    except TypeError as exc:  # e.g. a string where a number belongs
        raise ValueError(f"{where}: a value has the wrong type ({exc})") from exc
    return cfg

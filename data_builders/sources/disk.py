"""On-disk image-QA data ("foreign" data): save_to_disk folders, parquet / JSONL / JSON / CSV with image paths,
imagefolder with metadata, or a hub id (``format: hub``, online only).

    source: disk
    disk: {path: data/my_vqa.jsonl, columns: {image: img_path, question: q, answer: a}}

Images may be HF ``Image`` cells, bytes, or paths (relative to ``disk.image_root``, default the data file's
folder). Every image is decoded and normalised by ``images.decode`` (bad bytes -> a ``BadRow`` naming the row and
file). Rows are split by a seeded permutation: ``eval_sources`` rows for eval, then up to ``train_sources`` for train.

Labels follow ``disk.rules`` (true, false, or a severity threshold t: answerable iff severity <= t); defaults:
blur 0.25, noise 0.5, thumbnail 0.3, occlude_key / blank / irrelevant / mismatched / remove_descriptors false,
misleading_hint true. The key region is the ``box`` column ([x0, y0, x1, y1], pixels of the input image, or
fractions when all <= 1) or ``disk.occlude_region``. Mismatched donors are the next row along a seeded cyclic
order whose answer differs; irrelevant images are synthetic shape scenes.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from functools import cached_property
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
from PIL import Image

from data_builders.config import DataConfig, DiskConfig
from data_builders.images import BadImage, load_image_value, rng_for
from data_builders.sources.base import BadRow, Item, NotApplicable
from data_builders.text import pick_wrong, remove_words

DONOR_TRIES = 64


def detect_format(disk: DiskConfig) -> str:
    if disk.format != "auto":
        return disk.format
    path = disk.path
    if os.path.isdir(path):
        names = set(os.listdir(path))
        if names & {"dataset_dict.json", "state.json", "dataset_info.json"}:
            return "load_from_disk"
        return "imagefolder"
    suffix = path.lower().rsplit(".", 1)[-1]
    formats = {"parquet": "parquet", "jsonl": "json", "json": "json", "csv": "csv"}
    if suffix in formats:
        return formats[suffix]
    if not os.path.exists(path):
        raise FileNotFoundError(f"disk.path {path!r} does not exist (for a hub dataset set disk.format: hub)")
    raise ValueError(f"disk.path {path!r}: cannot tell its format; set disk.format to one of "
                     "load_from_disk, parquet, json, csv, imagefolder, hub")


def _read_json(path: str) -> pa.Table:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        rows = json.loads(text)
        rows = rows if isinstance(rows, list) else rows.get("data", rows)
    except json.JSONDecodeError:
        rows = []
        for line_no, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}: line {line_no} is not valid JSON ({exc.msg})") from exc
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: expected JSON lines or a JSON list of objects")
    return pa.Table.from_pylist(rows)


def _imagefolder(path: str) -> pa.Table:
    for name, reader in (("metadata.jsonl", _read_json), ("metadata.csv", None)):
        meta = os.path.join(path, name)
        if os.path.isfile(meta):
            if reader is None:
                import pyarrow.csv as pcsv

                table = pcsv.read_csv(meta)
            else:
                table = reader(meta)
            if "file_name" not in table.column_names:
                raise ValueError(f"{meta}: an imagefolder metadata file needs a file_name column; "
                                 f"present: {table.column_names}")
            return table.append_column("image", table.column("file_name"))
    raise FileNotFoundError(f"{path}: an imagefolder needs metadata.jsonl or metadata.csv with file_name, "
                            "question and answer columns")


def open_dataset(disk: DiskConfig) -> tuple[datasets.Dataset, str]:
    """The input rows as a Dataset whose images are not decoded, and the folder relative paths start from."""
    fmt = detect_format(disk)
    root = disk.image_root
    if fmt in ("load_from_disk", "hub"):
        if fmt == "hub":
            loaded = datasets.load_dataset(disk.path)
        else:
            if not os.path.isdir(disk.path):
                raise FileNotFoundError(f"disk.path {disk.path!r} is not a folder saved with save_to_disk")
            loaded = datasets.load_from_disk(disk.path)
        if isinstance(loaded, datasets.DatasetDict):
            only = next(iter(loaded)) if len(loaded) == 1 else None
            split = disk.split or ("train" if "train" in loaded else only)
            if split not in loaded:
                raise ValueError(f"{disk.path}: split {split!r} not found; set disk.split to one of {list(loaded)}")
            loaded = loaded[split]
        root = root or (disk.path if fmt == "load_from_disk" else None)
        ds = loaded
    else:
        if not os.path.exists(disk.path):
            raise FileNotFoundError(f"disk.path {disk.path!r} does not exist")
        if fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(disk.path)
        elif fmt == "csv":
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(disk.path)
        elif fmt == "json":
            table = _read_json(disk.path)
        else:
            table = _imagefolder(disk.path)
        ds = datasets.Dataset(table)
        root = root or (disk.path if fmt == "imagefolder" else os.path.dirname(os.path.abspath(disk.path)))
    image_col = disk.columns["image"]
    if image_col in ds.column_names and isinstance(ds.features[image_col], datasets.Image):
        ds = ds.cast_column(image_col, datasets.Image(decode=False))
    return ds, root


class DiskSource:
    kind = "disk"

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.disk: DiskConfig = cfg.disk  # type: ignore[assignment]
        ds, self.root = open_dataset(self.disk)
        self.file = self.disk.path
        cols = self.disk.columns
        if len(ds) == 0:
            raise ValueError(f"{self.file}: the dataset is empty (0 rows); nothing to build")
        present = ds.column_names
        for key, column in cols.items():
            if column and column not in present:
                raise ValueError(f"{self.file}: column {column!r} (disk.columns.{key}) not found; "
                                 f"available columns: {present}")
        text_cols = [c for c in (cols["question"], cols["answer"], cols.get("id"), cols.get("task"),
                                 cols.get("choices")) if c]
        table = ds.select_columns(sorted(set(text_cols))).to_dict()
        self.questions = table[cols["question"]]
        self.answers = [_answer(a) for a in table[cols["answer"]]]
        self.tasks = [str(t) if t else "foreign" for t in table[cols["task"]]] if cols.get("task") \
            else ["foreign"] * len(ds)
        ids = [str(v) for v in table[cols["id"]]] if cols.get("id") else [f"row-{i}" for i in range(len(ds))]
        seen: dict[str, int] = {}
        for i, source_id in enumerate(ids):
            if source_id in seen:
                raise ValueError(f"{self.file}: duplicate id {source_id!r} in rows {seen[source_id]} and {i} "
                                 f"(column {cols['id']!r}); ids must be unique")
            seen[source_id] = i
        self.source_ids = ids
        self.choices = table[cols["choices"]] if cols.get("choices") else [None] * len(ds)
        self._ds: datasets.Dataset | None = ds
        self._splits = self._split(len(ds))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_ds"] = None  # re-opened lazily in each worker process
        return state

    @property
    def ds(self) -> datasets.Dataset:
        if self._ds is None:
            self._ds = open_dataset(self.disk)[0]
        return self._ds

    def _split(self, n: int) -> dict[str, list[int]]:
        if n <= self.cfg.eval_sources:
            raise ValueError(f"{self.file}: {n} rows, but eval_sources={self.cfg.eval_sources} leaves none for "
                             "train; lower eval_sources")
        order = rng_for(self.cfg.seed, "disk-split").permutation(n)
        evals = order[: self.cfg.eval_sources]
        rest = order[self.cfg.eval_sources:]
        trains = rest if self.cfg.train_sources is None else rest[: self.cfg.train_sources]
        return {"eval": sorted(int(i) for i in evals), "train": sorted(int(i) for i in trains)}

    def ids(self, split: str) -> list[str]:
        return [self.source_ids[i] for i in self._splits[split]]

    def _row(self, split: str, index: int) -> int:
        return self._splits[split][index]

    def item(self, split: str, index: int) -> Item:
        row = self._row(split, index)
        source_id, cols = self.source_ids[row], self.disk.columns
        label = f"{row} (id {source_id})"
        question = self.questions[row]
        if not isinstance(question, str) or not question.strip():
            raise BadRow(label, cols["question"], f"empty or non-text question {question!r}", self.file)
        if not self.answers[row]:
            raise BadRow(label, cols["answer"], "empty answer", self.file)
        limits = {"min_side": self.disk.min_side, "max_side": self.disk.max_side, "max_pixels": self.disk.max_pixels}
        try:
            image, _, original = load_image_value(self.ds[row][cols["image"]], self.root, **limits)
        except BadImage as exc:
            raise BadRow(label, cols["image"], str(exc), self.file) from None
        choices = self.choices[row]
        if choices is not None and not isinstance(choices, list):
            raise BadRow(label, cols["choices"], f"expected a list of choices, got {choices!r}", self.file)
        key_box = self._key_box(label, row, image.size, original)
        return Item(source_id, split, index, image, question.strip(), self.answers[row],
                    [str(c).strip().lower() for c in choices or []], self.tasks[row], key_box=key_box,
                    extra={"input_row": row})

    def _key_box(self, label: str, row: int, size: tuple[int, int], original: tuple[int, int]):
        column = self.disk.columns.get("box")
        w, h = size
        if column:
            box = self.ds[row][column]
            if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
                raise BadRow(label, column, f"expected [x0, y0, x1, y1], got {box!r}", self.file)
            if max(box) <= 1.0:
                fx, fy = (box[0], box[2]), (box[1], box[3])
            else:
                fx, fy = (box[0] / original[0], box[2] / original[0]), (box[1] / original[1], box[3] / original[1])
            if not (0 <= fx[0] < fx[1] <= 1 and 0 <= fy[0] < fy[1] <= 1):
                raise BadRow(label, column, f"box {box!r} is empty or outside the {original[0]}x{original[1]} image",
                             self.file)
        else:
            r = self.disk.occlude_region
            fx, fy = (r[0], r[2]), (r[1], r[3])
        x0, x1 = int(fx[0] * w), max(int(fx[0] * w) + 1, round(fx[1] * w))
        y0, y1 = int(fy[0] * h), max(int(fy[0] * h) + 1, round(fy[1] * h))
        return (x0, y0, x1, y1)

    def _rule(self, name: str, severity: float = 1.0) -> tuple[bool, str]:
        rule = self.disk.rules.get(name, False)
        if isinstance(rule, bool):
            return rule, f"disk.rules.{name} = {str(rule).lower()}"
        ok = severity <= float(rule)
        return ok, f"disk.rules.{name} = {rule}: severity {severity} {'<=' if ok else '>'} {rule}"

    def judge_corruption(self, item: Item, name: str, severity: float, params: dict[str, Any],
                         corrupted: Image.Image) -> tuple[bool, str]:
        return self._rule(name, severity)

    def irrelevant(self, item: Item) -> tuple[Image.Image, dict[str, Any]]:
        from data_builders.sources.shapes import irrelevant_scene, make_source, render

        _, query = make_source(self.cfg, item.source_id)
        scene = irrelevant_scene(self.cfg, item.source_id, query)
        side = min(item.image.size)
        canvas = Image.new("RGB", item.image.size, tuple(self.cfg.synthetic.background))
        picture = render(scene, self.cfg).resize((side, side), Image.Resampling.NEAREST)
        canvas.paste(picture, ((item.image.size[0] - side) // 2, (item.image.size[1] - side) // 2))
        return canvas, {"irrelevant_scene": scene.to_json()}

    @cached_property
    def _orders(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        orders = {}
        for split, rows in self._splits.items():
            order = rng_for(self.cfg.seed, f"mismatch-order-{split}").permutation(len(rows))
            position = np.empty_like(order)
            position[order] = np.arange(len(order))
            orders[split] = (order, position)
        return orders

    def mismatched(self, item: Item) -> tuple[Image.Image, bool, str, dict[str, Any]]:
        order, position = self._orders[item.split]
        n = len(order)
        skipped = []
        for step in range(1, min(n, DONOR_TRIES + 1)):
            index = int(order[(position[item.index] + step) % n])
            if self.answers[self._row(item.split, index)] == item.answer:
                continue  # the donor image might show the same answer
            try:
                donor = self.item(item.split, index)
            except BadRow as exc:
                if self.cfg.on_bad_row == "error":
                    raise
                skipped.append(exc.row)
                continue
            ok, why = self._rule("mismatched")
            return donor.image, ok, why, {"donor": donor.source_id, "skipped_donors": skipped}
        raise NotApplicable(f"no donor with another answer in {DONOR_TRIES} tries")

    @cached_property
    def _answer_pools(self) -> dict[str, list[str]]:
        pools: dict[str, set[str]] = defaultdict(set)
        for task, answer in zip(self.tasks, self.answers):
            if answer:
                pools[task].add(answer)
        return {task: sorted(values) for task, values in pools.items()}

    def hint(self, item: Item) -> tuple[str, bool, str]:
        rng = rng_for(self.cfg.seed, item.source_id, "hint")
        wrong = pick_wrong(item.answer, item.choices, rng) or pick_wrong(item.answer,
                                                                         self._answer_pools[item.task], rng)
        if wrong is None:
            raise NotApplicable("no other answer to hint at")
        ok, why = self._rule("misleading_hint")
        return wrong, ok, why

    def reduce(self, item: Item) -> tuple[str, bool, str]:
        text, removed = remove_words(item.question, self.disk.descriptor_words)
        if not removed or not text:
            raise NotApplicable("no descriptor word in the question")
        ok, why = self._rule("remove_descriptors")
        return text, ok, f"{why} (removed {removed})"


def _answer(value: Any) -> str:
    if isinstance(value, (list, tuple)):  # e.g. VQA-style answer lists: the first non-empty one
        value = next((v for v in value if v not in (None, "")), "")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).strip().lower()

"""The data contract: what one row of a built dataset is, how to check it, how to load it.

Training and evaluation code import only this module from ``data_builders``::

    from data_builders.contract import ABSTAIN_TEXT, load_built
    train = load_built("data/tiny", "train", arm="mixed")   # validated, filtered to one arm
    evals = load_built("data/tiny", "eval")

A built dataset is a ``datasets.DatasetDict`` saved with ``save_to_disk`` (splits ``train`` and ``eval``)
plus ``manifest.json`` in the same folder. Column meanings: ``docs/data.md``.
Check a folder by hand: ``python -m data_builders validate DIR``.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, TypedDict

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from data_builders.prompts import make_prompt, prompt_text  # noqa: F401  (part of the contract's API)

ABSTAIN_TEXT = "cannot tell"
"""The canonical abstention answer: the SFT target of ``abstain`` rows; rewards detect it."""

CONDITIONS = ("normal", "corrupted", "mismatched", "text_interference")
ARMS = ("standard", "hallucination", "mixed")
SPLITS = ("train", "eval")
TARGETS = ("answer", "abstain")
MANIFEST_NAME = "manifest.json"


class Row(TypedDict):
    """One built row (see the table in ``docs/data.md``)."""

    image: Any  # PIL.Image.Image when decoded; never None ("no image" is a blank image)
    prompt: list[dict[str, Any]]  # [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ...}]}]
    question: str  # the original question of the normal pair
    answer: str  # ground truth of the normal pair, lowercase short string
    choices: list[str]
    task: str  # color / count / exists / position / size / prior_conflict / foreign ...
    condition: str  # one of CONDITIONS
    corruption: str  # "" for normal
    severity: float  # 0.0 for normal, in [0, 1] otherwise
    answerable: bool  # does the image (still) carry the evidence for `answer`?
    target: str  # "answer" | "abstain"; abstain iff not answerable
    source_id: str  # id of the normal pair this row derives from
    split: str  # "train" | "eval"
    arms: list[str]  # which of ARMS train on this row; [] for eval rows
    params: str  # JSON object: per-row corruption / interference parameters


_TEXT_PART = {"type": datasets.Value("string"), "text": datasets.Value("string")}
FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "prompt": datasets.List({"role": datasets.Value("string"), "content": datasets.List(_TEXT_PART)}),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "choices": datasets.List(datasets.Value("string")),
        "task": datasets.Value("string"),
        "condition": datasets.Value("string"),
        "corruption": datasets.Value("string"),
        "severity": datasets.Value("float32"),
        "answerable": datasets.Value("bool"),
        "target": datasets.Value("string"),
        "source_id": datasets.Value("string"),
        "split": datasets.Value("string"),
        "arms": datasets.List(datasets.Value("string")),
        "params": datasets.Value("string"),
    }
)
COLUMNS = tuple(FEATURES)


def _fail(where: str, index: int | None, column: str, problem: str) -> None:
    row = f"row {index}, " if index is not None else ""
    raise ValueError(
        f"{where}: {row}column {column!r}: {problem}. The data does not follow the contract in docs/data.md; "
        "rebuild it with `python -m data_builders build` or fix the producer."
    )


def _check_row(row: dict[str, Any], index: int | None, where: str) -> None:
    for column, kind in (("question", str), ("answer", str), ("task", str), ("corruption", str),
                         ("source_id", str), ("params", str), ("condition", str), ("target", str), ("split", str)):
        if not isinstance(row[column], kind):
            _fail(where, index, column, f"expected {kind.__name__}, got {type(row[column]).__name__}")
    if not row["question"].strip():
        _fail(where, index, "question", "empty question")
    answer = row["answer"]
    if not answer or answer != answer.strip().lower():
        _fail(where, index, "answer", f"{answer!r} must be a non-empty, stripped, lowercase string")
    if not row["source_id"]:
        _fail(where, index, "source_id", "empty source id")
    if row["condition"] not in CONDITIONS:
        _fail(where, index, "condition", f"{row['condition']!r} is not one of {list(CONDITIONS)}")
    if row["split"] not in SPLITS:
        _fail(where, index, "split", f"{row['split']!r} is not one of {list(SPLITS)}")
    if row["target"] not in TARGETS:
        _fail(where, index, "target", f"{row['target']!r} is not one of {list(TARGETS)}")
    if not isinstance(row["answerable"], bool):
        _fail(where, index, "answerable", f"expected bool, got {type(row['answerable']).__name__}")
    if (row["target"] == "abstain") == row["answerable"]:
        _fail(where, index, "target", f"target={row['target']!r} but answerable={row['answerable']} "
              "(the target is 'abstain' exactly when the row is not answerable)")
    severity = row["severity"]
    if not isinstance(severity, (int, float)) or not math.isfinite(severity) or not 0.0 <= severity <= 1.0:
        _fail(where, index, "severity", f"{severity!r} is not a number in [0, 1]")
    if row["condition"] == "normal" and (row["corruption"] or severity != 0.0):
        _fail(where, index, "corruption", "normal rows have corruption '' and severity 0.0")
    if row["condition"] != "normal" and not row["corruption"]:
        _fail(where, index, "corruption", f"a {row['condition']} row must name its corruption")
    for column in ("choices", "arms"):
        if not isinstance(row[column], list) or not all(isinstance(x, str) for x in row[column]):
            _fail(where, index, column, "expected a list of strings")
    unknown = [a for a in row["arms"] if a not in ARMS]
    if unknown:
        _fail(where, index, "arms", f"unknown arm(s) {unknown}; known: {list(ARMS)}")
    if row["split"] == "eval" and row["arms"]:
        _fail(where, index, "arms", "eval rows belong to no arm (expected [])")
    if row["split"] == "train" and not row["arms"]:
        _fail(where, index, "arms", "a train row must belong to at least one arm")
    try:
        params = json.loads(row["params"])
    except json.JSONDecodeError as exc:
        _fail(where, index, "params", f"not valid JSON ({exc})")
    if not isinstance(params, dict):
        _fail(where, index, "params", "must be a JSON object")
    _check_prompt(row["prompt"], index, where)


def _check_prompt(prompt: Any, index: int | None, where: str) -> None:
    ok = (isinstance(prompt, list) and len(prompt) >= 1 and isinstance(prompt[0], dict)
          and prompt[0].get("role") == "user" and isinstance(prompt[0].get("content"), list))
    if not ok:
        _fail(where, index, "prompt", "expected [{'role': 'user', 'content': [...]}]")
    types = [part.get("type") for part in prompt[0]["content"]]
    if types.count("image") != 1 or "text" not in types:
        _fail(where, index, "prompt", f"the user turn needs exactly one image part and a text part, got {types}")
    if not prompt_text(prompt).strip():
        _fail(where, index, "prompt", "empty prompt text")


def _image_present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, dict):
        return bool(value.get("bytes")) or bool(value.get("path"))
    return hasattr(value, "size")  # a PIL image


def _missing_images(column: pa.ChunkedArray) -> int | None:
    """Index of the first row without image bytes or path (checked in Arrow, without copying bytes)."""
    if len(column) == 0:
        return None
    images = column.combine_chunks()
    has_bytes = pc.fill_null(pc.greater(pc.binary_length(images.field("bytes")), 0), False)
    has_path = pc.fill_null(pc.greater(pc.utf8_length(images.field("path")), 0), False)
    present = pc.and_(pc.or_(has_bytes, has_path), pc.is_valid(images))
    bad = pc.indices_nonzero(pc.invert(present))
    return int(bad[0].as_py()) if len(bad) else None


def validate(data: datasets.Dataset | datasets.DatasetDict | dict[str, Any], where: str) -> None:
    """Check the data contract; raise ``ValueError`` naming ``where``, the row index and the column.

    Accepts a ``DatasetDict`` (every split), a ``Dataset``, a dict of columns (lists) or one row (a dict).

    Example:
        >>> validate(load_from_disk("data/tiny"), where="data/tiny")  # doctest: +SKIP
    """
    if isinstance(data, datasets.DatasetDict):
        for split, ds in data.items():
            validate(ds, f"{where} [split {split!r}]")
        return
    if isinstance(data, datasets.Dataset):
        columns = data.column_names
        missing = [c for c in COLUMNS if c not in columns]
        if missing:
            _fail(where, None, missing[0], f"missing column(s) {missing}; present: {columns}")
        if not isinstance(data.features["image"], datasets.Image):
            _fail(where, None, "image", f"expected an HF Image feature, got {data.features['image']!r}")
        table = data.with_format("arrow")[:]  # applies any indices mapping, decodes nothing
        missing_image = _missing_images(table.column("image"))
        if missing_image is not None:
            _fail(where, missing_image, "image", "no image (use a blank image for 'no image')")
        rest = table.select([c for c in COLUMNS if c != "image"]).to_pylist()
        for i, row in enumerate(rest):
            _check_row(row, i, where)
        return
    if not isinstance(data, dict):
        raise TypeError(f"{where}: validate() takes a Dataset, DatasetDict or dict, got {type(data).__name__}")
    missing = [c for c in COLUMNS if c not in data]
    if missing:
        _fail(where, None, missing[0], f"missing column(s) {missing}; present: {sorted(data)}")
    if isinstance(data["question"], str):  # a single row
        if not _image_present(data["image"]):
            _fail(where, None, "image", "no image (use a blank image for 'no image')")
        _check_row(data, None, where)
        return
    lengths = {c: len(data[c]) for c in COLUMNS}
    if len(set(lengths.values())) != 1:
        _fail(where, None, "*", f"columns have different lengths: {lengths}")
    for i in range(lengths["question"]):
        row = {c: data[c][i] for c in COLUMNS}
        if not _image_present(row["image"]):
            _fail(where, i, "image", "no image (use a blank image for 'no image')")
        _check_row(row, i, where)


def load_built(path: str | os.PathLike, split: str, arm: str | None = None) -> datasets.Dataset:
    """Load one split of a built dataset, validate it, and keep the rows of ``arm`` when given.

    Args:
        path: the folder written by ``python -m data_builders build --out PATH``.
        split: ``"train"`` or ``"eval"``.
        arm: one of ``ARMS`` to keep only the train rows that arm trains on; ``None`` keeps every row.

    Returns:
        The validated ``datasets.Dataset`` (images decode to PIL on access).
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"no built dataset at {path!r}; build one with "
            f"`python -m data_builders build --config recipes/tiny/data.yaml --out {path}`"
        )
    if arm is not None and arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; available arms: {list(ARMS)}")
    try:
        built = datasets.load_from_disk(path)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path!r} is not a dataset saved by data_builders ({exc})") from exc
    if not isinstance(built, datasets.DatasetDict):
        raise TypeError(f"{path!r} holds a single Dataset; a built dataset is a DatasetDict with splits {SPLITS}")
    if split not in built:
        raise KeyError(f"split {split!r} not in {path!r}; available splits: {sorted(built)}")
    ds = built[split]
    validate(ds, f"{path} [split {split!r}]")
    if arm is None:
        return ds
    if split != "train":
        raise ValueError(f"arm={arm!r} was given for split {split!r}; only train rows belong to arms "
                         "(load the eval split without an arm)")
    arms_column = ds.with_format("arrow")[:].column("arms").to_pylist()
    keep = [i for i, arms in enumerate(arms_column) if arm in arms]
    # keep_in_memory: never write filter/index cache files into the built folder.
    return ds.select(keep, keep_in_memory=True)

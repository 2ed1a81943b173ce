"""The data contract: constants, FEATURES, validate() and load_built() (fast: one small synthetic build)."""

import datasets
import pytest
from PIL import Image

from data_builders.build import build
from data_builders.contract import (
    ABSTAIN_TEXT,
    ARMS,
    COLUMNS,
    CONDITIONS,
    FEATURES,
    load_built,
    make_prompt,
    validate,
)

SMALL = {"train_sources": 12, "eval_sources": 4}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("contract") / "data"
    build(SMALL, out)
    return out


def good_row(**changes):
    row = {"image": Image.new("RGB", (8, 8)), "prompt": make_prompt("What color is the circle?"),
           "question": "What color is the circle?", "answer": "red", "choices": [], "task": "color",
           "condition": "normal", "corruption": "", "severity": 0.0, "answerable": True, "target": "answer",
           "source_id": "s0", "split": "train", "arms": ["standard"], "params": "{}"}
    row.update(changes)
    return row


def test_fixed_names():
    assert ABSTAIN_TEXT == "cannot tell"
    assert CONDITIONS == ("normal", "corrupted", "mismatched", "text_interference")
    assert ARMS == ("standard", "hallucination", "mixed")
    assert list(FEATURES) == list(COLUMNS) == ["image", "prompt", "question", "answer", "choices", "task",
                                               "condition", "corruption", "severity", "answerable", "target",
                                               "source_id", "split", "arms", "params"]
    assert isinstance(FEATURES["image"], datasets.Image)


def test_prompt_is_conversational_with_one_image():
    prompt = make_prompt("Q?")
    assert prompt == [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "Q?"}]}]


def test_valid_row_and_columns_pass():
    validate(good_row(), "mem")
    columns = {k: [v, v] for k, v in good_row().items()}
    validate(columns, "mem")


@pytest.mark.parametrize("changes, column, words", [
    ({"condition": "weird"}, "condition", "not one of"),
    ({"target": "abstain"}, "target", "answerable=True"),
    ({"answerable": False}, "target", "answerable=False"),
    ({"image": None}, "image", "no image"),
    ({"answer": "Red"}, "answer", "lowercase"),
    ({"arms": ["std"]}, "arms", "unknown arm"),
    ({"split": "eval"}, "arms", "eval rows belong to no arm"),
    ({"arms": []}, "arms", "at least one arm"),
    ({"params": "{oops"}, "params", "not valid JSON"),
    ({"severity": 1.5}, "severity", "[0, 1]"),
    ({"corruption": "blur"}, "corruption", "normal rows"),
    ({"condition": "corrupted"}, "corruption", "must name its corruption"),
    ({"prompt": [{"role": "user", "content": [{"type": "text", "text": "q"}]}]}, "prompt", "exactly one image"),
])
def test_bad_row_names_row_column_and_where(changes, column, words):
    columns = {k: [v, v] for k, v in good_row().items()}
    for key, value in changes.items():
        columns[key][1] = value
    with pytest.raises(ValueError) as err:
        validate(columns, "some/path")
    message = str(err.value)
    assert "some/path" in message and "row 1" in message and f"column {column!r}" in message and words in message


def test_missing_column_is_named():
    row = good_row()
    del row["target"]
    with pytest.raises(ValueError, match="missing column.*target"):
        validate(row, "x")


def test_built_dataset_validates_and_loads(built):
    validate(datasets.load_from_disk(str(built)), str(built))
    train = load_built(built, "train")
    evals = load_built(built, "eval")
    assert len(train) == 2 * SMALL["train_sources"]  # one normal + one damaged row per source
    assert all(arms == [] for arms in evals["arms"])
    assert isinstance(evals[0]["image"], Image.Image)
    sizes = {arm: len(load_built(built, "train", arm=arm)) for arm in ARMS}
    assert sizes == dict.fromkeys(ARMS, SMALL["train_sources"])
    assert set(load_built(built, "train", arm="standard")["condition"]) == {"normal"}
    assert "normal" not in set(load_built(built, "train", arm="hallucination")["condition"])


def test_load_built_errors_list_what_exists(built, tmp_path):
    with pytest.raises(FileNotFoundError, match="no built dataset at .*python -m data_builders build"):
        load_built(tmp_path / "nope", "train")
    with pytest.raises(KeyError, match=r"available splits: \['eval', 'train'\]"):
        load_built(built, "test")
    with pytest.raises(ValueError,
                       match=r"unknown arm 'std'; available arms: \['standard', 'hallucination', 'mixed'\]"):
        load_built(built, "train", arm="std")
    with pytest.raises(ValueError, match="only train rows belong to arms"):
        load_built(built, "eval", arm="mixed")


def test_validate_catches_a_bad_saved_dataset(tmp_path):
    rows = [good_row(), good_row(target="abstain")]
    ds = datasets.Dataset.from_list(rows, features=FEATURES)
    with pytest.raises(ValueError, match=r"where: row 1, column 'target'"):
        validate(ds, "where")
    ds = datasets.Dataset.from_list([good_row()], features=FEATURES).remove_columns("params")
    with pytest.raises(ValueError, match="missing column"):
        validate(ds, "where")
    images = datasets.Dataset.from_list([good_row(), good_row()], features=FEATURES)
    table = images.data.table.set_column(0, "image", datasets.Dataset.from_list(
        [good_row(), good_row(image=None)], features=FEATURES).data.table.column("image"))
    with pytest.raises(ValueError, match=r"row 1, column 'image': no image"):
        validate(datasets.Dataset(table, info=images.info), "where")

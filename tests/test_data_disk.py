"""On-disk ("foreign") sources: every format, the column map, the rules, and every kind of bad input."""

import io
import json
import pickle

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_builders.build import build, load_config
from data_builders.contract import load_built
from data_builders.sources.base import BadRow
from data_builders.sources.disk import DiskSource

COLORS = ["red", "green", "blue", "yellow", "red", "green", "blue", "yellow"]


def png(color="red", size=(32, 24), mode="RGB"):
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_rows(folder, rows=None, name="data.jsonl"):
    """JSONL with relative image paths: row i shows colour COLORS[i]."""
    folder.mkdir(parents=True, exist_ok=True)
    if rows is None:
        rows = []
        for i, color in enumerate(COLORS):
            (folder / f"img{i}.png").write_bytes(png(color))
            rows.append({"img": f"img{i}.png", "q": f"What color is the big square {i}?", "a": color.upper()})
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / name


def cfg(path, on_bad_row="error", eval_sources=2, **disk):
    disk.setdefault("columns", {"image": "img", "question": "q", "answer": "a"})
    return {"source": "disk", "eval_sources": eval_sources, "train_sources": None, "on_bad_row": on_bad_row,
            "disk": {"path": str(path), **disk}}


def test_jsonl_build_labels_follow_the_rules(tmp_path):
    data = write_rows(tmp_path / "in")
    manifest = build(cfg(data), tmp_path / "out")
    train, evals = load_built(tmp_path / "out", "train"), load_built(tmp_path / "out", "eval")
    assert len(train) == 2 * 6 and set(evals["task"]) == {"foreign"}
    assert set(evals["answer"]) <= {"red", "green", "blue", "yellow"}  # lowercased
    rows = {(c, round(s, 2)): (a, t) for c, s, a, t in zip(evals["corruption"], evals["severity"],
                                                          evals["answerable"], evals["target"])}
    assert rows[("blur", 0.15)] == (True, "answer") and rows[("blur", 1.0)] == (False, "abstain")
    assert rows[("thumbnail", 0.5)] == (False, "abstain") and rows[("noise", 0.3)] == (True, "answer")
    assert rows[("occlude_key", 1.0)][0] is False and rows[("blank", 1.0)][0] is False
    assert rows[("irrelevant", 1.0)][0] is False and rows[("swap", 1.0)][0] is False
    assert rows[("misleading_hint", 1.0)] == (True, "answer") and rows[("remove_descriptors", 1.0)][0] is False
    shown = [p[0]["content"][1]["text"]
             for p, c in zip(evals["prompt"], evals["corruption"]) if c == "remove_descriptors"]
    assert all("big" not in text for text in shown)
    assert manifest["counts"]["eval"]["rows"] == len(evals)


def test_mismatched_donor_has_another_answer_and_box_is_used(tmp_path):
    data = write_rows(tmp_path / "in")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for row in rows:
        row["box"] = [4, 4, 20, 12]
    write_rows(tmp_path / "in", rows)
    source = DiskSource(load_config(cfg(data, columns={"image": "img", "question": "q", "answer": "a", "box": "box"})))
    for split in ("train", "eval"):
        for i in range(len(source.ids(split))):
            item = source.item(split, i)
            assert item.key_box == (4, 4, 20, 12) and item.image.mode == "RGB"
            _, answerable, _, params = source.mismatched(item)
            donor = source.item(split, source.ids(split).index(params["donor"]))
            assert params["donor"] != item.source_id and donor.answer != item.answer and not answerable


@pytest.mark.parametrize("fmt", ["parquet", "json_list", "csv", "imagefolder", "load_from_disk", "dataset_dict"])
def test_every_format_reads(tmp_path, fmt):
    write_rows(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "data.jsonl").read_text().splitlines()]
    columns = {"image": "img", "question": "q", "answer": "a"}
    extra = {}
    if fmt == "parquet":  # image bytes inside the file
        table = pa.Table.from_pylist([{**r, "img": (tmp_path / r["img"]).read_bytes()} for r in rows])
        pq.write_table(table, tmp_path / "d.parquet")
        path = tmp_path / "d.parquet"
    elif fmt == "json_list":
        (tmp_path / "d.json").write_text(json.dumps(rows))
        path = tmp_path / "d.json"
    elif fmt == "csv":
        (tmp_path / "d.csv").write_text("img,q,a\n" + "".join(f"{r['img']},{r['q']},{r['a']}\n" for r in rows))
        path = tmp_path / "d.csv"
    elif fmt == "imagefolder":
        (tmp_path / "metadata.jsonl").write_text("".join(
            json.dumps({"file_name": r["img"], "question": r["q"], "answer": r["a"]}) + "\n" for r in rows))
        path, columns = tmp_path, {"image": "image", "question": "question", "answer": "answer"}
    else:
        ds = datasets.Dataset.from_dict({"image": [Image.open(tmp_path / r["img"]) for r in rows],
                                         "question": [r["q"] for r in rows], "answer": [r["a"] for r in rows]},
                                        features=datasets.Features({"image": datasets.Image(),
                                                                    "question": datasets.Value("string"),
                                                                    "answer": datasets.Value("string")}))
        path, columns = tmp_path / "saved", {"image": "image", "question": "question", "answer": "answer"}
        if fmt == "dataset_dict":
            datasets.DatasetDict({"validation": ds}).save_to_disk(str(path))
            extra = {"split": "validation"}
        else:
            ds.save_to_disk(str(path))
    source = DiskSource(load_config(cfg(path, columns=columns, **extra)))
    item = source.item("eval", 0)
    row = int(item.source_id.split("-")[1])
    assert item.image.mode == "RGB" and item.image.size == (32, 24)
    assert item.answer == COLORS[row] and item.question.endswith(f"{row}?")
    assert np.asarray(item.image)[0, 0].tolist() == list(Image.new("RGB", (1, 1), COLORS[row]).getpixel((0, 0)))


def test_dataset_dict_split_errors_list_splits(tmp_path):
    datasets.DatasetDict({"a": datasets.Dataset.from_dict({"x": [1]}), "b": datasets.Dataset.from_dict({"x": [1]})}
                         ).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ValueError, match=r"split None not found; set disk.split to one of \['a', 'b'\]"):
        DiskSource(load_config(cfg(tmp_path / "dd")))


def test_missing_column_empty_dataset_duplicate_ids(tmp_path):
    data = write_rows(tmp_path / "in")
    with pytest.raises(ValueError, match=r"column 'answer' \(disk.columns.answer\) not found; available columns: "):
        DiskSource(load_config(cfg(data, columns={"image": "img", "question": "q", "answer": "answer"})))
    empty = write_rows(tmp_path / "empty", rows=[], name="e.jsonl")
    with pytest.raises(ValueError, match=r"e\.jsonl: the dataset is empty \(0 rows\)"):
        DiskSource(load_config(cfg(empty)))
    pq.write_table(pa.table({"img": pa.array([], pa.string()), "q": pa.array([], pa.string()),
                             "a": pa.array([], pa.string())}), tmp_path / "e.parquet")
    with pytest.raises(ValueError, match=r"e\.parquet: the dataset is empty \(0 rows\)"):
        DiskSource(load_config(cfg(tmp_path / "e.parquet")))
    rows = [{"img": "img0.png", "q": "q?", "a": "x", "id": "same"}] * 3
    dup = write_rows(tmp_path / "in", rows=rows, name="dup.jsonl")
    with pytest.raises(ValueError, match="duplicate id 'same' in rows 0 and 1"):
        DiskSource(load_config(cfg(dup, columns={"image": "img", "question": "q", "answer": "a", "id": "id"})))


def bad_image_cases(folder):
    good = png()
    big = Image.new("RGB", (300, 200), "red")
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    return {
        "truncated": (good[: len(good) // 2], "corrupt or truncated"),
        "not_an_image": (b"%PDF-1.4 definitely not an image", "not an image file"),
        "empty_file": (b"", "empty image bytes"),
        "one_pixel": (png(size=(1, 1)), "a side is below min_side=8"),
        "too_many_pixels": (buffer.getvalue(), "more than max_pixels=50000"),
    }


@pytest.mark.parametrize("case", ["truncated", "not_an_image", "empty_file", "one_pixel", "too_many_pixels", "missing"])
def test_bad_images_name_row_field_and_file(tmp_path, case):
    data = write_rows(tmp_path)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    if case == "missing":
        rows[3]["img"] = "nope.png"
        words = "cannot read image file"
    else:
        content, words = bad_image_cases(tmp_path)[case]
        (tmp_path / "bad.png").write_bytes(content)
        rows[3]["img"] = "bad.png"
    write_rows(tmp_path, rows)
    config = cfg(data, max_pixels=50_000)
    with pytest.raises(BadRow) as err:
        build(config, tmp_path / "out")
    message = str(err.value)
    assert "row 3 (id row-3)" in message and "field 'img'" in message and words in message
    assert "on_bad_row: skip" in message
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))  # nothing half-written
    manifest = build({**config, "on_bad_row": "skip"}, tmp_path / "out")
    assert manifest["skipped"]["count"] == 1 and manifest["skipped"]["rows"][0]["row"] == "3 (id row-3)"
    assert list(manifest["skipped"]["by_reason"].values()) == [1]
    ids = {sid for split in ("train", "eval") for sid in load_built(tmp_path / "out", split)["source_id"]}
    assert "row-3" not in ids and len(ids) == 7


def test_a_bad_row_met_in_a_worker_process_raises_there_too(tmp_path):
    # BadRow travels back from the worker pickled: it must arrive whole (a pool that cannot unpickle a worker's
    # exception hangs). The round trip first, so a regression fails here instead of hanging the build below.
    err = BadRow("3 (id row-3)", "img", "corrupt", file="data.jsonl")
    again = pickle.loads(pickle.dumps(err))  # our own object, made just above
    assert str(again) == str(err) and again.record() == err.record()
    data = write_rows(tmp_path)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[3]["img"] = "nope.png"
    write_rows(tmp_path, rows)
    with pytest.raises(BadRow, match=r"row 3 \(id row-3\), field 'img'.*cannot read image file"):
        build(cfg(data), tmp_path / "out", num_proc=2)
    assert not (tmp_path / "out").exists()
    skipping = cfg(data, on_bad_row="skip")
    alone, shared = build(skipping, tmp_path / "alone"), build(skipping, tmp_path / "shared", num_proc=2)
    assert shared["skipped"] == alone["skipped"] and shared["skipped"]["count"] == 1
    assert shared["fingerprint"] == alone["fingerprint"]


def image_bytes(image, fmt="PNG"):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("name, image, fmt, pixel", [
    ("cmyk", Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", (255, 0, 0)),
    ("gray16", Image.fromarray(np.full((16, 16), 65535, np.uint16)), "PNG", (255, 255, 255)),
    ("palette", Image.new("RGB", (16, 16), (0, 0, 255)).convert("P"), "PNG", (0, 0, 255)),
    ("rgba_transparent", Image.new("RGBA", (16, 16), (255, 0, 0, 0)), "PNG", (255, 255, 255)),
    ("rgba_opaque", Image.new("RGBA", (16, 16), (255, 0, 0, 255)), "PNG", (255, 0, 0)),
    ("gray", Image.new("L", (16, 16), 77), "PNG", (77, 77, 77)),
    ("gray_alpha", Image.new("LA", (16, 16), (0, 255)), "PNG", (0, 0, 0)),
    ("one_bit", Image.new("1", (16, 16), 1), "PNG", (255, 255, 255)),
])
def test_image_modes_become_rgb(tmp_path, name, image, fmt, pixel):
    data = write_rows(tmp_path)
    (tmp_path / "img0.png").write_bytes(image_bytes(image, fmt))
    source = DiskSource(load_config(cfg(data)))
    split = "eval" if "row-0" in source.ids("eval") else "train"
    item = source.item(split, source.ids(split).index("row-0"))
    assert item.image.mode == "RGB" and item.image.size == (16, 16)
    assert np.abs(np.asarray(item.image, int)[8, 8] - np.array(pixel)).max() <= 3


def test_large_images_are_downscaled_with_their_box(tmp_path):
    data = write_rows(tmp_path)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    (tmp_path / "wide.png").write_bytes(png(size=(2000, 100)))
    for row in rows:
        row["img"], row["box"] = "wide.png", [1000, 0, 2000, 100]
    write_rows(tmp_path, rows)
    source = DiskSource(load_config(cfg(data, max_side=256, columns={"image": "img", "question": "q", "answer": "a",
                                                                     "box": "box"})))
    item = source.item("eval", 0)
    assert item.image.size == (256, 13) and item.key_box == (128, 0, 256, 13)


def test_hint_prefers_choices(tmp_path):
    rows = [{"img": f"img{i}.png", "q": f"Which one {i}?", "a": "B", "ch": ["A", "B"]} for i in range(8)]
    for i in range(8):
        (tmp_path / f"img{i}.png").write_bytes(png())
    data = write_rows(tmp_path, rows)
    columns = {"image": "img", "question": "q", "answer": "a", "choices": "ch"}
    source = DiskSource(load_config(cfg(data, columns=columns)))
    item = source.item("eval", 0)
    assert item.choices == ["a", "b"] and source.hint(item) == ("a", True, "disk.rules.misleading_hint = true")


def test_hub_id_goes_through_load_dataset(tmp_path, monkeypatch):
    """Offline stand-in for a hub dataset: the hub path calls datasets.load_dataset and picks the split."""
    rows = {"image": [png(c) for c in COLORS], "question": [f"Color {i}?" for i in range(8)], "answer": COLORS}
    calls = []

    def fake_load_dataset(path, **kwargs):
        calls.append(path)
        return datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    config = {"source": "disk", "eval_sources": 2, "train_sources": None,
              "disk": {"path": "someone/vqa", "format": "hub", "split": "test"}}
    source = DiskSource(load_config(config))
    assert calls == ["someone/vqa"] and source.item("eval", 0).image.mode == "RGB"

"""Data config: the tiny recipe is the embedded default; bad keys and values fail with the key named."""

import pytest

from data_builders.build import load_config
from data_builders.config import DataConfig

RECIPE = "recipes/tiny/data.yaml"


def test_tiny_recipe_is_the_embedded_default():
    assert load_config(RECIPE) == load_config(None) == DataConfig()
    cfg = load_config(RECIPE)
    assert cfg.synthetic.image_size == 64 and cfg.synthetic.max_objects == 1
    assert cfg.mixed_damaged_ratio == 0.5
    assert '"cannot tell"' in cfg.instruction and "{question}" in cfg.instruction


@pytest.mark.parametrize("config, words", [
    ({"seeed": 1}, "unknown key 'seeed'; did you mean 'seed'?"),
    ({"synthetic": {"colrs": {}}}, "unknown key 'synthetic.colrs'; did you mean 'colors'?"),
    ({"corruptions": {"blurr": [0.5]}}, "unknown key 'corruptions.blurr'; did you mean 'blur'?"),
    ({"corruptions": {"blur": [1.5]}}, "corruptions.blur': severity 1.5 of corruption 'blur' is out of range"),
    ({"corruptions": {"blur": [0.0]}}, "out of range: use a number in (0, 1]"),
    ({"corruptions": {"noise": ["high"]}}, "severity 'high'"),
    ({"corruptions": {"blur": []}}, "give a non-empty list"),
    ({"corruptions": {"blank": [0.5]}}, "not graded"),
    ({"text_interference": ["hint"]}, "unknown key 'text_interference.hint'"),
    ({"on_bad_row": "ignore"}, "key 'on_bad_row'"),
    ({"mixed_damaged_ratio": 2}, "key 'mixed_damaged_ratio': must be in [0, 1]"),
    ({"synthetic": {"task_weights": {"colour": 1}}}, "did you mean 'color'?"),
    ({"synthetic": {"shapes": ["circle", "hexagon"]}}, "unknown shape 'hexagon'"),
    ({"synthetic": {"max_objects": 1, "task_weights": {"size": 1}}}, "max_objects must be >= 2"),
    ({"synthetic": {"object_size": [0.5, 0.2]}}, "synthetic.object_size"),
    ({"synthetic": {"colors": {"red": [300, 0, 0], "blue": [0, 0, 255]}}}, "synthetic.colors.red"),
    ({"source": "disk"}, "key 'disk': source is disk but no disk: section"),
    ({"source": "disk", "disk": {"path": "x.jsonl", "columns": {"imag": "img"}}}, "did you mean 'image'?"),
    ({"source": "disk", "disk": {"path": "x.jsonl", "rules": {"blur": "yes"}}}, "disk.rules.blur"),
    ({"instruction": "Answer briefly."}, "must contain {question}"),
    ({"blank_color": [255, 255, 255]}, "must differ from synthetic.background"),
])
def test_bad_config_names_the_key(config, words):
    with pytest.raises(ValueError) as err:
        load_config(config)
    assert words in str(err.value)
    assert "<config dict>" in str(err.value)


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"valid keys here: \[.*'seed'.*'synthetic'.*\]"):
        load_config({"sed": 0})


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: not valid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("train_source: 10\n")
    with pytest.raises(ValueError, match=r"typo\.yaml: unknown key 'train_source'; did you mean 'train_sources'"):
        load_config(typo)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_partial_maps_keep_defaults():
    cfg = load_config({"source": "disk", "disk": {"path": "d.jsonl", "columns": {"image": "img"},
                                                  "rules": {"blur": 0.5}}})
    assert cfg.disk.columns["image"] == "img" and cfg.disk.columns["question"] == "question"
    assert cfg.disk.rules["blur"] == 0.5 and cfg.disk.rules["occlude_key"] is False

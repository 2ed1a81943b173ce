"""Recipe lint: every data and ablation recipe in the tree loads with the real loaders."""

from pathlib import Path

import pytest
import yaml

from data_builders.config import load_config
from rlkit.ablation import load_ablation

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("recipe", sorted(ROOT.glob("recipes/**/data.yaml")), ids=lambda p: p.parent.name)
def test_data_recipes_load(recipe):
    config = load_config(recipe)
    assert config.eval_sources >= 1


@pytest.mark.parametrize("recipe", sorted(ROOT.glob("recipes/**/ablation.yaml")), ids=lambda p: p.parent.name)
def test_ablation_recipes_load(recipe, monkeypatch):
    monkeypatch.chdir(ROOT)  # recipe paths are relative to the repository root, like every command in the README
    config = load_ablation(recipe)
    assert len(config.seeds) >= 3 and set(config.arms) == {"standard", "hallucination", "mixed"}
    assert set(config.rewards) == {"accuracy", "groundedness"}


def test_ablation_recipe_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    base = yaml.safe_load((ROOT / "recipes/tiny/ablation.yaml").read_text())
    cases = [
        ({"seedz": [1]}, "unknown key"),
        ({"arms": ["standard", "imagined"]}, "unknown arm 'imagined'"),
        ({"rewards": ["acuracy"]}, "unknown reward 'acuracy'"),
        ({"seeds": [0, 0, 1]}, "distinct"),
        ({"base_model": "Qwen/Qwen2.5-VL-3B-Instruct"}, "exactly one of sft_recipe"),
        ({"eval": {"batch_sise": 3}}, "unknown key"),
        ({"launcher": "slurm"}, "launcher must be"),
    ]
    for change, message in cases:
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**base, **change}))
        with pytest.raises(ValueError, match=message):
            load_ablation(tmp_path / "bad.yaml")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**base, "grpo_recipe": "recipes/tiny/nope.yaml"}))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_ablation(tmp_path / "bad.yaml")

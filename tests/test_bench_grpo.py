"""The GRPO overhead benchmark's machinery on a minimal run (2 steps x 1 round); no timing is asserted."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    """benchmarks/ is not a package: load the script as a module (registered first, as its dataclass needs)."""
    if "bench_grpo_overhead" not in sys.modules:
        path = ROOT / "benchmarks" / "bench_grpo_overhead.py"
        spec = importlib.util.spec_from_file_location("bench_grpo_overhead", path)
        sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules["bench_grpo_overhead"]


def test_both_sides_train_and_report_figures(tmp_path, tiny_qwen):
    bench = _bench()
    data_config = yaml.safe_load((ROOT / "recipes/tiny/data.yaml").read_text())
    data_config.update(train_sources=48, eval_sources=12)  # 48 mixed-arm rows: enough for 2 steps of 4 prompts
    runs = bench.benchmark(steps=2, repeats=1, data_config=data_config, model=str(tiny_qwen), cache_dir=tmp_path)

    assert [(r.side, r.round, r.steps) for r in runs] == [("rlkit", 1, 2), ("plain", 1, 2)]
    for run in runs:
        for value in (run.s_per_step, run.train_runtime, run.wall, run.peak_rss_mib):
            assert math.isfinite(value) and value > 0, run
        assert run.train_runtime < run.wall  # the training loop is a part of the process
        # Each side trained and saved its model into its own run folder.
        assert (tmp_path / "runs" / f"{run.side}-1" / "model" / "config.json").exists()
    ratio = bench.summary(runs)["ratio"]
    assert all(math.isfinite(v) and v > 0 for v in ratio.values())
    # The baseline trains with the recipe's GRPOConfig and model values, without rlkit's own keys.
    recipe = yaml.safe_load((ROOT / "recipes/tiny/grpo_mixed.yaml").read_text())
    plain = yaml.safe_load((tmp_path / "runs" / "plain.yaml").read_text())
    for key in ("per_device_train_batch_size", "num_generations", "max_completion_length", "beta", "seed",
                "freeze_vision_tower"):
        assert plain.get(key) == recipe.get(key), key
    assert "reward_funcs" not in plain and "sft_recipe" not in plain
    assert "| **rlkit / plain** |" in bench.table(runs)


def test_a_recipe_key_the_baseline_lacks_is_an_error(tmp_path):
    bench = _bench()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"use_peft": True, "max_steps": 2}))
    with pytest.raises(ValueError, match="use_peft"):
        bench.commands(str(recipe), tmp_path / "data", tmp_path / "model", 2, tmp_path / "runs")


def test_train_runtime_is_read_from_the_trainer_log():
    bench = _bench()
    log = "INFO loading\n{'loss': '0', 'step': 1}\n{'train_runtime': '12.5', 'train_loss': '0'}\nSaved\n"
    assert bench.train_runtime(log) == 12.5


def test_write_docs_replaces_only_its_own_section(tmp_path):
    bench = _bench()
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n## Data builders\n\nkeep me\n\n## GRPO overhead\n\nold\n\n## Other\n\nme too\n")
    bench.write_docs("new figures", "python benchmarks/bench_grpo_overhead.py", docs)
    text = docs.read_text()
    assert "keep me" in text and "me too" in text and "new figures" in text and "old" not in text
    assert text.index("## Data builders") < text.index("## GRPO overhead") < text.index("## Other")

    docs.write_text("# Benchmarks\n\n## Data builders\n\nkeep me\n")
    bench.write_docs("new figures", "cmd", docs)
    assert docs.read_text().endswith("## GRPO overhead\n\nCommand: `cmd`\n\nnew figures\n")
    assert "keep me" in docs.read_text()

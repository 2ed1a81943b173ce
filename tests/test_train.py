"""Training entry points: recipes parse, accelerate configs load, SFT and GRPO really train the tiny VLM.

GRPO runs go through `accelerate launch` exactly as the README shows, on a small build of the tiny data.
Hyperparameters are minimal (2 steps); the learning rate is the recipe's.
"""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from rlkit.configs import ARMS, DataArguments, RewardArguments, SFTArguments
from rlkit.rewards import get_reward_funcs

ROOT = Path(__file__).resolve().parents[1]
TRAIN_RECIPES = sorted(p for p in ROOT.glob("recipes/**/*.yaml") if p.name.startswith(("sft", "grpo")))
ACCELERATE_CONFIGS = sorted(ROOT.glob("accelerate_configs/*.yaml"))


def _parse(recipe: Path, *extra: str):
    if recipe.name.startswith("sft"):
        from rlkit.train.sft import parse
    else:
        from rlkit.train.grpo import parse
    return parse(["--config", str(recipe), "--output_dir", "/tmp/unused", *extra])


@pytest.mark.parametrize("recipe", TRAIN_RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_training_recipe_parses_with_the_real_parser(recipe):
    # GPU recipes ask for bf16, which transformers refuses to validate on a CPU-only machine.
    parsed = _parse(recipe, *(["--bf16", "false"] if "tiny" not in recipe.parts else []))
    data_args = parsed[0]
    assert isinstance(data_args, DataArguments)
    if recipe.name.startswith("grpo"):
        reward_args = parsed[1]
        assert isinstance(reward_args, RewardArguments)
        funcs = get_reward_funcs(reward_args.reward_funcs, **reward_args.reward_options())
        training_args = parsed[2]
        weights = training_args.reward_weights
        assert weights is None or len(weights) == len(funcs)
    else:
        assert isinstance(parsed[1], SFTArguments)


def test_tiny_recipes_cover_every_arm_and_keep_cpu_defaults_off():
    arms = {yaml.safe_load(p.read_text())["arm"] for p in ROOT.glob("recipes/tiny/grpo_*.yaml")}
    assert arms == set(ARMS)
    for recipe in ROOT.glob("recipes/tiny/*.yaml"):
        config = yaml.safe_load(recipe.read_text())
        if "output_dir" in config:  # a training recipe: TRL's bf16 / checkpointing defaults are slow on CPU
            assert config["bf16"] is False and config["activation_checkpointing"] is False, recipe


def test_unknown_recipe_key_and_bad_values_are_errors(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text((ROOT / "recipes/tiny/grpo_mixed.yaml").read_text() + "\nreward_fucns: [accuracy]\n")
    with pytest.raises(ValueError, match="reward_fucns"):
        _parse(recipe)
    with pytest.raises(ValueError, match="arm must be one of"):
        _parse(ROOT / "recipes/tiny/grpo_mixed.yaml", "--arm", "both")
    with pytest.raises(KeyError, match="did you mean 'accuracy'"):
        args = _parse(ROOT / "recipes/tiny/grpo_mixed.yaml", "--reward_funcs", "acuracy")[1]
        get_reward_funcs(args.reward_funcs, **args.reward_options())


def test_command_line_overrides_the_recipe():
    data_args, reward_args, training_args, _ = _parse(
        ROOT / "recipes/tiny/grpo_mixed.yaml", "--arm", "standard", "--reward_funcs", "accuracy",
        "--answerable_abstain", "-0.25", "--learning_rate", "1e-4",
    )
    assert data_args.arm == "standard" and reward_args.reward_funcs == ["accuracy"]
    assert training_args.learning_rate == 1e-4 and reward_args.answerable_abstain == -0.25
    assert reward_args.reward_options() == {}  # the table only reaches the groundedness reward


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_configs_load(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    assert loaded.num_processes >= 1
    if "zero" in config.name:
        assert loaded.distributed_type.value == "DEEPSPEED"
        assert loaded.deepspeed_config["zero_stage"] == (2 if "zero2" in config.name else 3)


def test_sft_rows_target_the_answer_with_a_seeded_abstain_prior(tiny_data):
    from data_builders.contract import load_built
    from rlkit.train.sft import sft_rows

    train = load_built(tiny_data, "train", arm="standard")
    rows = sft_rows(train, abstain_prior=0.25, seed=0, abstain_text="cannot tell")
    assert rows.column_names == ["image", "prompt", "completion"]
    targets = [r[0]["content"] for r in rows["completion"]]
    abstained = [t == "cannot tell" for t in targets]
    assert 0 < sum(abstained) < len(targets)
    assert all(t == a for t, a, ab in zip(targets, train["answer"], abstained) if not ab)
    again = sft_rows(train, abstain_prior=0.25, seed=0, abstain_text="cannot tell")
    assert [r[0]["content"] for r in again["completion"]] == targets  # deterministic per source_id
    none = sft_rows(train, abstain_prior=0.0, seed=0, abstain_text="cannot tell")
    assert [r[0]["content"] for r in none["completion"]] == list(train["answer"])


def test_sft_abstentions_are_drawn_anew_each_pass(tiny_data):
    """Repeated rows get independent draws, so a model learns a rate of abstaining, not which images abstain."""
    from data_builders.contract import load_built
    from rlkit.train.sft import sft_rows

    train = load_built(tiny_data, "train", arm="standard")
    n, passes = len(train), 8
    rows = sft_rows(train, abstain_prior=0.25, seed=0, abstain_text="cannot tell", passes=passes)
    assert len(rows) == n * passes
    abstained = [r[0]["content"] == "cannot tell" for r in rows["completion"]]
    first = sft_rows(train, abstain_prior=0.25, seed=0, abstain_text="cannot tell")
    assert abstained[:n] == [r[0]["content"] == "cannot tell" for r in first["completion"]]  # pass 0 as before
    per_row = [sum(abstained[k * n + i] for k in range(passes)) for i in range(n)]
    assert all(count < passes for count in per_row)  # no image abstains in every pass
    assert sum(count > 0 for count in per_row) > sum(abstained[:n])  # more images abstain in some pass than in one
    # every copy keeps its own image and prompt
    assert rows[n + 3]["prompt"] == rows[3]["prompt"] and rows[n + 3]["image"] == rows[3]["image"]


def test_sft_passes_follow_max_steps_or_epochs():
    from trl import SFTConfig

    from rlkit.train.sft import passes_over_data

    args = SFTConfig(output_dir="unused", max_steps=400, per_device_train_batch_size=32, report_to="none",
                     bf16=False)
    assert passes_over_data(args, rows=800) == 16
    assert passes_over_data(args, rows=1000) == 13  # 12,800 rows seen: 12.8 passes, rounded up
    args = SFTConfig(output_dir="unused", num_train_epochs=3, per_device_train_batch_size=8, report_to="none",
                     bf16=False)
    assert passes_over_data(args, rows=800) == 3


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "2"}


def _launch(config: str, module: str, recipe: str, *args: str, extra_launch: tuple = ()) -> str:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, *extra_launch,
           "-m", module, "--config", recipe, *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600, check=False)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    return result.stdout + result.stderr


def _logged(output: str) -> list[dict]:
    """The metric dicts the HF Trainer printed."""
    return [ast.literal_eval(m) for m in re.findall(r"\{'loss'[^}]*\}", output)]


@pytest.fixture(scope="module")
def sft_model(tiny_qwen, tiny_data, tmp_path_factory):
    """A few SFT steps on the tiny model: a real base for the GRPO smoke runs."""
    out = tmp_path_factory.mktemp("sft") / "model"
    _launch("accelerate_configs/cpu.yaml", "rlkit.train.sft", "recipes/tiny/sft.yaml",
            "--model_name_or_path", str(tiny_qwen), "--dataset_path", str(tiny_data), "--output_dir", str(out),
            "--max_steps", "3", "--logging_steps", "1", "--per_device_train_batch_size", "8")
    return out


def _had_signal(logs: list[dict]) -> bool:
    """GRPO only moves weights when some group's rewards differ (a zero advantage has no gradient)."""
    return any(float(log["reward_std"]) > 0 for log in logs)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_sft_changes_the_weights(sft_model, tiny_qwen):
    before, after = _weights(tiny_qwen), _weights(sft_model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("lm_head" in k for k in changed)
    # the tiny SFT recipe freezes the vision tower (and Qwen's merger): the language side learns, the tower stays
    assert not any("visual" in k for k in changed) and any("visual" in k for k in before)
    from rlkit.models.load import ModelArguments, load_processor

    processor = load_processor(ModelArguments(model_name_or_path=str(sft_model)))  # saved beside the weights
    assert processor.chat_template and processor.image_processor is not None


def test_a_run_records_its_speed_precision_and_peak_memory(sft_model):
    results = json.loads((sft_model / "train_results.json").read_text())
    state = json.loads((sft_model / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and results["train_runtime"] > 0
    assert results["mixed_precision"] == "no"  # cpu.yaml and the recipe's bf16: false
    assert 0.1 < results["peak_rss_gib"] < 24  # this process's ru_maxrss, in GiB
    assert "peak_gpu_allocated_gib" not in results  # only written when CUDA ran


@pytest.mark.parametrize("arm", ARMS)
@pytest.mark.parametrize("reward", ["accuracy", "groundedness"])
def test_grpo_runs_each_arm_and_reward_from_its_recipe(arm, reward, sft_model, tiny_data, tmp_path):
    out = tmp_path / "grpo"
    output = _launch(
        "accelerate_configs/cpu.yaml", "rlkit.train.grpo", f"recipes/tiny/grpo_{arm}.yaml",
        "--reward_funcs", reward, "--model_name_or_path", str(sft_model), "--dataset_path", str(tiny_data),
        "--output_dir", str(out), "--max_steps", "2", "--logging_steps", "1", "--per_device_train_batch_size", "8",
        "--num_generations", "4",
    )
    logs = _logged(output)
    assert len(logs) == 2
    for log in logs:
        assert f"rewards/{reward}/mean" in log and "grounding/abstain_rate" in log
    before, after = _weights(sft_model), _weights(out)
    changed = any(not torch.equal(before[k], after[k]) for k in before)
    # A 3-step SFT base is rarely right, so the accuracy reward can be 0 for every completion: then TRL must
    # leave the weights alone. Either way, weights move exactly when there was a learning signal.
    assert changed == _had_signal(logs)
    if reward == "groundedness":  # abstentions and answers score differently: there is always signal
        assert changed


def test_grpo_with_lora_trains_only_adapters(sft_model, tiny_data, tmp_path):
    out = tmp_path / "lora"
    output = _launch("accelerate_configs/cpu.yaml", "rlkit.train.grpo", "recipes/tiny/grpo_mixed.yaml",
            "--model_name_or_path", str(sft_model), "--dataset_path", str(tiny_data), "--output_dir", str(out),
            "--max_steps", "1", "--per_device_train_batch_size", "8", "--num_generations", "4",
            "--use_peft", "true", "--lora_r", "4", "--learning_rate", "0.05",  # high lr: adapters start at zero
            "--logging_steps", "1")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(sft_model)
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert adapter and not [k for k in adapter if "visual" in k]
    trained = any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # B starts at zero
    assert trained == _had_signal(_logged(output))


def test_grpo_under_deepspeed_zero2_on_cpu(sft_model, tiny_data, tmp_path):
    out = tmp_path / "zero2"
    _launch("accelerate_configs/zero2.yaml", "rlkit.train.grpo", "recipes/tiny/grpo_mixed.yaml",
            "--model_name_or_path", str(sft_model), "--dataset_path", str(tiny_data), "--output_dir", str(out),
            "--max_steps", "1", "--per_device_train_batch_size", "8", "--num_generations", "4",
            extra_launch=("--cpu", "--num_processes", "1", "--mixed_precision", "no"))
    before, after = _weights(sft_model), _weights(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert json.loads((out / "train_results.json").read_text())["mixed_precision"] == "no"


def test_the_launchers_mixed_precision_wins_over_the_recipes_bf16_false_and_the_run_says_so(sft_model, tiny_data,
                                                                                            tmp_path):
    out = tmp_path / "bf16"
    output = _launch("accelerate_configs/cpu.yaml", "rlkit.train.grpo", "recipes/tiny/grpo_mixed.yaml",
                     "--model_name_or_path", str(sft_model), "--dataset_path", str(tiny_data), "--output_dir", str(out),
                     "--max_steps", "1", "--per_device_train_batch_size", "4", "--num_generations", "4",
                     extra_launch=("--mixed_precision", "bf16"))  # what single_gpu.yaml does on a GPU
    assert "Mixed precision: bf16" in output and "launch with `--mixed_precision no`" in output
    assert json.loads((out / "train_results.json").read_text())["mixed_precision"] == "bf16"


def test_grpo_resumes_from_its_last_checkpoint(sft_model, tiny_data, tmp_path):
    out = tmp_path / "resume"
    common = ("--model_name_or_path", str(sft_model), "--dataset_path", str(tiny_data), "--output_dir", str(out),
              "--per_device_train_batch_size", "8", "--num_generations", "4", "--logging_steps", "1",
              "--save_strategy", "steps", "--save_steps", "2")
    _launch("accelerate_configs/cpu.yaml", "rlkit.train.grpo", "recipes/tiny/grpo_mixed.yaml", *common,
            "--max_steps", "2")
    assert (out / "checkpoint-2").is_dir()
    # The same command with a longer schedule picks up checkpoint-2 by itself and only runs steps 3-4.
    output = _launch("accelerate_configs/cpu.yaml", "rlkit.train.grpo", "recipes/tiny/grpo_mixed.yaml", *common,
                     "--max_steps", "4")
    assert "Resuming from" in output
    assert len(_logged(output)) == 2
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_grpo_recipe_builds_its_missing_inputs_on_first_use(tiny_qwen, tmp_path):
    """A fresh checkout has no data and no SFT base: the GRPO recipe builds both from their recipes."""
    data = yaml.safe_load((ROOT / "recipes/tiny/data.yaml").read_text())
    data.update(train_sources=16, eval_sources=4)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(data))
    sft = yaml.safe_load((ROOT / "recipes/tiny/sft.yaml").read_text())
    sft.update(model_name_or_path=str(tmp_path / "tiny"), dataset_path=str(tmp_path / "data"),
               dataset_recipe=str(tmp_path / "data.yaml"), max_steps=1, per_device_train_batch_size=4)
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(sft))
    grpo = yaml.safe_load((ROOT / "recipes/tiny/grpo_mixed.yaml").read_text())
    grpo.update(model_name_or_path=str(tmp_path / "sft"), sft_recipe=str(tmp_path / "sft.yaml"),
                dataset_path=str(tmp_path / "data"), dataset_recipe=str(tmp_path / "data.yaml"), max_steps=1,
                per_device_train_batch_size=8, num_generations=4, output_dir=str(tmp_path / "grpo"))
    (tmp_path / "grpo.yaml").write_text(yaml.safe_dump(grpo))

    output = _launch("accelerate_configs/cpu.yaml", "rlkit.train.grpo", str(tmp_path / "grpo.yaml"))
    assert "building it from" in output and "running its SFT recipe" in output
    for built in ("data/manifest.json", "tiny/config.json", "sft/model.safetensors", "grpo/model.safetensors"):
        assert (tmp_path / built).exists(), built

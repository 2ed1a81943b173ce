"""The ablation runner end to end on a miniature of the demo: layout, aggregate, skip, resume, refusal, reproducibility.

One arm x one reward x two seeds, a 12-source eval split, a 10-step SFT and 2-step GRPO runs: the same code path as
`make demo` (in-process launcher), small enough for the test suite. Two ablations from the same recipe into two
folders give the reproducibility check; the resume and changed-recipe tests then work on the first one.
"""

import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from rlkit.ablation import Ablation, load_ablation

ROOT = Path(__file__).resolve().parents[1]
RUN_KEYS = ("accuracy_answerable", "abstention_unanswerable", "mirage_rate", "over_abstention", "image_reliance_gap")


def _recipe(tmp: Path, tiny_qwen: Path, name: str, **changes) -> Path:
    data = yaml.safe_load((ROOT / "recipes/tiny/data.yaml").read_text())
    data.update(train_sources=48, eval_sources=12)
    data_path = tmp / "data.yaml"
    data_path.write_text(yaml.safe_dump(data))
    recipe = {
        "name": name,
        "out_dir": str(tmp / name),
        "data_recipe": str(data_path),
        "sft_recipe": str(ROOT / "recipes/tiny/sft.yaml"),
        "grpo_recipe": str(ROOT / "recipes/tiny/grpo_mixed.yaml"),
        "arms": ["mixed"],
        "rewards": ["groundedness"],
        "seeds": [0, 1],
        "launcher": "inprocess",
        "sft_overrides": {"model_name_or_path": str(tiny_qwen), "max_steps": 10, "per_device_train_batch_size": 8,
                          "warmup_steps": 0, "disable_tqdm": True},
        # a checkpoint after every step, so an interrupted run has one to resume from
        "grpo_overrides": {"max_steps": 2, "per_device_train_batch_size": 8, "num_generations": 4,
                           "save_strategy": "steps", "save_steps": 1, "disable_tqdm": True},
        "eval": {"batch_size": 64, "max_new_tokens": 4, "consistency_samples": 2},
        **changes,
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _metrics(run_dir: Path) -> dict:
    overall = json.loads((run_dir / "eval" / "metrics.json").read_text())["overall"]
    return {key: overall[key]["value"] for key in RUN_KEYS}


@pytest.fixture(scope="module")
def ablations(tiny_qwen, tmp_path_factory):
    """The same recipe run twice, into two folders: (first recipe path, first results, second results)."""
    tmp = tmp_path_factory.mktemp("ablation")
    first, second = _recipe(tmp, tiny_qwen, "first"), _recipe(tmp, tiny_qwen, "second")
    return first, Ablation(load_ablation(first)).run(), Ablation(load_ablation(second)).run()


def test_layout_manifests_and_aggregate(ablations):
    _, results, _ = ablations
    out = Path(results["out_dir"])
    for name in ("results.json", "results.md", "results.png", "data/manifest.json", "sft/run.json",
                 "base/eval/metrics.json"):
        assert (out / name).is_file(), name
    for seed in (0, 1):
        run_dir = out / "mixed-groundedness" / f"seed{seed}"
        manifest = json.loads((run_dir / "run.json").read_text())
        assert manifest["status"] == "done"
        assert manifest["data_fingerprint"] == results["data_fingerprint"]
        assert manifest["recipe"]["seed"] == seed and manifest["recipe"]["arm"] == "mixed"
        assert manifest["recipe"]["reward_funcs"] == ["groundedness"]
        assert set(manifest["versions"]) >= {"torch", "transformers", "trl"}
        assert len(manifest["config_hash"]) == 16
        assert (run_dir / "model" / "model.safetensors").is_file()
        assert (run_dir / "eval" / "predictions.jsonl").is_file()
    # the aggregate carries every run: base plus the arm, with both seeds
    stored = json.loads((out / "results.json").read_text())
    assert "base" in json.dumps(stored) and "mixed-groundedness" in json.dumps(stored)
    assert "mixed-groundedness" in (out / "results.md").read_text()
    # abstention per damage: the per-seed values are each run's own metrics, clean images under "normal"
    by_damage = stored["abstention_by_damage"]
    assert set(by_damage) == {"base", "mixed-groundedness"}
    per_seed = [json.loads((out / f"mixed-groundedness/seed{s}/eval/metrics.json").read_text()) for s in (0, 1)]
    assert by_damage["mixed-groundedness"]["normal"]["values"] == [
        m["by_condition"]["normal"]["over_abstention"]["value"] for m in per_seed]
    assert by_damage["mixed-groundedness"]["corrupted/blank"]["values"] == [
        m["by_corruption"]["blank"]["abstention_unanswerable"]["value"] for m in per_seed]
    assert "corrupted/noise" not in by_damage["base"]  # noise keeps the evidence: no unanswerable rows
    assert "Abstention rate per damage" in (out / "results.md").read_text()
    assert (out / "results_by_damage.png").is_file()


def test_same_recipe_and_seed_reproduce_data_and_metrics(ablations):
    _, first, second = ablations
    assert first["data_fingerprint"] == second["data_fingerprint"]
    a, b = Path(first["out_dir"]), Path(second["out_dir"])
    assert _metrics(a / "base") == _metrics(b / "base")
    for seed in (0, 1):
        run = Path("mixed-groundedness") / f"seed{seed}"
        assert _metrics(a / run) == _metrics(b / run)
        completions = [json.loads(line)["completion"] for line in (a / run / "eval/predictions.jsonl").open()]
        assert completions == [json.loads(line)["completion"] for line in (b / run / "eval/predictions.jsonl").open()]
    # different seeds are different runs (else the seed axis would measure nothing)
    seed0 = (a / "mixed-groundedness/seed0/model/model.safetensors").read_bytes()
    assert seed0 != (a / "mixed-groundedness/seed1/model/model.safetensors").read_bytes()


def test_finished_runs_are_skipped(ablations):
    recipe, results, _ = ablations
    out = Path(results["out_dir"])
    watched = [out / "sft/model.safetensors", out / "mixed-groundedness/seed0/model/model.safetensors",
               out / "mixed-groundedness/seed1/eval/metrics.json", out / "base/eval/metrics.json"]
    before = {path: path.stat().st_mtime_ns for path in watched}
    again = Ablation(load_ablation(recipe)).run()
    assert {path: path.stat().st_mtime_ns for path in watched} == before
    assert again["data_fingerprint"] == results["data_fingerprint"]


def test_a_moved_ablation_folder_is_still_finished(ablations, tmp_path):
    recipe, results, _ = ablations
    moved = tmp_path / "moved"
    shutil.copytree(results["out_dir"], moved)
    config = yaml.safe_load(recipe.read_text())
    config["out_dir"] = str(moved)
    (tmp_path / "moved.yaml").write_text(yaml.safe_dump(config))
    watched = [moved / "sft/model.safetensors", moved / "mixed-groundedness/seed1/model/model.safetensors",
               moved / "mixed-groundedness/seed1/eval/metrics.json"]
    before = {path: path.stat().st_mtime_ns for path in watched}
    Ablation(load_ablation(tmp_path / "moved.yaml")).run()  # no "different recipe" refusal, nothing retrained
    assert {path: path.stat().st_mtime_ns for path in watched} == before


def test_interrupted_run_resumes_from_its_last_checkpoint(ablations, caplog):
    recipe, results, _ = ablations
    run_dir = Path(results["out_dir"]) / "mixed-groundedness" / "seed1"
    model = run_dir / "model"
    expected = _metrics(run_dir)
    # What a run killed after its first step leaves: checkpoint-1, no final model, no evaluation, status training.
    shutil.rmtree(model / "checkpoint-2")
    for path in model.iterdir():
        if path.is_file():
            path.unlink()
    shutil.rmtree(run_dir / "eval")
    manifest = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**manifest, "status": "training"}))

    with caplog.at_level(logging.INFO):
        Ablation(load_ablation(recipe)).run()
    assert f"Resuming from {model / 'checkpoint-1'}" in caplog.text
    state = json.loads((model / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert json.loads((run_dir / "run.json").read_text())["status"] == "done"
    assert (run_dir / "eval" / "metrics.json").is_file()
    # Resuming is exact on CPU: the same model, so the same metrics as the uninterrupted run.
    assert _metrics(run_dir) == expected


def test_changed_recipe_is_refused_unless_overwrite(ablations, tiny_qwen):
    recipe, results, _ = ablations
    config = yaml.safe_load(recipe.read_text())
    config["grpo_overrides"]["learning_rate"] = 5.0e-4
    recipe.write_text(yaml.safe_dump(config))
    seed0 = Path(results["out_dir"]) / "mixed-groundedness" / "seed0"
    with pytest.raises(RuntimeError, match=r"seed0 was run with a different recipe.*--overwrite"):
        Ablation(load_ablation(recipe)).run()
    assert json.loads((seed0 / "run.json").read_text())["status"] == "done"  # untouched

    Ablation(load_ablation(recipe), overwrite=True).run()
    manifest = json.loads((seed0 / "run.json").read_text())
    assert manifest["status"] == "done" and manifest["recipe"]["learning_rate"] == 5.0e-4

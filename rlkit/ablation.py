"""The 3-arm ablation: does RL on hallucination-induced data teach the VLM to see, or to guess?

    rlkit ablate --recipe recipes/tiny/ablation.yaml            # what `make demo` runs (~10 min on 2 CPU cores)
    rlkit ablate --recipe recipes/qwen2.5-vl-3b/ablation.yaml   # the same on a real model (GPUs)

Builds the data once, runs the SFT warm start once, evaluates it (the `base` row), then for each
arm (standard / hallucination / mixed) x reward (accuracy / groundedness) x seed: GRPO from the same base and
an evaluation on the same eval split. Layout under `out_dir`:

    data/                            built dataset + manifest.json
    sft/                             the base model (+ run.json)
    base/eval/                       its evaluation
    <arm>-<reward>/seed<k>/          model/, eval/, run.json (recipe, config hash, data fingerprint, versions)
    results.json, results.md, results.png, results_by_damage.png

Resumable: a finished run is skipped, an interrupted one resumes from its last checkpoint, and a run whose
recipe changed is refused unless `--overwrite`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)


@dataclass
class AblationConfig:
    """An ablation recipe (YAML). Paths are relative to the working directory, like every recipe."""

    name: str
    out_dir: str
    data_recipe: str
    grpo_recipe: str
    sft_recipe: str | None = None  # warm start run once (tiny models); None: GRPO starts from base_model
    base_model: str | None = None  # an instruction-tuned VLM (path or hub id) when there is no sft_recipe
    arms: list[str] = field(default_factory=lambda: ["standard", "hallucination", "mixed"])
    rewards: list[str] = field(default_factory=lambda: ["accuracy", "groundedness"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    launcher: str = "inprocess"  # "inprocess" (one CPU process: no start-up cost) or "accelerate"
    accelerate_config: str = "accelerate_configs/cpu.yaml"
    sft_overrides: dict = field(default_factory=dict)  # extra recipe keys for the SFT run
    grpo_overrides: dict = field(default_factory=dict)  # extra recipe keys for every GRPO run
    eval: dict = field(default_factory=dict)  # rlkit.eval.evaluate.EvalSettings fields

    def __post_init__(self):
        from rlkit.configs import ARMS
        from rlkit.eval.evaluate import EvalSettings
        from rlkit.rewards import available_rewards

        for arm in self.arms:
            if arm not in ARMS:
                raise ValueError(f"ablation arms: unknown arm {arm!r}; available: {', '.join(ARMS)}")
        for reward in self.rewards:
            if reward not in available_rewards() and ":" not in reward:
                raise ValueError(f"ablation rewards: unknown reward {reward!r}; "
                                 f"available: {', '.join(available_rewards())}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"ablation seeds must be distinct and non-empty, got {self.seeds}")
        if self.launcher not in ("inprocess", "accelerate"):
            raise ValueError(f"launcher must be 'inprocess' or 'accelerate', got {self.launcher!r}")
        valid = {f.name for f in dataclasses.fields(EvalSettings)}
        unknown = sorted(set(self.eval) - valid)
        if unknown:
            raise ValueError(f"ablation eval: unknown key(s) {unknown}; valid: {', '.join(sorted(valid))}")
        if (self.sft_recipe is None) == (self.base_model is None):
            raise ValueError("ablation: set exactly one of sft_recipe (train a warm start) and base_model")
        for path in (self.data_recipe, self.sft_recipe, self.grpo_recipe):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"ablation recipe names {path}, which does not exist")


def load_ablation(path: str | os.PathLike) -> AblationConfig:
    """Read an ablation YAML; unknown keys are an error that lists the valid ones."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    valid = {f.name for f in dataclasses.fields(AblationConfig)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; valid: {', '.join(sorted(valid))}")
    return AblationConfig(**data)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "transformers", "trl", "peft", "accelerate", "datasets")}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


def _argv(overrides: dict) -> list[str]:
    argv = []
    for key, value in overrides.items():
        if isinstance(value, list):
            argv += [f"--{key}", *map(str, value)]
        else:
            argv += [f"--{key}", "null" if value is None else str(value)]
    return argv


class Ablation:
    """Runs the stages of one ablation recipe; each stage is skipped when its output is already there."""

    def __init__(self, config: AblationConfig, overwrite: bool = False):
        self.cfg, self.overwrite = config, overwrite
        self.out = Path(config.out_dir)
        self.data_dir = self.out / "data"
        # The model every arm starts from, and the `base` row of the results.
        self.base = str(self.out / "sft") if config.sft_recipe else config.base_model

    # -- bookkeeping -------------------------------------------------------------------------------------------

    def _check_or_reset(self, run_dir: Path, config_hash: str) -> bool:
        """True when `run_dir` already finished with this config; refuse a changed one unless overwrite."""
        manifest = run_dir / "run.json"
        if not manifest.exists():
            return False
        done = json.loads(manifest.read_text())
        if done.get("config_hash") != config_hash:
            if not self.overwrite:
                raise RuntimeError(
                    f"{run_dir} was run with a different recipe (config hash {done.get('config_hash')} != "
                    f"{config_hash}). Pass --overwrite to rerun it, or change out_dir."
                )
            logger.warning("Recipe changed for %s: removing it (--overwrite)", run_dir)
            shutil.rmtree(run_dir)
            return False
        return done.get("status") == "done"

    def _portable(self, overrides: dict) -> dict:
        """`overrides` with paths inside `out_dir` written relative to it, so a moved ablation folder still matches."""
        root = str(self.out)
        return {key: "<out_dir>" + value[len(root):]
                if isinstance(value, str) and (value == root or value.startswith(root + os.sep)) else value
                for key, value in overrides.items()}

    def _write_manifest(self, run_dir: Path, **fields) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        record = {"name": self.cfg.name, **fields, "versions": _versions(), "git_commit": _git_commit()}
        tmp = run_dir / "run.json.tmp"
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
        os.replace(tmp, run_dir / "run.json")

    # -- stages ------------------------------------------------------------------------------------------------

    def build_data(self) -> str:
        from data_builders.build import build

        manifest = self.data_dir / "manifest.json"
        recipe = yaml.safe_load(Path(self.cfg.data_recipe).read_text())
        if manifest.exists():
            stored = json.loads(manifest.read_text())
            if stored.get("recipe_hash") == _hash(recipe):
                return stored["fingerprint"]
            if not self.overwrite:
                raise RuntimeError(f"{self.data_dir} was built from a different data recipe; pass --overwrite")
        logger.info("Building the data from %s", self.cfg.data_recipe)
        result = build(self.cfg.data_recipe, str(self.data_dir), overwrite=self.data_dir.exists())
        stored = json.loads(manifest.read_text())
        stored["recipe_hash"] = _hash(recipe)
        manifest.write_text(json.dumps(stored, indent=2) + "\n")
        return result["fingerprint"]

    def _train(self, module: str, recipe: str, overrides: dict) -> None:
        argv = ["--config", recipe, *_argv(overrides)]
        if self.cfg.launcher == "accelerate":
            cmd = ["accelerate", "launch", "--config_file", self.cfg.accelerate_config, "-m", module, *argv]
            subprocess.run(cmd, check=True)
            return
        import importlib

        import torch

        script = importlib.import_module(module)
        script.main(*script.parse(argv))
        torch.set_grad_enabled(True)  # evaluation between runs turns it off in this process

    def run_sft(self, fingerprint: str) -> str:
        """Train the warm start once; returns its config hash (part of every arm's hash)."""
        if self.cfg.sft_recipe is None:
            return _hash(self.base)
        sft_dir = Path(self.base)
        overrides = {**self.cfg.sft_overrides, "output_dir": str(sft_dir), "dataset_path": str(self.data_dir)}
        config_hash = _hash({"recipe": Path(self.cfg.sft_recipe).read_text(), "overrides": self._portable(overrides),
                             "data": fingerprint})
        if self._check_or_reset(sft_dir, config_hash):
            return config_hash
        start = time.perf_counter()
        logger.info("SFT warm start -> %s", sft_dir)
        self._train("rlkit.train.sft", self.cfg.sft_recipe, overrides)
        self._write_manifest(sft_dir, stage="sft", recipe_path=self.cfg.sft_recipe, overrides=overrides,
                             config_hash=config_hash, data_fingerprint=fingerprint, data_dir=str(self.data_dir),
                             status="done", wall_time_s=time.perf_counter() - start)
        return config_hash

    def evaluate(self, model_dir: str | Path, out: Path) -> None:
        from rlkit.eval.evaluate import EvalSettings, evaluate

        if (out / "metrics.json").exists():
            return
        evaluate(str(model_dir), self.data_dir, out, EvalSettings(**self.cfg.eval), overwrite=out.exists())

    def evaluate_base(self, base_hash: str, fingerprint: str) -> None:
        """The `base` row: the model every arm starts from, on the same eval split."""
        run_dir = self.out / "base"
        config_hash = _hash({"base": base_hash, "data": fingerprint, "eval": self.cfg.eval})
        if self._check_or_reset(run_dir, config_hash):
            return
        start = time.perf_counter()
        shutil.rmtree(run_dir / "eval", ignore_errors=True)  # a stale or partial evaluation
        self.evaluate(self.base, run_dir / "eval")
        self._write_manifest(run_dir, stage="base", base_model=self.base, config_hash=config_hash,
                             data_fingerprint=fingerprint, data_dir=str(self.data_dir), status="done",
                             wall_time_s=time.perf_counter() - start)

    def run_arm(self, arm: str, reward: str, seed: int, fingerprint: str, base_hash: str) -> Path:
        run_dir = self.out / f"{arm}-{reward}" / f"seed{seed}"
        overrides = {
            **self.cfg.grpo_overrides, "arm": arm, "reward_funcs": [reward], "seed": seed,
            "output_dir": str(run_dir / "model"), "dataset_path": str(self.data_dir),
            "model_name_or_path": self.base,
        }
        config_hash = _hash({"recipe": Path(self.cfg.grpo_recipe).read_text(), "overrides": self._portable(overrides),
                             "data": fingerprint, "eval": self.cfg.eval, "base": base_hash})
        if self._check_or_reset(run_dir, config_hash):
            return run_dir
        start = time.perf_counter()
        # status "training" until both stages finish: an interrupted run resumes from its last checkpoint.
        self._write_manifest(run_dir, arm=arm, reward=reward, seed=seed, config_hash=config_hash,
                             status="training", recipe_path=self.cfg.grpo_recipe, overrides=overrides)
        model_dir = run_dir / "model"
        if not (model_dir / "config.json").exists() and not (model_dir / "adapter_config.json").exists():
            logger.info("GRPO %s-%s seed %d -> %s", arm, reward, seed, run_dir)
            self._train("rlkit.train.grpo", self.cfg.grpo_recipe, overrides)
        self.evaluate(run_dir / "model", run_dir / "eval")
        recipe = yaml.safe_load(Path(self.cfg.grpo_recipe).read_text())
        self._write_manifest(run_dir, arm=arm, reward=reward, seed=seed, config_hash=config_hash, status="done",
                             recipe_path=self.cfg.grpo_recipe, recipe={**recipe, **overrides}, overrides=overrides,
                             data_fingerprint=fingerprint, data_dir=str(self.data_dir), base_model=self.base,
                             wall_time_s=time.perf_counter() - start)
        return run_dir

    def run(self) -> dict:
        """Every stage, then the aggregate; returns `results.json`'s content."""
        from rlkit.aggregate import aggregate

        start = time.perf_counter()
        fingerprint = self.build_data()
        base_hash = self.run_sft(fingerprint)
        self.evaluate_base(base_hash, fingerprint)
        runs = [(a, r, s) for a in self.cfg.arms for r in self.cfg.rewards for s in self.cfg.seeds]
        for i, (arm, reward, seed) in enumerate(runs, 1):
            logger.info("[%d/%d] %s-%s seed %d", i, len(runs), arm, reward, seed)
            self.run_arm(arm, reward, seed, fingerprint, base_hash)
        results = aggregate(self.out, self.cfg.arms, self.cfg.rewards, self.cfg.seeds)
        results["data_fingerprint"] = fingerprint
        results["out_dir"] = str(self.out)
        results["wall_time_s"] = time.perf_counter() - start
        return results


def main(recipe: str, overwrite: bool = False) -> dict:
    return Ablation(load_ablation(recipe), overwrite=overwrite).run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main(sys.argv[1], overwrite="--overwrite" in sys.argv)

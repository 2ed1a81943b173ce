"""Benchmark rlkit's GRPO entry point against a plain TRL GRPOTrainer script: s/step and peak RSS.

    .venv/bin/python benchmarks/bench_grpo_overhead.py                       # 20 steps x 3 rounds, prints a table
    .venv/bin/python benchmarks/bench_grpo_overhead.py --write-docs          # also updates docs/benchmarks.md
    .venv/bin/python benchmarks/bench_grpo_overhead.py --model runs/tiny/sft # from an SFT'd base instead

Both sides train the same model on the same rows with the same GRPOConfig values (the GRPO keys of `--recipe`),
one reward each: rlkit runs `python -m rlkit.train.grpo --config RECIPE ... --reward_funcs accuracy` as a user
does; the baseline, benchmarks/plain_trl_grpo.py, is TRL alone with an inline exact-match reward. Each run is a
fresh process, and the two alternate (rlkit, plain, rlkit, plain, ...) for `--repeats` rounds so that drift in
the load of a shared machine hits both alike.

What is measured, per process:
- s/step: `train_runtime` / steps. `train_runtime` is the Trainer's own clock, logged at the end of `train()`
  (printed by its PrinterCallback, since both sides run with `disable_tqdm`). It starts after the dataloader and
  model are prepared, just before the first step, and stops after the last, so process start-up, imports,
  dataset loading, model loading, trainer construction and saving are all outside it; the first step's warm-up
  is inside it on both sides. The rlkit entry point has no hook for a callback, hence the log, not a callback.
- peak RSS: `ru_maxrss` of that process from `os.wait4` (the child alone, not a running total of all children).
- wall: the process end to end (start-up, loading and saving included), for scale.

By default both sides train at learning rate 0: every step still generates, scores, computes the loss, runs the
backward pass and the optimizer step, but the weights stay those of the start, so both sides sample from the same
model and do the same work. With a real learning rate the two rewards (rlkit's lenient `accuracy`, the baseline's
exact match) move the models apart and their completion lengths, hence generation time, with them: that measured
the rewards' effect on the policy, not rlkit's overhead (`--learning-rate` restores it).

The summary takes the median over rounds of each side and the ratio rlkit / plain of those medians. Inputs are
built on first use under `--cache-dir` (the tiny data recipe, and by default the untrained embedded tiny
Qwen2.5-VL model: GRPO from it gets zero rewards, but each step does the same generation, reward and backward work).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout: rlkit and data_builders import from it

from benchmarks.docs_section import DOCS, write_section

SECTION = "## GRPO overhead"
GOAL = 1.05
SIDES = ("rlkit", "plain")
ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
       "ACCELERATE_USE_CPU": "true", "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled"}
READING = (
    "How to read it: each row is one fresh process. s/step is the Trainer's own `train_runtime` divided by the "
    "steps: it covers the training loop only (generation, rewards, loss, backward, optimizer step, logging) and "
    "excludes process start-up, imports, data and model loading, and saving; wall is the whole process. Peak RSS "
    "is the process's `ru_maxrss`. The two sides train the same model on the same rows with the same GRPOConfig "
    "values, the recipe's model settings (float32, frozen vision tower) and one reward each, so rlkit / plain is "
    "what rlkit adds on top of TRL: the recipe parser, dataset validation, its reward's answer parsing and "
    "per-condition rate logging, and the model checks. Both train at learning rate 0 by default: every step "
    "still generates, scores, backpropagates and steps the optimizer, but both sides sample from the same fixed "
    "model, so they do the same work (with a real rate the two rewards move the models, and their completion "
    "lengths, apart). The goal is "
    f"rlkit / plain <= {GOAL} for s/step and peak RSS. The time of one run moves with the machine's load; the "
    "summary uses the median of the rounds, and a difference smaller than the spread line below is noise, not a "
    "gain or a loss."
)


@dataclass
class Run:
    """One measured process."""

    side: str
    round: int
    steps: int
    train_runtime: float  # seconds, from the Trainer's log
    wall: float  # seconds, the whole process
    peak_rss_mib: float

    @property
    def s_per_step(self) -> float:
        return self.train_runtime / self.steps


def prepare_inputs(cache_dir: Path, data_config: str | dict, model: str | None) -> tuple[Path, Path]:
    """The built dataset and the model folder, built under ``cache_dir`` when missing (never under runs/)."""
    data = cache_dir / "data"
    if not (data / "manifest.json").exists():
        from data_builders.build import build

        print(f"Building the dataset into {data} (cached for later runs)", flush=True)
        build(data_config, str(data), overwrite=data.exists())
    if model is not None:
        return data, Path(model)
    path = cache_dir / "tiny-qwen2_5_vl"
    if not (path / "config.json").exists():
        from rlkit.models.tiny import make_tiny_model

        print(f"Building the untrained tiny qwen2_5_vl model into {path}", flush=True)
        make_tiny_model("qwen2_5_vl", path, overwrite=path.exists())
    return data, path


# Recipe keys outside GRPOConfig: those the baseline takes as they are, and those that change no per-step work
# (what to build on first use; the rewards, which are replaced by one reward on each side). Any other key is an
# error: a baseline without it would not do the same work.
PLAIN_MODEL_KEYS = ("dtype", "freeze_vision_tower", "max_train_samples")
NOT_PER_STEP = ("model_name_or_path", "dataset_path", "arm", "sft_recipe", "dataset_recipe", "tiny_model_family",
                "reward_funcs", "answerable_correct", "answerable_wrong", "answerable_abstain", "unanswerable_abstain",
                "unanswerable_answer", "overlong_max_tokens")


def commands(recipe: str, data: Path, model: Path, steps: int, work: Path,
             learning_rate: float | None = 0.0) -> dict[str, list[str]]:
    """The command line of each side; the plain side's config holds the recipe's GRPOConfig and model keys."""
    from trl import GRPOConfig

    config = yaml.safe_load(Path(recipe).read_text())
    grpo_keys = {f.name for f in dataclasses.fields(GRPOConfig)}
    unknown = [key for key in config if key not in grpo_keys and key not in PLAIN_MODEL_KEYS + NOT_PER_STEP]
    if unknown:
        raise ValueError(f"{recipe} sets {', '.join(unknown)}, which benchmarks/plain_trl_grpo.py does not do: add "
                         "the same behaviour there (and to PLAIN_MODEL_KEYS) so both sides do the same work")
    plain = {key: value for key, value in config.items() if key in grpo_keys or key in PLAIN_MODEL_KEYS}
    plain.update(model_name_or_path=str(model), dataset_path=str(data), arm=config.get("arm", "mixed"))
    work.mkdir(parents=True, exist_ok=True)
    plain_config = work / "plain.yaml"
    plain_config.write_text(yaml.safe_dump(plain, sort_keys=False))
    overrides = ["--max_steps", str(steps), "--disable_tqdm", "true"]
    if learning_rate is not None:
        overrides += ["--learning_rate", str(learning_rate)]
    return {
        "rlkit": [sys.executable, "-m", "rlkit.train.grpo", "--config", recipe, "--model_name_or_path", str(model),
                  "--dataset_path", str(data), "--reward_funcs", "accuracy", "--arm", plain["arm"], *overrides],
        "plain": [sys.executable, str(ROOT / "benchmarks" / "plain_trl_grpo.py"), "--config", str(plain_config),
                  *overrides],
    }


def train_runtime(log: str) -> float:
    """The `train_runtime` the Trainer printed (PrinterCallback prints each log dict on its own line)."""
    for line in reversed(log.splitlines()):
        if line.startswith("{") and "'train_runtime'" in line:
            return float(ast.literal_eval(line)["train_runtime"])
    raise RuntimeError("no train_runtime in the training log (was disable_tqdm lost?); the log ends:\n" + log[-2000:])


def run_once(side: str, cmd: list[str], out_dir: Path, rnd: int, steps: int) -> Run:
    """Run ``cmd`` in a fresh process with its own ``output_dir``; its peak RSS comes from ``os.wait4``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "log.txt"
    env = {**os.environ, **ENV}
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*cmd, "--output_dir", str(out_dir / "model")], stdout=log,
                                stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen so it does not wait again
    text = log_path.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"{side} run failed (exit {proc.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    rss_mib = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return Run(side, rnd, steps, train_runtime(text), wall, rss_mib)


def benchmark(steps: int = 20, repeats: int = 3, recipe: str = "recipes/tiny/grpo_mixed.yaml",
              data_config: str | dict = "recipes/tiny/data.yaml", model: str | None = None,
              cache_dir: str | os.PathLike = ROOT / ".cache" / "bench" / "grpo_overhead",
              learning_rate: float | None = 0.0) -> list[Run]:
    """Run both sides ``repeats`` times, alternating rlkit and plain; return every run."""
    cache_dir = Path(cache_dir).resolve()
    data, model_path = prepare_inputs(cache_dir, data_config, model)
    cmds = commands(str(Path(recipe).resolve()), data, model_path, steps, cache_dir / "runs", learning_rate)
    runs = []
    for rnd in range(1, repeats + 1):
        for side in SIDES:
            runs.append(run_once(side, cmds[side], cache_dir / "runs" / f"{side}-{rnd}", rnd, steps))
            print(f"round {rnd} {side}: {runs[-1].s_per_step:.3f} s/step, {runs[-1].peak_rss_mib:.0f} MiB peak RSS, "
                  f"{runs[-1].wall:.1f} s wall", flush=True)
    return runs


def summary(runs: list[Run]) -> dict[str, dict[str, float]]:
    """Median over rounds per side, and the ratio rlkit / plain of the medians."""
    out = {}
    for side in SIDES:
        mine = [r for r in runs if r.side == side]
        out[side] = {"s_per_step": statistics.median(r.s_per_step for r in mine),
                     "peak_rss_mib": statistics.median(r.peak_rss_mib for r in mine),
                     "wall": statistics.median(r.wall for r in mine)}
    out["ratio"] = {key: out["rlkit"][key] / out["plain"][key] for key in out["rlkit"]}
    return out


def table(runs: list[Run]) -> str:
    s = summary(runs)
    lines = ["| run | round | s/step | train s | wall s | peak RSS MiB |", "|---|---:|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r.side} | {r.round} | {r.s_per_step:.3f} | {r.train_runtime:.1f} | {r.wall:.1f} | "
                     f"{r.peak_rss_mib:.0f} |")
    lines += ["", f"| median of {len(runs) // 2} | s/step | wall s | peak RSS MiB |", "|---|---:|---:|---:|"]
    for side in SIDES:
        lines.append(f"| {side} | {s[side]['s_per_step']:.3f} | {s[side]['wall']:.1f} | "
                     f"{s[side]['peak_rss_mib']:.0f} |")
    ratio = s["ratio"]
    lines.append(f"| **rlkit / plain** | **{ratio['s_per_step']:.3f}** | {ratio['wall']:.3f} | "
                 f"**{ratio['peak_rss_mib']:.3f}** |")
    spreads = []
    for side in SIDES:
        times = [r.s_per_step for r in runs if r.side == side]
        rss = [r.peak_rss_mib for r in runs if r.side == side]
        spreads.append(f"{side} s/step {min(times):.3f}-{max(times):.3f} (+{max(times) / min(times) - 1:.0%}), "
                       f"peak RSS +{max(rss) / min(rss) - 1:.1%}")
    lines += ["", f"Spread over rounds: {'; '.join(spreads)}."]
    return "\n".join(lines)


def machine() -> str:
    import torch
    import transformers
    import trl

    return (f"{platform.machine()}, {os.cpu_count()} CPUs shared with other jobs, no GPU; Python "
            f"{platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
            f"trl {trl.__version__}.")


def write_docs(text: str, command: str, path: Path = DOCS) -> None:
    """Replace (or append) only this benchmark's section of docs/benchmarks.md."""
    write_section(SECTION, text, command, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/tiny/grpo_mixed.yaml", help="GRPO recipe both sides follow")
    parser.add_argument("--data-config", default="recipes/tiny/data.yaml", help="builds the dataset when missing")
    parser.add_argument("--model", default=None, help="model folder (default: the untrained tiny qwen2_5_vl)")
    parser.add_argument("--steps", type=int, default=20, help="GRPO steps per run (max_steps)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (rlkit, plain)")
    parser.add_argument("--cache-dir", default=str(ROOT / ".cache" / "bench" / "grpo_overhead"),
                        help="inputs and run folders")
    parser.add_argument("--learning-rate", type=float, default=0.0,
                        help="both sides' learning rate (0: the same fixed model on both sides, so the same work)")
    parser.add_argument("--write-docs", action="store_true", help="update the section in docs/benchmarks.md")
    args = parser.parse_args(argv)
    for key, value in ENV.items():
        os.environ.setdefault(key, value)

    runs = benchmark(args.steps, args.repeats, args.recipe, args.data_config, args.model, args.cache_dir,
                     args.learning_rate)
    model = args.model or "the untrained embedded tiny Qwen2.5-VL (`make_tiny_model(\"qwen2_5_vl\")`, ~1 M params)"
    intro = (f"Recipe `{args.recipe}` (its GRPOConfig values on both sides; one reward each: rlkit's `accuracy`, "
             f"an inline exact match in the baseline `benchmarks/plain_trl_grpo.py`), model {model}, data "
             f"`{args.data_config}`, {args.steps} steps per run at learning rate {args.learning_rate:g}, "
             f"{args.repeats} alternating rounds. {machine()}")
    text = table(runs)
    print(text, flush=True)
    ratio = summary(runs)["ratio"]
    verdict = "meets" if max(ratio["s_per_step"], ratio["peak_rss_mib"]) <= GOAL else "misses"
    print(f"rlkit / plain: {ratio['s_per_step']:.3f} s/step, {ratio['peak_rss_mib']:.3f} peak RSS ({verdict} the "
          f"goal <= {GOAL})", flush=True)
    if args.write_docs:
        command = "python benchmarks/bench_grpo_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_docs(f"{intro}\n\n{READING}\n\n{text}", command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())

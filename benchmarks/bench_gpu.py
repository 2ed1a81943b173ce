"""The tiny recipes on one GPU: s/step and peak memory under single_gpu.yaml (fp32, bf16), zero2.yaml and QLoRA.

    python benchmarks/bench_gpu.py                      # on a CUDA machine: every run, then the table
    python benchmarks/bench_gpu.py --write-docs         # also writes the table to docs/gpu.md
    python benchmarks/bench_gpu.py --cpu --steps 2 --sft-steps 2   # a dry run of every launch here, on CPU

Each run is `accelerate launch --config_file accelerate_configs/<config> -m rlkit.train.<sft|grpo> --config
recipes/tiny/<recipe>` as a user types it, in a fresh process: first the SFT warm start (which builds the tiny
data and the tiny model on first use), then GRPO on the mixed arm from that SFT base four ways: float32
(`--mixed_precision no`), the recipe as it is under single_gpu.yaml (whose `mixed_precision: bf16` wins over the
recipe's `bf16: false`: bf16 autocast), DeepSpeed ZeRO-2 (one process, bf16), and QLoRA (nf4 language model, LoRA
r=16, bf16). The figures come from the `train_results.json` each run writes (rlkit/train/prepare.py), the mixed
precision column included, so it says what ran, not what was asked. s/step is the Trainer's `train_runtime` over
the steps (the training loop only: no start-up, loading or saving); peak GPU is `torch.cuda.max_memory_allocated`
/ `max_memory_reserved` of the process (model loading included); wall is the whole process. The reward columns
are GRPO's mean reward at its first and last logged step, to show each run learns, not to compare them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout: rlkit and data_builders import from it

from benchmarks.docs_section import write_section

GPU_DOCS = ROOT / "docs" / "gpu.md"
SECTION = "## Tiny recipes on one GPU"
ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled"}
GRPO = "recipes/tiny/grpo_mixed.yaml"
BF16 = ("--bf16", "true")


@dataclass(frozen=True)
class Spec:
    """One launch: a name, its accelerate config and extra launch flags, the recipe and the recipe overrides."""

    name: str
    config: str
    recipe: str
    overrides: tuple[str, ...] = ()
    launch: tuple[str, ...] = ()

    @property
    def sft(self) -> bool:
        return self.recipe.endswith("sft.yaml")


SPECS = (
    Spec("SFT (recipe under single_gpu.yaml)", "single_gpu.yaml", "recipes/tiny/sft.yaml"),
    Spec("GRPO, fp32", "single_gpu.yaml", GRPO, launch=("--mixed_precision", "no")),
    Spec("GRPO (recipe under single_gpu.yaml)", "single_gpu.yaml", GRPO),
    Spec("GRPO, ZeRO-2", "zero2.yaml", GRPO, BF16, ("--num_processes", "1")),
    Spec("GRPO, QLoRA nf4 r=16", "single_gpu.yaml", GRPO,
         (*BF16, "--use_peft", "true", "--load_in_4bit", "true", "--lora_r", "16", "--lora_alpha", "32")),
)


@dataclass
class Result:
    name: str
    config: str
    mixed_precision: str
    steps: int
    s_per_step: float
    train_runtime: float
    wall: float
    peak_gpu_allocated_gib: float | None
    peak_gpu_reserved_gib: float | None
    peak_rss_gib: float
    reward_first: float | None
    reward_last: float | None


def command(spec: Spec, out: Path, cache: Path, steps: int, cpu: bool) -> list[str]:
    """The user's command line for `spec`, pointed at this benchmark's cache."""
    module = "rlkit.train.sft" if spec.sft else "rlkit.train.grpo"
    model = cache / "tiny-qwen2_5_vl" if spec.sft else cache / "sft"
    launch = list(spec.launch)
    overrides = list(spec.overrides)
    if cpu:  # a dry run here: the same launches on CPU, in float32 (transformers refuses bf16 checks on CPU)
        launch = [flag for flag in launch if flag not in ("--mixed_precision", "no")]
        launch += ["--cpu", "--mixed_precision", "no"]
        overrides = [("false" if i and overrides[i - 1] == "--bf16" else v) for i, v in enumerate(overrides)]
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(ROOT / "accelerate_configs" / spec.config), *launch, "-m", module, "--config", str(ROOT / spec.recipe),
            "--model_name_or_path", str(model), "--dataset_path", str(cache / "data"), "--output_dir", str(out),
            "--max_steps", str(steps), "--disable_tqdm", "true", *overrides]


def run(spec: Spec, cache: Path, steps: int, cpu: bool) -> Result:
    """Launch `spec` in a fresh process (its log goes to `<cache>/logs`) and read back what it wrote."""
    slug = "".join(c if c.isalnum() else "-" for c in spec.name.lower()).strip("-")
    out = cache / ("sft" if spec.sft else f"runs/{slug}")
    shutil.rmtree(out, ignore_errors=True)  # this benchmark's own scratch folder
    log = cache / "logs" / f"{slug}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **ENV}
    start = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(command(spec, out, cache, steps, cpu), cwd=ROOT, env=env, stdout=handle,
                              stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{spec.name} failed (exit {done.returncode}); its log: {log}\n"
                           + log.read_text()[-4000:])
    metrics = json.loads((out / "train_results.json").read_text())
    state = json.loads((out / "trainer_state.json").read_text())
    rewards = [entry["reward"] for entry in state["log_history"] if "reward" in entry]
    steps = state["global_step"]
    return Result(spec.name, spec.config, metrics["mixed_precision"], steps, metrics["train_runtime"] / steps,
                  metrics["train_runtime"], wall, metrics.get("peak_gpu_allocated_gib"),
                  metrics.get("peak_gpu_reserved_gib"), metrics["peak_rss_gib"],
                  rewards[0] if rewards else None, rewards[-1] if rewards else None)


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def table(results: list[Result]) -> str:
    lines = ["| run | accelerate config | mixed precision (as run) | steps | s/step | wall s | peak GPU allocated GiB "
             "| peak GPU reserved GiB | peak RSS GiB | reward first -> last |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        reward = "" if r.reward_first is None else f"{r.reward_first:.2f} -> {r.reward_last:.2f}"
        lines.append(f"| {r.name} | {r.config} | {r.mixed_precision} | {r.steps} | {r.s_per_step:.3f} | {r.wall:.1f} | "
                     f"{_cell(r.peak_gpu_allocated_gib, '.3f')} | {_cell(r.peak_gpu_reserved_gib, '.3f')} | "
                     f"{r.peak_rss_gib:.2f} | {reward} |")
    return "\n".join(lines)


def machine() -> str:
    import accelerate
    import peft
    import torch
    import transformers
    import trl

    versions = [f"torch {torch.__version__} (CUDA {torch.version.cuda})", f"transformers {transformers.__version__}",
                f"trl {trl.__version__}", f"peft {peft.__version__}", f"accelerate {accelerate.__version__}"]
    for name in ("deepspeed", "bitsandbytes"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except Exception as err:  # an optional extra that does not import is reported, not fatal
            versions.append(f"{name} not importable ({type(err).__name__})")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (CPU dry run)"
    return f"{device}, {os.cpu_count()} CPUs; Python {platform.python_version()}, {', '.join(versions)}."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="GRPO steps per run (the tiny recipes' max_steps)")
    parser.add_argument("--sft-steps", type=int, default=400, help="SFT steps (the tiny SFT recipe's max_steps)")
    parser.add_argument("--cache-dir", default=str(ROOT / ".cache" / "bench" / "gpu"), help="inputs, runs, logs")
    parser.add_argument("--cpu", action="store_true", help="dry run on CPU, float32 (checks every launch works)")
    parser.add_argument("--json", default=None, help="also write the results as JSON to this file")
    parser.add_argument("--write-docs", action="store_true", help=f"write the table to {GPU_DOCS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    import torch

    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA device: run this on a GPU machine, or pass --cpu for a dry run")
    cache = Path(args.cache_dir).resolve()
    results = []
    for spec in SPECS:
        steps = args.sft_steps if spec.sft else args.steps
        results.append(run(spec, cache, steps, args.cpu))
        print(f"{spec.name}: {results[-1].s_per_step:.3f} s/step, {results[-1].wall:.1f} s wall", flush=True)
    text = f"{machine()}\n\n{table(results)}"
    print(text, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    if args.write_docs:
        command_line = "python benchmarks/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section(SECTION, text, command_line.strip(), GPU_DOCS)
    return 0


if __name__ == "__main__":
    sys.exit(main())

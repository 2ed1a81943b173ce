"""What the training scripts share: logging, resume detection, and building a recipe's inputs on first use.

A tiny recipe runs as-is on a fresh checkout: a missing dataset is built from `dataset_recipe`, a missing tiny
model from `tiny_model_family`, and a missing SFT base by running `sft_recipe`; each is cached where the recipe
points, with a message saying so. In a multi-process launch the main process builds and the others wait.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from rlkit.configs import DataArguments

logger = logging.getLogger(__name__)

# Variables a launcher sets; a nested single-process run must not inherit them.
_LAUNCH_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")


def setup_logging(training_args) -> None:
    """rlkit logs at INFO on the main process; the libraries at the level TRL/transformers use."""
    import datasets
    import transformers

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)])
    level = training_args.get_process_log_level()
    ours = logging.INFO if training_args.should_log else logging.WARNING  # our own messages: main process only
    logging.getLogger("rlkit").setLevel(ours)
    logging.getLogger("data_builders").setLevel(ours)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)


def last_checkpoint(training_args) -> str | None:
    """The checkpoint to resume from: the one asked for, else the newest in `output_dir` (open-r1 style)."""
    from transformers.trainer_utils import get_last_checkpoint

    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if os.path.isdir(training_args.output_dir):
        found = get_last_checkpoint(training_args.output_dir)
        if found:
            logger.info("Resuming from %s", found)
        return found
    return None


def _main_process_first():
    from accelerate import PartialState

    return PartialState().main_process_first()


def ensure_dataset(data_args: DataArguments) -> Path:
    """Return the built dataset folder, building it from `dataset_recipe` first if it is missing."""
    path = Path(data_args.dataset_path)
    with _main_process_first():
        if not (path / "manifest.json").exists():
            if not data_args.dataset_recipe:
                raise FileNotFoundError(
                    f"No built dataset at {path}. Build one with `rlkit build-data --config DATA.yaml --out {path}`, "
                    "or set `dataset_recipe` in the recipe to build it on first use."
                )
            from data_builders.build import build

            logger.warning("Dataset %s not found: building it from %s (cached for later runs)",
                           path, data_args.dataset_recipe)
            build(data_args.dataset_recipe, str(path), overwrite=path.exists())
    return path


def ensure_model(model_name_or_path: str, data_args: DataArguments) -> None:
    """Make sure `model_name_or_path` exists when the recipe says how to build it.

    A hub id or an existing folder is left alone. A missing folder is built as an embedded tiny model
    (`tiny_model_family`) or by running the SFT recipe `sft_recipe` in a fresh single process.
    """
    sft_recipe = data_args.sft_recipe
    path = Path(model_name_or_path)
    if path.exists() or not (data_args.tiny_model_family or sft_recipe):
        return
    with _main_process_first():
        if (path / "config.json").exists() or (path / "adapter_config.json").exists():
            return
        if data_args.tiny_model_family:
            from rlkit.models.tiny import make_tiny_model

            logger.warning("Model %s not found: building the tiny %s model there", path, data_args.tiny_model_family)
            make_tiny_model(data_args.tiny_model_family, path, overwrite=path.exists())
        else:
            logger.warning("Model %s not found: running its SFT recipe %s first (cached for later runs)",
                           path, sft_recipe)
            env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS and not k.startswith("ACCELERATE_")}
            env["ACCELERATE_USE_CPU"] = os.environ.get("ACCELERATE_USE_CPU", "")
            cmd = [sys.executable, "-m", "rlkit.train.sft", "--config", sft_recipe, "--output_dir", str(path)]
            subprocess.run(cmd, check=True, env=env)


def select_train_rows(dataset, data_args: DataArguments, seed: int):
    """Shuffle deterministically and cap at `max_train_samples`."""
    dataset = dataset.shuffle(seed=seed)
    if data_args.max_train_samples is not None:
        dataset = dataset.select(range(min(data_args.max_train_samples, len(dataset))))
    return dataset


def load_for_training(model_args, data_args: DataArguments, training_args):
    """Build the model if the recipe says how, then load it and its processor for training."""
    from rlkit.models.load import load_model, load_processor

    ensure_model(model_args.model_name_or_path, data_args)
    processor = load_processor(model_args, trust_remote_code=training_args.trust_remote_code)
    model = load_model(model_args, gradient_checkpointing=training_args.activation_checkpointing,
                       trust_remote_code=training_args.trust_remote_code)
    # Already applied by load_model (PEFT needs it done there); the trainer must not apply it again.
    training_args.activation_checkpointing = training_args.gradient_checkpointing = False
    return model, processor


def peak_memory() -> dict[str, float]:
    """This process's peak memory so far, in GiB: host RSS, and on CUDA what torch allocated and reserved."""
    import resource

    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peaks = {"peak_rss_gib": rss / (2**30 if sys.platform == "darwin" else 2**20)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peaks["peak_gpu_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        peaks["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    return {key: round(value, 3) for key, value in peaks.items()}


def train_and_save(trainer, processor, checkpoint: str | None) -> None:
    """Train (resuming from `checkpoint`), then save the model, the run's metrics and state, and the processor.

    `train_results.json` holds the Trainer's speed figures (`train_runtime`, `train_steps_per_second`), the mixed
    precision that ran, and this process's peak memory (the main process; under ZeRO each rank holds its own shard).
    """
    # The launcher's mixed_precision wins over a recipe's `bf16: false` (transformers reads it first), so say which ran.
    precision = trainer.accelerator.mixed_precision
    if precision != "no" and not (trainer.args.bf16 or trainer.args.fp16):
        logger.warning("Mixed precision: %s, from the accelerate config's mixed_precision, which wins over the "
                       "recipe's bf16 / fp16 false. For float32, launch with `--mixed_precision no`.", precision)
    else:
        logger.info("Mixed precision: %s (the accelerate config's mixed_precision, or the recipe's bf16 / fp16)",
                    precision)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {**result.metrics, **peak_memory(), "mixed_precision": precision}
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    output_dir = trainer.args.output_dir
    trainer.save_model(output_dir)
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(output_dir)
    logger.info("Saved the model to %s", output_dir)
    trainer.accelerator.end_training()  # closes the process group a distributed launch opened (NCCL warns otherwise)

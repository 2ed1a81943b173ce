"""Supervised warm start: teach a base VLM to answer the task confidently before the RL arms.

    accelerate launch --config_file accelerate_configs/cpu.yaml -m rlkit.train.sft --config recipes/tiny/sft.yaml

Trains on the normal (standard-arm) rows with a completion-only loss (a tiny model trained on the whole
sequence learns the template, not the image). A share `abstain_prior` of rows get the abstention text as their
target, chosen at random and blind to the image: the base model then abstains now and then but not *when* the
evidence is gone, so GRPO has abstentions to discover and reward without the warm start teaching grounding.

The draw is made anew for every pass over the data: the rows are repeated once per pass the run will make, each
copy with its own draw. With one fixed draw a model trained for many epochs learns *which images* abstain
(measured on the tiny model: 16 epochs, eval abstention 0-2% instead of 10%) and GRPO then has nothing to find.
"""

from __future__ import annotations

import logging

from rlkit.configs import DataArguments, SFTArguments
from rlkit.models.load import ModelArguments

logger = logging.getLogger(__name__)


def sft_rows(dataset, abstain_prior: float, seed: int, abstain_text: str, passes: int = 1):
    """Map built rows to TRL's conversational prompt-completion format (keeping the image).

    The rows are repeated `passes` times (pass k after pass k-1), each copy with its own abstention draw.
    """
    import datasets
    import numpy as np

    from data_builders.images import stable_hash

    def to_completion(row, index):
        # Seeded per source question and pass: the same rows abstain in every run and on every process.
        rng = np.random.default_rng([seed, stable_hash(row["source_id"]), index // len(dataset)])
        text = abstain_text if rng.random() < abstain_prior else row["answer"]
        return {"completion": [{"role": "assistant", "content": text}]}

    keep = ("image", "prompt", "completion")
    dataset = dataset.remove_columns([c for c in dataset.column_names if c not in keep + ("answer", "source_id")])
    repeated = datasets.concatenate_datasets([dataset] * passes) if passes > 1 else dataset
    repeated = repeated.map(to_completion, with_indices=True, desc="SFT targets")
    return repeated.remove_columns(["answer", "source_id"])


def passes_over_data(training_args, rows: int) -> int:
    """How many times the run will see each row: from `max_steps` when set, else `num_train_epochs`."""
    import math

    from accelerate import PartialState

    if training_args.max_steps > 0:
        per_step = (training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
                    * PartialState().num_processes)
        return max(1, math.ceil(training_args.max_steps * per_step / rows))
    return max(1, math.ceil(training_args.num_train_epochs))


def main(data_args: DataArguments, sft_args: SFTArguments, training_args, model_args: ModelArguments) -> None:
    import transformers
    from trl import SFTTrainer

    from data_builders.contract import ABSTAIN_TEXT, load_built
    from rlkit.train.prepare import (
        ensure_dataset,
        last_checkpoint,
        load_for_training,
        select_train_rows,
        setup_logging,
        train_and_save,
    )

    # Seed, logging, resume
    transformers.set_seed(training_args.seed)
    setup_logging(training_args)
    checkpoint = last_checkpoint(training_args)

    # Data (normal pairs only: the warm start must not see damaged images)
    dataset_path = ensure_dataset(data_args)
    train = load_built(dataset_path, split="train", arm="standard")
    train = select_train_rows(train, data_args, training_args.seed)
    passes = passes_over_data(training_args, len(train)) if sft_args.abstain_prior > 0 else 1
    logger.info("SFT on %d normal rows x %d passes, abstentions drawn anew each pass (abstain_prior=%.3f)",
                len(train), passes, sft_args.abstain_prior)
    train = sft_rows(train, sft_args.abstain_prior, training_args.seed, ABSTAIN_TEXT, passes)
    if training_args.max_steps <= 0:
        training_args.num_train_epochs = 1  # the passes are in the rows now

    # Model and processor
    model, processor = load_for_training(model_args, data_args, training_args)

    # Train and save
    trainer = SFTTrainer(model=model, args=training_args, train_dataset=train, processing_class=processor)
    train_and_save(trainer, processor, checkpoint)


def parse(argv: list[str] | None = None):
    from trl import SFTConfig, TrlParser

    return TrlParser((DataArguments, SFTArguments, SFTConfig, ModelArguments)).parse_args_and_config(argv)


if __name__ == "__main__":
    main(*parse())

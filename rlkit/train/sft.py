"""Supervised warm start: teach a base VLM to answer the task confidently before the RL arms.

    accelerate launch --config_file accelerate_configs/cpu.yaml -m rlkit.train.sft --config recipes/tiny/sft.yaml

Trains on the normal (standard-arm) rows with a completion-only loss (a tiny model trained on the whole
sequence learns the template, not the image). A share `abstain_prior` of rows get the abstention text as their
target, chosen at random and blind to the image: the base model then abstains now and then but not *when* the
evidence is gone, so GRPO has abstentions to discover and reward without the warm start teaching grounding.
"""

from __future__ import annotations

import logging

from rlkit.configs import DataArguments, SFTArguments
from rlkit.models.load import ModelArguments

logger = logging.getLogger(__name__)


def sft_rows(dataset, abstain_prior: float, seed: int, abstain_text: str):
    """Map built rows to TRL's conversational prompt-completion format (keeping the image)."""
    import numpy as np

    from data_builders.images import stable_hash

    def to_completion(row):
        # Seeded per source question, so the same rows abstain in every run and on every process.
        rng = np.random.default_rng([seed, stable_hash(row["source_id"])])
        text = abstain_text if rng.random() < abstain_prior else row["answer"]
        return {"completion": [{"role": "assistant", "content": text}]}

    keep = ("image", "prompt", "completion")
    dataset = dataset.map(to_completion, desc="SFT targets")
    return dataset.remove_columns([c for c in dataset.column_names if c not in keep])


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
    train = sft_rows(train, sft_args.abstain_prior, training_args.seed, ABSTAIN_TEXT)
    logger.info("SFT on %d normal rows (abstain_prior=%.3f)", len(train), sft_args.abstain_prior)

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

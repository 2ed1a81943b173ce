"""GRPO with groundedness-aware rewards on one ablation arm.

    accelerate launch --config_file accelerate_configs/cpu.yaml -m rlkit.train.grpo \
        --config recipes/tiny/grpo_mixed.yaml [--any_recipe_key value]

The recipe picks the arm (standard: normal pairs; hallucination: damaged pairs only; mixed: both), the
rewards and their weights, and the groundedness table; the accelerate config picks hardware and parallelism.
Rewards log per-condition abstention / mirage rates next to TRL's own metrics, and each logged completion
carries its condition label.
"""

from __future__ import annotations

import logging

from rlkit.configs import DataArguments, RewardArguments
from rlkit.models.load import ModelArguments

logger = logging.getLogger(__name__)


def main(data_args: DataArguments, reward_args: RewardArguments, training_args, model_args: ModelArguments) -> None:
    import transformers
    from trl import GRPOTrainer

    from data_builders.contract import load_built
    from rlkit.rewards import get_reward_funcs
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

    # Data: the arm's train rows, every column kept (rewards read answer / answerable / condition)
    dataset_path = ensure_dataset(data_args)
    train = load_built(dataset_path, split="train", arm=data_args.arm)
    train = select_train_rows(train, data_args, training_args.seed)
    logger.info("GRPO arm %r: %d train rows from %s", data_args.arm, len(train), dataset_path)

    # Rewards
    reward_funcs = get_reward_funcs(reward_args.reward_funcs, **reward_args.reward_options())
    if training_args.reward_weights is not None and len(training_args.reward_weights) != len(reward_funcs):
        raise ValueError(f"reward_weights has {len(training_args.reward_weights)} entries but reward_funcs has "
                         f"{len(reward_funcs)} ({', '.join(reward_args.reward_funcs)})")

    # Model and processor
    model, processor = load_for_training(model_args, data_args, training_args)

    # Train and save
    trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=training_args, train_dataset=train,
                          processing_class=processor)
    train_and_save(trainer, processor, checkpoint)


def parse(argv: list[str] | None = None):
    from trl import GRPOConfig, TrlParser

    return TrlParser((DataArguments, RewardArguments, GRPOConfig, ModelArguments)).parse_args_and_config(argv)


if __name__ == "__main__":
    main(*parse())

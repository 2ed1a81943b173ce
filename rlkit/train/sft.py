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
    from rlkit.models.load import load_model, load_processor
    from rlkit.train.prepare import ensure_dataset, ensure_model, last_checkpoint, select_train_rows, setup_logging

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
    ensure_model(model_args.model_name_or_path, data_args)
    processor = load_processor(model_args, trust_remote_code=training_args.trust_remote_code)
    model = load_model(model_args, gradient_checkpointing=training_args.activation_checkpointing,
                       trust_remote_code=training_args.trust_remote_code)
    # Already applied by load_model (PEFT needs it done there); the trainer must not apply it again.
    training_args.activation_checkpointing = training_args.gradient_checkpointing = False

    # Train and save
    trainer = SFTTrainer(model=model, args=training_args, train_dataset=train, processing_class=processor)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(training_args.output_dir)
    logger.info("Saved the SFT model to %s", training_args.output_dir)


def parse(argv: list[str] | None = None):
    from trl import SFTConfig, TrlParser

    return TrlParser((DataArguments, SFTArguments, SFTConfig, ModelArguments)).parse_args_and_config(argv)


if __name__ == "__main__":
    main(*parse())

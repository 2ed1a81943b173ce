"""The plain TRL baseline of bench_grpo_overhead.py: GRPO on one arm of a built dataset, without rlkit.

    .venv/bin/python benchmarks/plain_trl_grpo.py --config PLAIN.yaml [--any_GRPOConfig_key value]

PLAIN.yaml holds `GRPOConfig` keys plus the few below (model, data, arm, frozen vision tower);
bench_grpo_overhead.py writes it from the GRPO keys of an rlkit recipe so both sides train with the same values.
This is the script a user would write with TRL alone: `load_from_disk`, keep the arm's rows, shuffle with the seed
and cap, load the model and processor with the Auto classes (left padding), one inline exact-match reward on
`answer`, `GRPOTrainer.train()`, save.
Nothing here imports rlkit or data_builders, so whatever rlkit adds (recipe parsing, dataset validation, reward
parsing and rate logging, model checks) shows up as the difference between the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PlainArguments:
    """Model and data of the baseline (TRL has no dataclass for them)."""

    model_name_or_path: str = field(metadata={"help": "Local model folder (AutoModelForImageTextToText)."})
    dataset_path: str = field(metadata={"help": "A dataset built by data_builders (DatasetDict, `train` split)."})
    arm: str = field(default="mixed", metadata={"help": "Keep the train rows whose `arms` list holds this arm."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Cap after shuffling with `seed`."})
    dtype: str = field(default="auto", metadata={"help": "torch dtype to load the weights in, or auto."})
    freeze_vision_tower: bool = field(default=False, metadata={"help": "Train the language model only."})


def exact_match(completions, answer, **kwargs) -> list[float]:
    """1.0 when the completion, stripped and lower-cased, is the `answer` column's value, else 0.0.

    >>> exact_match([[{"role": "assistant", "content": " Blue\\n"}], [{"role": "assistant", "content": "red"}]],
    ...             answer=["blue", "blue"])
    [1.0, 0.0]
    """
    return [float(c[0]["content"].strip().strip(".").lower() == a.strip().lower())
            for c, a in zip(completions, answer, strict=True)]


def main(args: PlainArguments, training_args) -> None:
    import datasets
    import torch
    import transformers
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import GRPOTrainer

    transformers.set_seed(training_args.seed)

    # Data: the arm's train rows, shuffled and capped as rlkit does
    train = datasets.load_from_disk(args.dataset_path)["train"]
    train = train.filter(lambda arms: args.arm in arms, input_columns="arms", keep_in_memory=True)
    train = train.shuffle(seed=training_args.seed)
    if args.max_train_samples is not None:
        train = train.select(range(min(args.max_train_samples, len(train))))

    # Model and processor
    processor = AutoProcessor.from_pretrained(args.model_name_or_path)
    # Batched generation and Qwen-VL's rope index need left padding; a saved tokenizer may say right.
    processor.tokenizer.padding_side = "left"
    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
    model = AutoModelForImageTextToText.from_pretrained(args.model_name_or_path, dtype=dtype)
    if args.freeze_vision_tower:
        for name, param in model.named_parameters():
            if "visual" in name or "vision_tower" in name or "vision_model" in name:
                param.requires_grad_(False)

    # Train and save
    trainer = GRPOTrainer(model=model, reward_funcs=exact_match, args=training_args, train_dataset=train,
                          processing_class=processor)
    trainer.train()
    trainer.save_model(training_args.output_dir)
    processor.save_pretrained(training_args.output_dir)


if __name__ == "__main__":
    from trl import GRPOConfig, TrlParser

    main(*TrlParser((PlainArguments, GRPOConfig)).parse_args_and_config())

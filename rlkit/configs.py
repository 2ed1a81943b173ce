"""Recipe dataclasses that TRL does not have: the data, the rewards, and what to build on first use.

A recipe is one flat YAML file read by `TrlParser` into these plus TRL's `SFTConfig` / `GRPOConfig` and
`rlkit.models.load.ModelArguments`. Field names are unique across all of them, and unknown keys are an error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

ARMS = ("standard", "hallucination", "mixed")


@dataclass
class DataArguments:
    """Which built dataset to train on, and how to build the missing pieces of a recipe on first use."""

    dataset_path: str = field(
        default=".cache/tiny/data", metadata={"help": "Folder of a dataset built by `rlkit build-data`."}
    )
    arm: str = field(
        default="mixed",
        metadata={"help": f"Ablation arm whose train rows are used: {', '.join(ARMS)}."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use at most this many train rows (after shuffling with `seed`)."}
    )
    dataset_recipe: str | None = field(
        default=None,
        metadata={"help": "Data config that builds `dataset_path` when it is missing (cached afterwards)."},
    )
    sft_recipe: str | None = field(
        default=None,
        metadata={"help": "SFT recipe whose output is `model_name_or_path`, run when that folder is missing "
                  "(the warm start of a GRPO recipe)."},
    )
    tiny_model_family: str | None = field(
        default=None,
        metadata={"help": "Build an embedded tiny model of this family at `model_name_or_path` when it is missing "
                  "(qwen2_5_vl, qwen2_vl or llava). For tests and the demo."},
    )

    def __post_init__(self):
        if self.arm not in ARMS:
            raise ValueError(f"arm must be one of {', '.join(ARMS)}, got {self.arm!r}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(f"max_train_samples must be >= 1, got {self.max_train_samples}")


@dataclass
class SFTArguments:
    """The supervised warm start that makes a base model answer confidently before RL."""

    abstain_prior: float = field(
        default=0.05,
        metadata={"help": "Share of SFT rows whose target is replaced by the abstention text, chosen at random and "
                  "independently of the image. It gives the base model a small, evidence-blind chance of "
                  "abstaining (as real instruction-tuned VLMs have) that GRPO can then tie to the evidence."},
    )

    def __post_init__(self):
        if not 0.0 <= self.abstain_prior < 0.5:
            raise ValueError(f"abstain_prior must be in [0, 0.5), got {self.abstain_prior}")


@dataclass
class RewardArguments:
    """The reward functions (weighted by GRPOConfig's `reward_weights`) and the groundedness table."""

    reward_funcs: list[str] = field(
        default_factory=lambda: ["groundedness"],
        metadata={"help": "Reward names (accuracy, groundedness, format, overlong) or `pkg.module:fn` paths."},
    )
    answerable_correct: float = field(default=1.0, metadata={"help": "Groundedness: correct, image has evidence."})
    answerable_wrong: float = field(default=-1.0, metadata={"help": "Groundedness: wrong, image has evidence."})
    answerable_abstain: float = field(
        default=-0.5, metadata={"help": "Groundedness: abstains although the image has the evidence."}
    )
    unanswerable_abstain: float = field(
        default=1.0, metadata={"help": "Groundedness: abstains when the image lost the evidence."}
    )
    unanswerable_answer: float = field(
        default=-1.0, metadata={"help": "Groundedness: answers without evidence (mirage), even if it matches."}
    )
    overlong_max_tokens: int | None = field(
        default=None, metadata={"help": "Overlong reward: completions longer than this are penalised."}
    )

    def reward_options(self) -> dict[str, dict]:
        """Per-reward keyword arguments for `rlkit.rewards.get_reward_funcs`, for the rewards that are named."""
        table = {k: v for k, v in asdict(self).items() if k.startswith(("answerable_", "unanswerable_"))}
        options = {"groundedness": {"table": table}}
        if self.overlong_max_tokens is not None:
            options["overlong"] = {"max_tokens": self.overlong_max_tokens}
        return {name: kw for name, kw in options.items() if name in self.reward_funcs}

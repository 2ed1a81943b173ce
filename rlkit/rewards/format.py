"""Shape rewards: `<answer>` tags (`Format`) and a length budget (`Overlong`).

Both ignore the image and the ground truth; they keep completions parseable and short so the groundedness and
accuracy rewards judge what the model meant. Give them small weights (`reward_weights`) next to those.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rlkit.rewards.answers import completion_to_text, strip_special_tokens
from rlkit.rewards.grounding import MetricLogger, log_rates, read_column

_THINK_BLOCK = r"(?:<think>.*?</think>\s*)?"


def _condition_rates(
    values: Sequence[float], condition: Sequence[str | None] | None, prefix: str, metric: str
) -> dict[str, float]:
    """`{prefix}/{metric}` over the batch and `{prefix}/{condition}/{metric}` per condition."""
    groups: dict[str, list[float]] = {"": list(values)}
    for value, cond in zip(values, condition or [None] * len(values), strict=True):
        if cond:
            groups.setdefault(f"{cond}/", []).append(value)
    return {f"{prefix}/{group}{metric}": sum(v) / len(v) for group, v in groups.items() if v}


class Format:
    """Format reward: 1.0 if the completion gives its answer in exactly one non-empty `<answer>...</answer>` block.

    Special tokens (`<|im_end|>`, ...) are ignored. With `strict=True` nothing but whitespace and an optional
    leading `<think>...</think>` block may surround the answer block. Logs `{metrics_prefix}/rate` and
    `{metrics_prefix}/{condition}/rate` through TRL's `log_metric` when it is passed.

    Args:
        tag (`str`, *optional*, defaults to `"answer"`): The tag name. `answers.extract_answer` reads `<answer>`,
            so change it only together with your own parser.
        strict (`bool`, *optional*, defaults to `False`): Require the block to be the whole completion.
        metrics_prefix (`str` or `None`, *optional*, defaults to `"format"`): `None` logs nothing.
        name (`str`, *optional*, defaults to `"format"`): `__name__`, hence the `rewards/<name>/mean` key.

    Example:
    >>> reward = Format()
    >>> reward(["<answer>red</answer><|im_end|>", "red", "<answer></answer>", "<answer>a</answer><answer>b</answer>"])
    [1.0, 0.0, 0.0, 0.0]
    >>> Format(strict=True)(["<think>hmm</think> <answer>red</answer>", "I think <answer>red</answer>"])
    [1.0, 0.0]
    """

    def __init__(
        self, tag: str = "answer", strict: bool = False, metrics_prefix: str | None = "format", name: str = "format"
    ) -> None:
        if not re.fullmatch(r"[A-Za-z_][\w-]*", tag):
            raise ValueError(f"Format tag must be a plain XML name such as 'answer', got {tag!r}")
        self.tag = tag
        self.strict = strict
        self.metrics_prefix = metrics_prefix
        self.__name__ = name

    def __repr__(self) -> str:
        return f"Format(tag={self.tag!r}, strict={self.strict})"

    def _ok(self, text: str) -> bool:
        text = strip_special_tokens(text).strip()
        open_tag, close_tag = f"<{self.tag.lower()}>", f"</{self.tag.lower()}>"
        lowered = text.lower()
        if lowered.count(open_tag) != 1 or lowered.count(close_tag) != 1:
            return False
        block = rf"{re.escape(open_tag)}\s*\S.*?{re.escape(close_tag)}"
        if self.strict:
            return re.fullmatch(_THINK_BLOCK + block, text, re.IGNORECASE | re.DOTALL) is not None
        return re.search(block, text, re.IGNORECASE | re.DOTALL) is not None

    def __call__(
        self,
        completions: Sequence[Any],
        condition: Sequence[str | None] | None = None,
        log_metric: MetricLogger | None = None,
        **kwargs: Any,
    ) -> list[float]:
        rewards = [float(self._ok(completion_to_text(c))) for c in completions]
        if self.metrics_prefix is not None and log_metric is not None:
            condition = None if condition is None else read_column(self.__name__, "condition", condition, len(rewards))
            log_rates(log_metric, _condition_rates(rewards, condition, self.metrics_prefix, "rate"))
        return rewards


class Overlong:
    """Length penalty: 0 within budget, ramping linearly to `-penalty` at the budget, `-penalty` beyond it.

    This is DAPO's soft overlong punishment. With budget `L` and margin `m`, a completion of length `n` earns
    `0` if `n <= L - m`, `-penalty * (n - (L - m)) / m` if `L - m < n <= L`, and `-penalty` if `n > L`. Set
    `max_tokens` to `GRPOConfig.max_completion_length` with `soft_margin > 0` so truncated completions (length
    exactly `L`) pay the full penalty; with `soft_margin=0` only completions longer than `L` pay, so set `L` below
    the generation limit. Length is `len(completion_ids)` (TRL passes them) with `max_tokens`, or the number of
    characters after special tokens are removed with `max_chars`.

    Logs `{metrics_prefix}/rate` (fraction of completions with a non-zero penalty), also per condition.

    Args:
        max_tokens (`int`, *optional*): Budget in tokens. Defaults to 256 (TRL's default `max_completion_length`)
            when `max_chars` is not set either.
        max_chars (`int`, *optional*): Budget in characters instead (for calls without `completion_ids`).
        soft_margin (`int`, *optional*, defaults to `0`): Width of the linear ramp below the budget.
        penalty (`float`, *optional*, defaults to `1.0`): Magnitude of the full penalty (the reward is `-penalty`).
        metrics_prefix (`str` or `None`, *optional*, defaults to `"overlong"`): `None` logs nothing.
        name (`str`, *optional*, defaults to `"overlong"`): `__name__`, hence the `rewards/<name>/mean` key.

    Example:
    >>> reward = Overlong(max_tokens=8, soft_margin=4)
    >>> reward(["a", "b", "c", "d"], completion_ids=[[0] * 3, [0] * 6, [0] * 8, [0] * 9])
    [0.0, -0.5, -1.0, -1.0]
    >>> Overlong(max_chars=5)(["short", "too long"])
    [0.0, -1.0]
    """

    def __init__(
        self,
        max_tokens: int | None = None,
        max_chars: int | None = None,
        soft_margin: int = 0,
        penalty: float = 1.0,
        metrics_prefix: str | None = "overlong",
        name: str = "overlong",
    ) -> None:
        if max_tokens is not None and max_chars is not None:
            raise ValueError("Overlong: set max_tokens or max_chars, not both")
        if max_tokens is None and max_chars is None:
            max_tokens = 256
        budget = max_tokens if max_tokens is not None else max_chars
        if not isinstance(budget, int) or budget <= 0:
            raise ValueError(f"Overlong: the budget must be a positive integer, got {budget!r}")
        if not 0 <= soft_margin <= budget:
            raise ValueError(f"Overlong: soft_margin must be in [0, budget={budget}], got {soft_margin}")
        if penalty < 0:
            raise ValueError(f"Overlong: penalty is a magnitude (the reward is -penalty), got {penalty}")
        self.max_tokens = max_tokens
        self.max_chars = max_chars
        self.soft_margin = soft_margin
        self.penalty = float(penalty)
        self.metrics_prefix = metrics_prefix
        self.__name__ = name

    def __repr__(self) -> str:
        unit = f"max_tokens={self.max_tokens}" if self.max_tokens is not None else f"max_chars={self.max_chars}"
        return f"Overlong({unit}, soft_margin={self.soft_margin}, penalty={self.penalty})"

    def score(self, length: int) -> float:
        """Reward of a completion of `length` tokens (or characters)."""
        budget = self.max_tokens if self.max_tokens is not None else self.max_chars
        start = budget - self.soft_margin
        if length <= start:
            return 0.0
        if length > budget:
            return -self.penalty
        return -self.penalty * (length - start) / self.soft_margin  # soft_margin > 0 here since start < length <= L

    def __call__(
        self,
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
        condition: Sequence[str | None] | None = None,
        log_metric: MetricLogger | None = None,
        **kwargs: Any,
    ) -> list[float]:
        n = len(completions)
        if self.max_tokens is not None:
            if completion_ids is None:
                raise KeyError(
                    f"reward '{self.__name__}' counts tokens but got no completion_ids (GRPOTrainer passes them); "
                    "pass completion_ids, or configure it with max_chars to count characters"
                )
            lengths = [len(ids) for ids in read_column(self.__name__, "completion_ids", completion_ids, n)]
        else:
            lengths = [len(strip_special_tokens(completion_to_text(c)).strip()) for c in completions]
        rewards = [self.score(length) for length in lengths]
        if self.metrics_prefix is not None and log_metric is not None:
            condition = None if condition is None else read_column(self.__name__, "condition", condition, n)
            flags = [float(r < 0) for r in rewards]
            log_rates(log_metric, _condition_rates(flags, condition, self.metrics_prefix, "rate"))
        return rewards

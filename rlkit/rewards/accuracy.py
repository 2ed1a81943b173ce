"""The accuracy reward: 1 for a correct answer, 0 otherwise, blind to whether the image still shows the evidence.

This is the "standard" RL reward of the seed papers, and the baseline the groundedness reward is compared with:
under it guessing has positive expected value and abstaining has none, so mirages are the optimal policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlkit.rewards.answers import DEFAULT_TOL, judge
from rlkit.rewards.grounding import (
    MetricLogger,
    as_bool,
    behaviour_rates,
    log_rates,
    read_column,
)


class Accuracy:
    """Accuracy reward: 1.0 if the completion's answer matches `answer` (see `answers.is_correct`), else 0.0.

    An abstention is never correct, and `answerable` does not change the score: on a corrupted image a lucky guess
    of the original answer earns 1.0. Dataset columns read: `answer` (required), `choices`, and, for the logged
    rates only, `answerable` and `condition`. A row whose `answer` is `None` gets `None` (TRL then ignores this
    reward for it). When TRL passes `log_metric`, the batch's `grounding.behaviour_rates` are logged under
    `metrics_prefix`; `Groundedness` logs the same keys, so keep one of the two prefixes or give them distinct ones
    (identical values from two rewards average to the same number in TRL).

    Args:
        abstention_phrases (`Sequence[str]`, *optional*): Replaces `answers.INABILITY_PHRASES`.
        evidence_phrases (`Sequence[str]`, *optional*): Replaces `answers.EVIDENCE_PHRASES`.
        tol (`float`, *optional*, defaults to `1e-6`): Numeric tolerance of `answers.is_correct`.
        metrics_prefix (`str` or `None`, *optional*, defaults to `"grounding"`): Prefix of the logged rates;
            `None` logs nothing.
        name (`str`, *optional*, defaults to `"accuracy"`): `__name__`, hence the `rewards/<name>/mean` key.

    Example:
    >>> reward = Accuracy()
    >>> reward(["<answer>Three</answer>", "4", "cannot tell", ""], answer=["3"] * 4)
    [1.0, 0.0, 0.0, 0.0]
    >>> reward(["B"], answer=["blue"], choices=[["red", "blue"]], answerable=[False])  # blind to answerable
    [1.0]
    """

    def __init__(
        self,
        abstention_phrases: Sequence[str] | None = None,
        evidence_phrases: Sequence[str] | None = None,
        tol: float = DEFAULT_TOL,
        metrics_prefix: str | None = "grounding",
        name: str = "accuracy",
    ) -> None:
        self.abstention_phrases = None if abstention_phrases is None else tuple(abstention_phrases)
        self.evidence_phrases = None if evidence_phrases is None else tuple(evidence_phrases)
        self.tol = tol
        self.metrics_prefix = metrics_prefix
        self.__name__ = name

    def __repr__(self) -> str:
        return f"Accuracy(name={self.__name__!r})"

    def __call__(
        self,
        completions: Sequence[Any],
        answer: Sequence[str | None] | None = None,
        choices: Sequence[Sequence[str] | None] | None = None,
        answerable: Sequence[bool | None] | None = None,
        condition: Sequence[str | None] | None = None,
        log_metric: MetricLogger | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        n = len(completions)
        answer = read_column(self.__name__, "answer", answer, n)
        choices = [None] * n if choices is None else read_column(self.__name__, "choices", choices, n)
        judgements = [
            None
            if gold is None
            else judge(
                completion,
                gold,
                options,
                abstention_phrases=self.abstention_phrases,
                evidence_phrases=self.evidence_phrases,
                tol=self.tol,
            )
            for completion, gold, options in zip(completions, answer, choices, strict=True)
        ]
        if self.metrics_prefix is not None and log_metric is not None:
            if answerable is not None:
                answerable = [as_bool(v) for v in read_column(self.__name__, "answerable", answerable, n)]
            if condition is not None:
                condition = read_column(self.__name__, "condition", condition, n)
            log_rates(log_metric, behaviour_rates(judgements, answerable, condition, self.metrics_prefix))
        return [None if j is None else float(j.correct) for j in judgements]

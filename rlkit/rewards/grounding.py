"""The groundedness reward: pay for correct grounded answers and for abstaining when the image lost the evidence.

`Groundedness` reads the `answerable` column (does the image still carry the evidence for `answer`?) and scores
each completion with a `RewardTable`:

| row \\ completion | correct answer | wrong answer | abstains |
|---|---|---|---|
| answerable | `answerable_correct` (+1) | `answerable_wrong` (-1) | `answerable_abstain` (-0.5) |
| unanswerable | `unanswerable_answer` (-1) | `unanswerable_answer` (-1) | `unanswerable_abstain` (+1) |

On an unanswerable row any answer is a *mirage*, even one that matches the original answer: it came from the
text or from priors, not from the image. This module also holds the batch helpers every reward shares (column
checks and the per-condition rates logged through TRL's `log_metric`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from difflib import get_close_matches
from typing import Any

from rlkit.rewards.answers import DEFAULT_TOL, Judgement, judge

MetricLogger = Callable[[str, float], None]


@dataclass(frozen=True)
class RewardTable:
    """Rewards of the groundedness table, one per (row answerability, behaviour) cell.

    With correct `c`, wrong `w` and abstain `a` on an answerable image, answering earns `p*c + (1-p)*w` in
    expectation when the model is right with probability `p`, and abstaining earns `a`; abstaining pays exactly
    when `p < (a - w) / (c - w)` (`abstain_threshold`). With the defaults (+1 / -1 / -0.5) that is
    `p < (1 + a) / 2 = 0.25`. On an unanswerable image abstaining always pays more than answering.

    Args:
        answerable_correct (`float`, *optional*, defaults to `1.0`): Correct answer on an answerable image.
        answerable_wrong (`float`, *optional*, defaults to `-1.0`): Wrong (or empty) answer on an answerable image.
        answerable_abstain (`float`, *optional*, defaults to `-0.5`): Abstention on an answerable image
            (over-abstention).
        unanswerable_abstain (`float`, *optional*, defaults to `1.0`): Abstention on an unanswerable image.
        unanswerable_answer (`float`, *optional*, defaults to `-1.0`): Any answer on an unanswerable image
            (mirage), even one that matches the original answer.

    Raises:
        `ValueError`: If a value is not finite, or the table does not rank behaviours as the toolkit needs:
            `unanswerable_abstain > unanswerable_answer`, `answerable_correct > answerable_wrong` and
            `answerable_correct > answerable_abstain`.

    Example:
    >>> RewardTable().abstain_threshold
    0.25
    >>> RewardTable(answerable_abstain=0.0).abstain_threshold
    0.5
    """

    answerable_correct: float = 1.0
    answerable_wrong: float = -1.0
    answerable_abstain: float = -0.5
    unanswerable_abstain: float = 1.0
    unanswerable_answer: float = -1.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"RewardTable.{field.name} must be a finite number, got {value!r}")
        why_unanswerable = "abstaining on an unanswerable image must pay more than answering it (no mirages)"
        why_abstain = "a correct answer must pay more than abstaining, or the policy learns to abstain everywhere"
        rules = [
            ("unanswerable_abstain", "unanswerable_answer", why_unanswerable),
            ("answerable_correct", "answerable_wrong", "a correct answer must pay more than a wrong one"),
            ("answerable_correct", "answerable_abstain", why_abstain),
        ]
        for high, low, why in rules:
            if not getattr(self, high) > getattr(self, low):
                raise ValueError(
                    f"RewardTable: {high}={getattr(self, high)} must be greater than {low}={getattr(self, low)}: "
                    f"{why}. Fix the reward table in your recipe."
                )

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> RewardTable:
        """Build a table from a mapping (a recipe's YAML), rejecting unknown keys with a suggestion.

        Example:
        >>> RewardTable.from_dict({"answerable_abstain": -0.25}).answerable_abstain
        -0.25
        """
        names = [f.name for f in fields(cls)]
        unknown = [key for key in values if key not in names]
        if unknown:
            hints = {key: get_close_matches(key, names, n=1) for key in unknown}
            raise ValueError(
                "unknown RewardTable key(s): "
                + ", ".join(f"{k!r}" + (f" (did you mean {v[0]!r}?)" if v else "") for k, v in hints.items())
                + f"; available: {', '.join(names)}"
            )
        return cls(**values)

    @property
    def abstain_threshold(self) -> float:
        """P(correct) below which abstaining beats answering on an answerable image: `(a - w) / (c - w)`."""
        return (self.answerable_abstain - self.answerable_wrong) / (self.answerable_correct - self.answerable_wrong)

    def score(self, answerable: bool, judgement: Judgement) -> float:
        """Reward of one judged completion on an (un)answerable row."""
        if not answerable:
            return self.unanswerable_abstain if judgement.abstained else self.unanswerable_answer
        if judgement.abstained:
            return self.answerable_abstain
        return self.answerable_correct if judgement.correct else self.answerable_wrong

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def read_column(reward: str, name: str, values: Sequence[Any] | None, n: int) -> Sequence[Any]:
    """Check that a dataset column reached a reward function, aligned with the completions."""
    if values is None:
        raise KeyError(
            f"reward '{reward}' needs the dataset column '{name}', which the trainer did not pass; "
            f"build the dataset with data_builders (see the data contract in docs/rewards.md) or drop '{reward}'"
        )
    if len(values) != n:
        raise ValueError(f"reward '{reward}': column '{name}' has {len(values)} values for {n} completions")
    return values


def as_bool(value: Any, column: str = "answerable") -> bool | None:
    """A boolean cell (`None` stays `None`). Strings are refused: `bool("False")` is True."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        raise TypeError(f"column '{column}' must hold booleans, got the string {value!r}")
    return bool(value)  # numpy.bool_, 0/1


def behaviour_rates(
    judgements: Sequence[Judgement | None],
    answerable: Sequence[bool | None] | None = None,
    condition: Sequence[str | None] | None = None,
    prefix: str = "grounding",
) -> dict[str, float]:
    """Behaviour rates of a batch, overall and per condition, as `{metric_key: rate}`.

    Keys (a rate is only present when its denominator is not empty; `None` judgements are skipped):

    - `{prefix}/abstain_rate`, `{prefix}/accuracy`: over all rows;
    - with `answerable`: `{prefix}/accuracy_answerable`, `{prefix}/over_abstention` (abstentions on answerable
      rows), `{prefix}/abstention_unanswerable` and `{prefix}/mirage_rate` (answers, empty ones included, on
      unanswerable rows; the two sum to 1);
    - with `condition`: `{prefix}/{condition}/abstain_rate`, `{prefix}/{condition}/accuracy`, and
      `{prefix}/{condition}/mirage_rate` when that condition has unanswerable rows.

    Example:
    >>> js = [Judgement("red", False, True), Judgement("cannot tell", True, False), Judgement("red", False, True)]
    >>> rates = behaviour_rates(js, answerable=[True, False, False], condition=["normal", "corrupted", "corrupted"])
    >>> {key: round(value, 2) for key, value in rates.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'grounding/abstain_rate': 0.33, 'grounding/accuracy': 0.67, 'grounding/accuracy_answerable': 1.0,
     'grounding/over_abstention': 0.0, 'grounding/abstention_unanswerable': 0.5, 'grounding/mirage_rate': 0.5,
     'grounding/normal/abstain_rate': 0.0, 'grounding/normal/accuracy': 1.0,
     'grounding/corrupted/abstain_rate': 0.5, 'grounding/corrupted/accuracy': 0.5,
     'grounding/corrupted/mirage_rate': 0.5}
    """
    rows = [i for i, j in enumerate(judgements) if j is not None]
    groups: dict[str, list[int]] = {"": rows}
    if condition is not None:
        for i in rows:
            if condition[i]:
                groups.setdefault(f"{condition[i]}/", []).append(i)
    rates: dict[str, float] = {}
    for group, idx in groups.items():
        if not idx:
            continue
        rates[f"{prefix}/{group}abstain_rate"] = _mean(judgements[i].abstained for i in idx)
        rates[f"{prefix}/{group}accuracy"] = _mean(judgements[i].correct for i in idx)
        if answerable is None:
            continue
        unanswerable = [i for i in idx if answerable[i] is False]
        if not group:  # the answerable/unanswerable split overall; per condition only the mirage rate
            answerable_idx = [i for i in idx if answerable[i]]
            if answerable_idx:
                rates[f"{prefix}/accuracy_answerable"] = _mean(judgements[i].correct for i in answerable_idx)
                rates[f"{prefix}/over_abstention"] = _mean(judgements[i].abstained for i in answerable_idx)
            if unanswerable:
                rates[f"{prefix}/abstention_unanswerable"] = _mean(judgements[i].abstained for i in unanswerable)
        if unanswerable:
            rates[f"{prefix}/{group}mirage_rate"] = _mean(not judgements[i].abstained for i in unanswerable)
    return rates


def _mean(flags: Any) -> float:
    flags = list(flags)
    return sum(map(float, flags)) / len(flags)


def log_rates(log_metric: MetricLogger | None, rates: Mapping[str, float]) -> None:
    """Send rates to TRL's `log_metric(name, value)` (averaged per logging step); no-op without one."""
    if log_metric is None:
        return
    for key, value in rates.items():
        log_metric(key, value)


class Groundedness:
    """Groundedness reward: a `RewardTable` lookup on (`answerable`, correct / wrong / abstain).

    Dataset columns read: `answer`, `answerable` (required), `choices`, `condition` (optional). A row whose
    `answerable` or `answer` is `None` gets `None` (TRL then ignores this reward for it). An empty completion is a
    wrong answer, never an abstention. When TRL passes `log_metric`, the batch's `behaviour_rates` are logged under
    `metrics_prefix`.

    Args:
        table (`RewardTable` or `Mapping[str, float]`, *optional*): The reward table; a mapping may give only the
            cells it changes. Defaults to `RewardTable()`.
        abstention_phrases (`Sequence[str]`, *optional*): Replaces `answers.INABILITY_PHRASES`.
        evidence_phrases (`Sequence[str]`, *optional*): Replaces `answers.EVIDENCE_PHRASES`.
        tol (`float`, *optional*, defaults to `1e-6`): Numeric tolerance of `answers.is_correct`.
        metrics_prefix (`str` or `None`, *optional*, defaults to `"grounding"`): Prefix of the logged rates;
            `None` logs nothing.
        name (`str`, *optional*, defaults to `"groundedness"`): `__name__`, hence the `rewards/<name>/mean` key.

    Example:
    >>> reward = Groundedness()
    >>> completions = [[{"role": "assistant", "content": c}] for c in ("red", "blue", "cannot tell", "red")]
    >>> reward(completions, answer=["red"] * 4, answerable=[True, True, True, False])
    [1.0, -1.0, -0.5, -1.0]
    >>> logged = {}
    >>> _ = reward(["cannot tell"], answer=["red"], answerable=[False], log_metric=logged.__setitem__)
    >>> logged["grounding/abstention_unanswerable"], logged["grounding/mirage_rate"]
    (1.0, 0.0)
    """

    def __init__(
        self,
        table: RewardTable | Mapping[str, float] | None = None,
        abstention_phrases: Sequence[str] | None = None,
        evidence_phrases: Sequence[str] | None = None,
        tol: float = DEFAULT_TOL,
        metrics_prefix: str | None = "grounding",
        name: str = "groundedness",
    ) -> None:
        if table is None:
            table = RewardTable()
        elif isinstance(table, Mapping):
            table = RewardTable.from_dict(table)
        elif not isinstance(table, RewardTable):
            raise TypeError(f"table must be a RewardTable or a mapping, got {type(table).__name__}")
        self.table = table
        self.abstention_phrases = None if abstention_phrases is None else tuple(abstention_phrases)
        self.evidence_phrases = None if evidence_phrases is None else tuple(evidence_phrases)
        self.tol = tol
        self.metrics_prefix = metrics_prefix
        self.__name__ = name

    def __repr__(self) -> str:
        return f"Groundedness(name={self.__name__!r}, table={self.table})"

    def __call__(
        self,
        completions: Sequence[Any],
        answer: Sequence[str | None] | None = None,
        answerable: Sequence[bool | None] | None = None,
        choices: Sequence[Sequence[str] | None] | None = None,
        condition: Sequence[str | None] | None = None,
        log_metric: MetricLogger | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        n = len(completions)
        answer = read_column(self.__name__, "answer", answer, n)
        answerable = [as_bool(v) for v in read_column(self.__name__, "answerable", answerable, n)]
        choices = [None] * n if choices is None else read_column(self.__name__, "choices", choices, n)
        condition = None if condition is None else read_column(self.__name__, "condition", condition, n)
        judgements = [
            None
            if gold is None or ok is None
            else judge(
                completion,
                gold,
                options,
                abstention_phrases=self.abstention_phrases,
                evidence_phrases=self.evidence_phrases,
                tol=self.tol,
            )
            for completion, gold, ok, options in zip(completions, answer, answerable, choices, strict=True)
        ]
        if self.metrics_prefix is not None:
            log_rates(log_metric, behaviour_rates(judgements, answerable, condition, self.metrics_prefix))
        return [None if j is None else self.table.score(ok, j) for j, ok in zip(judgements, answerable, strict=True)]

"""Reward functions for GRPO (TRL's contract: `fn(completions, **columns) -> list[float | None]`), by name.

A recipe names the rewards and weights them with TRL's `reward_weights` (same order):

```yaml
# Rewards
reward_funcs: [groundedness, format]
reward_weights: [1.0, 0.2]
```

`get_reward_funcs(names, **kwargs)` instantiates only the named rewards; keyword arguments are keyed by reward
name (`get_reward_funcs(["groundedness"], groundedness={"table": {"answerable_abstain": -0.25}})`). A name of the
form `pkg.module:attr` imports your own reward: a function is used as is, a class is instantiated with its kwargs.
Each reward's `__name__` is its dashboard key in TRL (`rewards/<name>/mean`). See `docs/rewards.md`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from difflib import get_close_matches
from typing import Any

from rlkit.rewards.accuracy import Accuracy
from rlkit.rewards.answers import (
    ABSTAIN_TEXT,
    DEFAULT_ABSTENTION_PHRASES,
    EVIDENCE_PHRASES,
    INABILITY_PHRASES,
    Judgement,
    completion_to_text,
    extract_answer,
    is_abstention,
    is_correct,
    judge,
    normalize,
)
from rlkit.rewards.format import Format, Overlong
from rlkit.rewards.grounding import Groundedness, RewardTable, behaviour_rates

RewardFunc = Callable[..., list[float | None]]

# Name -> factory (a class whose kwargs are the reward's options). Nothing is built until a recipe names it.
REWARDS: dict[str, Callable[..., RewardFunc]] = {
    "accuracy": Accuracy,
    "groundedness": Groundedness,
    "format": Format,
    "overlong": Overlong,
}

__all__ = [
    "ABSTAIN_TEXT",
    "DEFAULT_ABSTENTION_PHRASES",
    "EVIDENCE_PHRASES",
    "INABILITY_PHRASES",
    "REWARDS",
    "Accuracy",
    "Format",
    "Groundedness",
    "Judgement",
    "Overlong",
    "RewardFunc",
    "RewardTable",
    "available_rewards",
    "behaviour_rates",
    "build_reward",
    "completion_to_text",
    "extract_answer",
    "get_reward_funcs",
    "is_abstention",
    "is_correct",
    "judge",
    "normalize",
]


def available_rewards() -> list[str]:
    """Names accepted by `build_reward` (besides `pkg.module:attr` paths)."""
    return sorted(REWARDS)


def _did_you_mean(name: str, options: Sequence[str]) -> str:
    close = get_close_matches(name, options, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"{hint}available: {', '.join(options)}"


def _import_path(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"reward path {path!r} must look like 'pkg.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"cannot import module {module_name!r} of reward {path!r}: {err}") from err
    obj = module
    for part in attr.split("."):  # "module:Class.factory" works too
        if not hasattr(obj, part):
            public = [n for n in dir(module) if not n.startswith("_")]
            raise AttributeError(
                f"module {module_name!r} has no {attr!r} (reward {path!r}); {_did_you_mean(part, public)}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"reward {path!r} is a {type(obj).__name__}, not a function or class")
    return obj


def _check_kwargs(name: str, factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    """Fail on misspelt options before the factory's own TypeError, with the accepted names."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature: let the call itself complain
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in kwargs:
        if key not in accepted:
            raise TypeError(f"reward {name!r} has no option {key!r}; {_did_you_mean(key, accepted)}")


def build_reward(name: str, /, **kwargs: Any) -> RewardFunc:
    """Build one reward function by registry name or `pkg.module:attr` path.

    Args:
        name (`str`): A key of `REWARDS` (see `available_rewards()`), or `pkg.module:attr`. A class is
            instantiated with `kwargs`; a function is returned as is, or wrapped in `functools.partial` when
            `kwargs` are given (TRL names a partial after the wrapped function).
        **kwargs: Options of that reward (e.g. `table=...` for `groundedness`).

    Returns:
        A callable following TRL's reward contract, with a `__name__`.

    Raises:
        `KeyError`: Unknown name (with "did you mean ... / available: ...").
        `TypeError`: Unknown option for that reward.

    Example:
    >>> build_reward("groundedness", table={"answerable_abstain": -0.25}).table.abstain_threshold
    0.375
    >>> build_reward("acuracy")
    Traceback (most recent call last):
    ...
    KeyError: "unknown reward 'acuracy'; did you mean 'accuracy'? available: accuracy, format, groundedness, overlong"
    """
    if ":" in name:
        factory = _import_path(name)
    elif name in REWARDS:
        factory = REWARDS[name]
    else:
        path_hint = "; your own reward is named 'pkg.module:function'" if "." in name else ""
        raise KeyError(f"unknown reward {name!r}; {_did_you_mean(name, available_rewards())}{path_hint}")
    _check_kwargs(name, factory, kwargs)
    if inspect.isclass(factory):
        return factory(**kwargs)
    return functools.partial(factory, **kwargs) if kwargs else factory


def get_reward_funcs(names: str | Sequence[str], /, **kwargs: Mapping[str, Any]) -> list[RewardFunc]:
    """Build the reward functions a recipe names, in order (the order of `reward_weights`).

    Args:
        names (`str` or `Sequence[str]`): Reward names or `pkg.module:attr` paths; a string may list several,
            comma-separated.
        **kwargs: Options per reward, keyed by its name: `groundedness={"table": {...}}`. A path's options are
            passed as `**{"pkg.module:attr": {...}}`.

    Returns:
        `list`: One callable per name, to pass as `GRPOTrainer(reward_funcs=...)`.

    Raises:
        `ValueError`: No names, a name listed twice (TRL would log both under one key), or options for a reward
            that is not listed.

    Example:
    >>> funcs = get_reward_funcs("groundedness, format", format={"strict": True})
    >>> [f.__name__ for f in funcs], funcs[1].strict
    (['groundedness', 'format'], True)
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    if not names:
        raise ValueError(f"no reward functions named; available: {', '.join(available_rewards())}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"reward(s) listed twice: {duplicates}; to use one twice, list the second by path "
            "(e.g. 'rlkit.rewards.grounding:Groundedness') with a distinct `name` option"
        )
    for key in kwargs:
        if key not in names:
            raise ValueError(
                f"options given for reward {key!r}, which is not in reward_funcs; {_did_you_mean(key, names)}"
            )
    for key, options in kwargs.items():
        if not isinstance(options, Mapping):
            raise TypeError(f"options of reward {key!r} must be a mapping of keyword arguments, got {options!r}")
    return [build_reward(name, **dict(kwargs.get(name, {}))) for name in names]

"""The reward registry (names, kwargs, dotted paths, errors) and the `>>>` examples in the reward docstrings."""

import doctest
import functools
import importlib

import pytest

from rlkit import rewards
from rlkit.rewards import REWARDS, available_rewards, build_reward, get_reward_funcs


def _metric_name(func) -> str:
    """How TRL 1.16 names a reward on the dashboard (`trl.trainer.utils.get_callable_name`, copied: importing TRL
    costs ~13 s on CPU, more than this whole file)."""
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__name__", type(func).__name__)


def test_every_registered_reward_builds_with_defaults_and_is_named_after_its_key():
    assert available_rewards() == ["accuracy", "format", "groundedness", "overlong"]
    for name in REWARDS:
        assert _metric_name(build_reward(name)) == name


def test_get_reward_funcs_builds_only_what_is_named(monkeypatch):
    built = []

    class Spy:
        def __init__(self, **kwargs):
            built.append(kwargs)
            self.__name__ = "spy"

    monkeypatch.setitem(REWARDS, "spy", Spy)
    funcs = get_reward_funcs(["groundedness", "format"], format={"strict": True})
    assert [_metric_name(f) for f in funcs] == ["groundedness", "format"]
    assert funcs[1].strict is True
    assert built == []  # registered but not named: never instantiated
    get_reward_funcs("spy", spy={"x": 1})
    assert built == [{"x": 1}]


def test_reward_kwargs_reach_the_reward():
    funcs = get_reward_funcs(
        "groundedness, overlong",
        groundedness={"table": {"answerable_abstain": -0.25}, "metrics_prefix": None},
        overlong={"max_tokens": 128, "soft_margin": 32},
    )
    assert funcs[0].table.abstain_threshold == pytest.approx(0.375)
    assert funcs[0].metrics_prefix is None
    assert (funcs[1].max_tokens, funcs[1].soft_margin) == (128, 32)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: build_reward("acuracy"), KeyError, "did you mean 'accuracy'"),
        (lambda: build_reward("nonsense"), KeyError, "available: accuracy, format, groundedness, overlong"),
        (lambda: build_reward("groundedness", tabel={}), TypeError, "has no option 'tabel'; did you mean 'table'"),
        (lambda: build_reward("groundedness", table={"answerable_abstian": 0.0}), ValueError, "did you mean"),
        (lambda: get_reward_funcs([]), ValueError, "no reward functions named"),
        (lambda: get_reward_funcs(["format", "format"]), ValueError, "listed twice"),
        (lambda: get_reward_funcs(["format"], fromat={}), ValueError, "not in reward_funcs; did you mean 'format'"),
        (lambda: get_reward_funcs(["format"], format=True), TypeError, "must be a mapping"),
        (lambda: build_reward("rlkit.rewards.grounding"), KeyError, "your own reward is named 'pkg.module:function'"),
        (lambda: build_reward("rlkit.rewards.grounding:"), ValueError, "must look like 'pkg.module:function'"),
        (lambda: build_reward("rlkit.no_such_module:f"), ImportError, "cannot import module"),
        (lambda: build_reward("rlkit.rewards.grounding:Groundednes"), AttributeError, "did you mean 'Groundedness'"),
        (lambda: build_reward("rlkit.rewards.answers:ABSTAIN_TEXT"), TypeError, "not a function or class"),
    ],
)
def test_registry_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_dotted_path_escape_hatch():
    # A class is instantiated with its options (here a second groundedness reward under its own dashboard key).
    strict = build_reward(
        "rlkit.rewards.grounding:Groundedness", name="groundedness_strict", table={"answerable_abstain": -0.9}
    )
    assert _metric_name(strict) == "groundedness_strict"
    # A plain function is used as is, or wrapped in a partial that TRL still names after the function.
    assert build_reward("rlkit.rewards.answers:normalize") is rewards.answers.normalize
    wrapped = build_reward("rlkit.rewards.answers:is_abstention", phrases=["pass"])
    assert isinstance(wrapped, functools.partial)
    assert _metric_name(wrapped) == "is_abstention"
    funcs = get_reward_funcs(
        ["groundedness", "rlkit.rewards.grounding:Groundedness"],
        **{"rlkit.rewards.grounding:Groundedness": {"name": "groundedness_lenient"}},
    )
    assert [_metric_name(f) for f in funcs] == ["groundedness", "groundedness_lenient"]


@pytest.mark.parametrize("module", ["answers", "accuracy", "grounding", "format", "__init__"])
def test_docstring_examples_run(module):
    name = "rlkit.rewards" if module == "__init__" else f"rlkit.rewards.{module}"
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0

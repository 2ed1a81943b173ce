"""Shape rewards: `<answer>` tags (Format) and the length budget (Overlong)."""

import pickle

import pytest

from rlkit.rewards.format import Format, Overlong


@pytest.mark.parametrize(
    ("completion", "lenient", "strict"),
    [
        ("<answer>red</answer>", 1.0, 1.0),
        ("  <answer> red </answer>\n<|im_end|>", 1.0, 1.0),  # special tokens and whitespace ignored
        ("<think>blue? no.</think>\n<answer>red</answer>", 1.0, 1.0),
        ("I looked. <answer>red</answer>", 1.0, 0.0),
        ("<answer>red</answer> because it is", 1.0, 0.0),
        ("<ANSWER>red</ANSWER>", 1.0, 1.0),
        ("red", 0.0, 0.0),
        ("<answer>red", 0.0, 0.0),  # truncated
        ("<answer>  </answer>", 0.0, 0.0),  # empty
        ("<answer>red</answer><answer>blue</answer>", 0.0, 0.0),  # two answers
        ("</answer>red<answer>", 0.0, 0.0),
        ("", 0.0, 0.0),
        ("<|image_pad|><|im_end|>", 0.0, 0.0),
        ([{"role": "assistant", "content": "<answer>cannot tell</answer>"}], 1.0, 1.0),  # abstaining is well formed
    ],
)
def test_format(completion, lenient, strict):
    assert Format()([completion]) == [lenient]
    assert Format(strict=True)([completion]) == [strict]


def test_format_custom_tag_and_validation():
    assert Format(tag="final")(["<final>red</final>", "<answer>red</answer>"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="plain XML name"):
        Format(tag="<answer>")


def test_format_logs_per_condition_rates():
    logged: dict[str, float] = {}
    Format()(
        ["<answer>a</answer>", "a", "<answer>b</answer>"],
        condition=["normal", "normal", "corrupted"],
        log_metric=logged.__setitem__,
    )
    assert logged == {"format/rate": 2 / 3, "format/normal/rate": 0.5, "format/corrupted/rate": 1.0}


@pytest.mark.parametrize(
    ("length", "expected"),
    [(0, 0.0), (6, 0.0), (7, -0.25), (8, -0.5), (9, -0.75), (10, -1.0), (11, -1.0), (500, -1.0)],
)
def test_overlong_soft_ramp(length, expected):
    reward = Overlong(max_tokens=10, soft_margin=4)
    assert reward(["x"], completion_ids=[[0] * length]) == [pytest.approx(expected)]


def test_overlong_hard_budget_chars_and_penalty():
    assert Overlong(max_tokens=3)(["x", "x"], completion_ids=[[0] * 3, [0] * 4]) == [0.0, -1.0]
    assert Overlong(max_chars=5, penalty=0.5)(["short", "longer", "<|im_end|>short<|im_end|>"]) == [0.0, -0.5, 0.0]
    assert Overlong().max_tokens == 256  # TRL's default max_completion_length


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 10, "max_chars": 10}, "not both"),
        ({"max_tokens": 0}, "positive integer"),
        ({"max_tokens": 10, "soft_margin": 11}, "soft_margin must be in"),
        ({"max_tokens": 10, "penalty": -1.0}, "magnitude"),
    ],
)
def test_overlong_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Overlong(**kwargs)


def test_overlong_needs_completion_ids_to_count_tokens():
    with pytest.raises(KeyError, match="max_chars"):
        Overlong(max_tokens=10)(["x"])


def test_overlong_logs_the_over_budget_rate():
    logged: dict[str, float] = {}
    Overlong(max_tokens=2)(
        ["a", "b"], completion_ids=[[0], [0, 0, 0]], condition=["normal", "corrupted"], log_metric=logged.__setitem__
    )
    assert logged == {"overlong/rate": 0.5, "overlong/normal/rate": 0.0, "overlong/corrupted/rate": 1.0}


def test_shape_rewards_are_picklable():
    for reward in (Format(strict=True), Overlong(max_chars=7, soft_margin=2)):
        clone = pickle.loads(pickle.dumps(reward))
        assert clone.__name__ == reward.__name__
        assert repr(clone) == repr(reward)

"""The groundedness and accuracy rewards: every table cell, validation, and the rates logged through log_metric."""

import math
import pickle

import pytest

from rlkit.rewards.accuracy import Accuracy
from rlkit.rewards.answers import Judgement
from rlkit.rewards.grounding import Groundedness, RewardTable, behaviour_rates

# One completion per behaviour, for a row whose ground truth is "red".
BEHAVIOURS = {
    "correct": [{"role": "assistant", "content": "<answer>red</answer>"}],
    "wrong": [{"role": "assistant", "content": "<answer>blue</answer>"}],
    "abstain": [{"role": "assistant", "content": "<answer>cannot tell</answer>"}],
    "empty": [{"role": "assistant", "content": ""}],
}
CUSTOM = RewardTable(
    answerable_correct=2.0,
    answerable_wrong=-3.0,
    answerable_abstain=0.25,
    unanswerable_abstain=0.5,
    unanswerable_answer=-4.0,
)


@pytest.mark.parametrize("table", [RewardTable(), CUSTOM], ids=["default", "custom"])
@pytest.mark.parametrize(
    ("answerable", "behaviour", "cell"),
    [
        (True, "correct", "answerable_correct"),
        (True, "wrong", "answerable_wrong"),
        (True, "abstain", "answerable_abstain"),
        (True, "empty", "answerable_wrong"),  # silence is a wrong answer
        (False, "correct", "unanswerable_answer"),  # a guess that matches the original answer is still a mirage
        (False, "wrong", "unanswerable_answer"),
        (False, "abstain", "unanswerable_abstain"),
        (False, "empty", "unanswerable_answer"),  # silence never earns the abstention reward
    ],
)
def test_every_cell_of_the_table(table, answerable, behaviour, cell):
    reward = Groundedness(table=table)
    assert reward([BEHAVIOURS[behaviour]], answer=["red"], answerable=[answerable]) == [getattr(table, cell)]


def test_default_table_values():
    assert RewardTable().to_dict() == {
        "answerable_correct": 1.0,
        "answerable_wrong": -1.0,
        "answerable_abstain": -0.5,
        "unanswerable_abstain": 1.0,
        "unanswerable_answer": -1.0,
    }


def test_accuracy_is_blind_to_answerable():
    completions = [BEHAVIOURS[b] for b in ("correct", "wrong", "abstain", "empty")] * 2
    answerable = [True] * 4 + [False] * 4
    assert Accuracy()(completions, answer=["red"] * 8, answerable=answerable) == [1.0, 0.0, 0.0, 0.0] * 2


@pytest.mark.parametrize("a", [-1.0, -0.5, 0.0, 0.5, 0.9])
def test_abstaining_pays_exactly_below_the_threshold(a):
    """E[answer] = p*c + (1-p)*w beats E[abstain] = a exactly when p > (1 + a) / 2 (c = 1, w = -1)."""
    table = RewardTable(answerable_abstain=a)
    assert table.abstain_threshold == pytest.approx((1 + a) / 2)
    for p in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0):
        expected_answer = p * table.answerable_correct + (1 - p) * table.answerable_wrong
        if not math.isclose(p, table.abstain_threshold):
            assert (table.answerable_abstain > expected_answer) == (p < table.abstain_threshold)


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ({"unanswerable_abstain": -1.0, "unanswerable_answer": -1.0}, "unanswerable_abstain=-1.0 must be greater"),
        ({"unanswerable_abstain": -2.0}, "no mirages"),
        ({"answerable_wrong": 1.0}, "answerable_correct=1.0 must be greater than answerable_wrong=1.0"),
        ({"answerable_abstain": 1.5}, "abstain everywhere"),
        ({"answerable_correct": math.nan}, "finite number"),
        ({"answerable_correct": "1"}, "finite number"),
    ],
)
def test_table_validation(cells, message):
    with pytest.raises(ValueError, match=message):
        RewardTable(**cells)


def test_table_from_mapping_rejects_typos():
    assert Groundedness(table={"answerable_abstain": -0.25}).table.answerable_abstain == -0.25
    with pytest.raises(ValueError, match="did you mean 'answerable_abstain'"):
        RewardTable.from_dict({"answerable_abstian": -0.25})
    with pytest.raises(TypeError, match="RewardTable or a mapping"):
        Groundedness(table=[1.0])


def test_rows_without_ground_truth_return_none():
    reward = Groundedness()
    assert reward(["red", "red"], answer=["red", None], answerable=[None, True]) == [None, None]
    assert Accuracy()(["red", "red"], answer=[None, "red"]) == [None, 1.0]


def test_missing_columns_fail_with_the_column_name():
    with pytest.raises(KeyError, match="needs the dataset column 'answerable'"):
        Groundedness()(["red"], answer=["red"])
    with pytest.raises(KeyError, match="needs the dataset column 'answer'"):
        Accuracy()(["red"])
    with pytest.raises(ValueError, match="has 2 values for 1 completions"):
        Groundedness()(["red"], answer=["red", "red"], answerable=[True])
    with pytest.raises(TypeError, match="must hold booleans"):
        Groundedness()(["red"], answer=["red"], answerable=["False"])


# --- trainer contract and logging ----------------------------------------------------------------------------------

# A batch as GRPOTrainer builds it (TRL 1.16 `_calculate_rewards`): every dataset column repeated per generation,
# plus prompts, completion_ids, trainer_state, log_extra and log_metric.
COMPLETIONS = [
    BEHAVIOURS[b] for b in ("correct", "wrong", "abstain", "correct", "abstain", "wrong", "abstain", "wrong")
]
COLUMNS = {
    "answer": ["red"] * 8,
    "choices": [[]] * 8,
    "answerable": [True, True, True, False, False, False, False, True],
    "target": ["answer", "answer", "answer", "abstain", "abstain", "abstain", "abstain", "answer"],
    "condition": ["normal", "normal", "normal", "corrupted", "corrupted", "mismatched", "mismatched", "corrupted"],
    "corruption": ["", "", "", "blank", "blank", "", "", "blur"],
    "task": ["color"] * 8,
    "question": ["What colour is the ball?"] * 8,
    "source_id": ["s0"] * 8,
}


def _trl_call(reward, log_metric):
    return reward(
        prompts=[[{"role": "user", "content": "q"}]] * 8,
        completions=COMPLETIONS,
        completion_ids=[[1, 2, 3]] * 8,
        trainer_state=None,
        log_extra=lambda column, values: None,
        log_metric=log_metric,
        **COLUMNS,
    )


def test_rewards_accept_the_trainer_call_and_log_rates():
    logged: dict[str, list[float]] = {}

    def log_metric(name: str, value: float) -> None:  # what TRL's GRPOTrainer._log_metric receives
        logged.setdefault(name, []).append(value)

    rewards = _trl_call(Groundedness(), log_metric)
    assert rewards == [1.0, -1.0, -0.5, -1.0, 1.0, -1.0, 1.0, -1.0]
    rates = {name: values[-1] for name, values in logged.items()}
    assert rates == {
        "grounding/abstain_rate": 3 / 8,
        "grounding/accuracy": 2 / 8,
        "grounding/accuracy_answerable": 1 / 4,
        "grounding/over_abstention": 1 / 4,
        "grounding/abstention_unanswerable": 2 / 4,
        "grounding/mirage_rate": 2 / 4,
        "grounding/normal/abstain_rate": 1 / 3,
        "grounding/normal/accuracy": 1 / 3,
        "grounding/corrupted/abstain_rate": 1 / 3,  # rows 3 (guess), 4 (abstain), 7 (wrong, answerable)
        "grounding/corrupted/accuracy": 1 / 3,
        "grounding/corrupted/mirage_rate": 1 / 2,
        "grounding/mismatched/abstain_rate": 1 / 2,
        "grounding/mismatched/accuracy": 0.0,
        "grounding/mismatched/mirage_rate": 1 / 2,
    }
    assert all(isinstance(v, float) for v in rates.values())

    # The accuracy reward logs the same behaviour rates (same judge), so the standard arm is comparable.
    logged.clear()
    assert _trl_call(Accuracy(), log_metric) == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert logged["grounding/mirage_rate"] == [0.5]


def test_logging_can_be_renamed_or_disabled():
    logged: dict[str, float] = {}
    _trl_call(Groundedness(metrics_prefix="g2"), logged.__setitem__)
    assert logged and all(key.startswith("g2/") for key in logged)
    logged.clear()
    _trl_call(Groundedness(metrics_prefix=None), logged.__setitem__)
    _trl_call(Accuracy(metrics_prefix=None), logged.__setitem__)
    assert logged == {}


def test_behaviour_rates_skip_empty_denominators():
    rates = behaviour_rates([Judgement("red", False, True), None], answerable=[True, False], condition=["normal", ""])
    assert rates == {
        "grounding/abstain_rate": 0.0,
        "grounding/accuracy": 1.0,
        "grounding/accuracy_answerable": 1.0,
        "grounding/over_abstention": 0.0,
        "grounding/normal/abstain_rate": 0.0,
        "grounding/normal/accuracy": 1.0,
    }
    assert behaviour_rates([]) == {}


def test_rewards_are_picklable_and_named():
    for reward, name in [(Groundedness(table=CUSTOM), "groundedness"), (Accuracy(name="acc_v2"), "acc_v2")]:
        clone = pickle.loads(pickle.dumps(reward))
        assert clone.__name__ == name
        assert clone(COMPLETIONS, **COLUMNS) == reward(COMPLETIONS, **COLUMNS)


def test_rewards_are_deterministic_and_do_not_mutate_inputs():
    reward = Groundedness()
    columns = {k: list(v) for k, v in COLUMNS.items()}
    first = reward(COMPLETIONS, **columns)
    assert reward(COMPLETIONS, **columns) == first
    assert columns == COLUMNS

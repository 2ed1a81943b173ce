"""Self-consistency: majority share, point-biserial R and AUROC, and defined output on degenerate input."""

import json

import numpy as np
import pytest

from rlkit.eval.consistency import majority_share, self_consistency


@pytest.mark.parametrize(
    ("samples", "share"),
    [(["red"], 1.0), (["red", "Red ", "blue", "red"], 0.75), (["1", "2", "3", "4"], 0.25),
     (["a", "b", "a", "b"], 0.5), (["I can't tell"] * 3, 1.0)],
)
def test_majority_share(samples, share):
    assert majority_share(samples) == share


def test_r_and_auroc_exact():
    samples = [["a"] * 4, ["a", "a", "a", "b"], ["a", "a", "b", "b"], ["a", "b", "a", "c"]]
    correct = [True, False, True, False]
    r = self_consistency(samples, correct)
    assert r["majority_share"] == [1.0, 0.75, 0.5, 0.5]
    # Positive/negative pairs: (1 > .75), (1 > .5), (.5 < .75), (.5 = .5) -> (1 + 1 + 0 + 0.5) / 4.
    assert r["auroc"] == {"value": 0.625, "reason": None}
    # Point-biserial R is Pearson's r between the 0/1 outcome and the share.
    expected = np.corrcoef([1, 0, 1, 0], [1.0, 0.75, 0.5, 0.5])[0, 1]
    assert r["point_biserial_r"]["value"] == pytest.approx(expected)
    assert 0 < r["point_biserial_r"]["p_value"] <= 1
    assert r["mean_share_correct"] == 0.75 and r["mean_share_incorrect"] == 0.625
    assert (r["n_items"], r["k_min"], r["k_max"]) == (4, 4, 4)
    json.dumps(r, allow_nan=False)


def test_consistent_items_predict_correctness():
    rng = np.random.default_rng(0)
    correct = rng.random(200) < 0.5
    # Correct items agree more: 8 of 10 samples vs 4 of 10.
    samples = [["x"] * (8 if c else 4) + [f"o{j}" for j in range(2 if c else 6)] for c in correct]
    r = self_consistency(samples, correct.tolist())
    assert r["auroc"]["value"] == 1.0 and r["point_biserial_r"]["value"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("samples", "correct", "reason"),
    [
        ([["a", "b"], ["a", "a"]], [True, True], "one class"),
        ([["a", "b"], ["a", "a"]], [False, False], "one class"),
        ([["a"], ["b"], ["c"]], [True, False, True], "K = 1"),
        ([["a", "a"], ["b", "b"]], [True, False], "constant"),
    ],
)
def test_degenerate_inputs_give_null_with_reason(samples, correct, reason):
    r = self_consistency(samples, correct)
    assert r["point_biserial_r"]["value"] is None and r["auroc"]["value"] is None
    assert reason in r["point_biserial_r"]["reason"] and reason in r["auroc"]["reason"]
    assert len(r["majority_share"]) == len(samples)
    json.dumps(r, allow_nan=False)


@pytest.mark.parametrize(
    ("samples", "correct", "message"),
    [
        ([["a"]], [True, False], "2 items|1 items"),
        ([], [], "no items"),
        ([["a"], []], [True, False], "item 1"),
        (["abc"], [True], "item 0"),
    ],
)
def test_invalid_inputs_raise(samples, correct, message):
    with pytest.raises(ValueError, match=message):
        self_consistency(samples, correct)

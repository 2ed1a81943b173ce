"""Behaviour metrics on hand-made predictions, with exact expected figures."""

import json

import numpy as np
import pytest

from rlkit.eval.metrics import (
    METRICS_VERSION,
    RATE_METRICS,
    compute_metrics,
    read_predictions,
    write_metrics,
)


def row(source_id, condition, *, answerable, abstained=False, correct=False, corruption="", parsed=None):
    return {
        "idx": 0, "source_id": source_id, "condition": condition, "corruption": corruption, "severity": 0.0,
        "task": "color", "question": f"q {source_id}?", "answer": "red", "answerable": answerable,
        "target": "answer" if answerable else "abstain", "completion": "",
        "parsed": "" if abstained else (parsed or ("red" if correct else "blue")),
        "abstained": abstained, "correct": correct,
    }


def hand_made():
    """4 sources; each a normal and a blank row, s1/s2 a blur row, s3 a mismatched row (11 rows).

    normal : s1 ok, s2 ok, s3 ok, s4 wrong           -> accuracy 3/4
    blank  : s1 abstains, s2 guesses the prior answer, s3 guesses wrong, s4 abstains
    blur   : s1 ok, s2 abstains (answerable)          -> accuracy 1/2, over-abstention 1/2
    mismatched: s3 guesses wrong
    """
    blank = {"condition": "corrupted", "corruption": "blank", "answerable": False}
    blur = {"condition": "corrupted", "corruption": "blur", "answerable": True}
    return [
        row("s1", "normal", answerable=True, correct=True),
        row("s2", "normal", answerable=True, correct=True),
        row("s3", "normal", answerable=True, correct=True),
        row("s4", "normal", answerable=True, correct=False),
        row("s1", abstained=True, **blank),
        row("s2", correct=True, **blank),
        row("s3", correct=False, **blank),
        row("s4", abstained=True, **blank),
        row("s1", correct=True, **blur),
        row("s2", abstained=True, **blur),
        row("s3", "mismatched", answerable=False, correct=False),
    ]


def values(section):
    return {k: v["value"] for k, v in section.items()}


def test_overall_exact_values():
    m = compute_metrics(hand_made(), n_boot=0)
    o = m["overall"]
    assert values(o) == pytest.approx({
        "accuracy_answerable": 4 / 6,  # 3 normal + 1 blur correct, of 6 answerable rows
        "abstention_unanswerable": 2 / 5,  # 2 blank abstentions of 5 unanswerable rows
        "mirage_rate": 3 / 5,
        "mirage_prior_match": 1 / 3,  # of 3 mirages only s2/blank guessed the original answer
        "over_abstention": 1 / 6,
        "hallucination_rate": 4 / 11,  # s4 normal wrong + 3 mirages
        "truthfulness": (4 - 4) / 11,
        "image_reliance_gap": 0.5,  # per source normal - blank: 1, 0, 1, 0
    })
    assert {k: v["n"] for k, v in o.items()} == {
        "accuracy_answerable": 6, "abstention_unanswerable": 5, "mirage_rate": 5, "mirage_prior_match": 3,
        "over_abstention": 6, "hallucination_rate": 11, "truthfulness": 11, "image_reliance_gap": 4}
    assert m["metrics_version"] == METRICS_VERSION
    assert (m["n_rows"], m["n_sources"]) == (11, 4)


def test_per_condition_and_corruption_exact_values():
    m = compute_metrics(hand_made(), n_boot=0)
    normal = m["by_condition"]["normal"]
    assert normal["accuracy_answerable"]["value"] == 0.75  # 3 of 4
    assert normal["truthfulness"]["value"] == 0.5  # (3 grounded correct - 1 wrong) / 4
    # No unanswerable normal row: null, not NaN, and n = 0.
    assert normal["mirage_rate"] == {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    assert list(m["by_condition"]) == ["normal", "corrupted", "mismatched"]
    corrupted = values(m["by_condition"]["corrupted"])
    assert corrupted["accuracy_answerable"] == 0.5 and corrupted["abstention_unanswerable"] == 0.5
    blank = values(m["by_corruption"]["blank"])
    assert blank["mirage_rate"] == 0.5 and blank["mirage_prior_match"] == 0.5
    assert blank["accuracy_answerable"] is None
    assert blank["paired_accuracy_drop"] == 0.5  # equals the overall image-reliance gap
    blur = values(m["by_corruption"]["blur"])
    assert blur["accuracy_answerable"] == 0.5 and blur["over_abstention"] == 0.5
    assert blur["paired_accuracy_drop"] == 0.5  # s1: 1 - 1, s2: 1 - 0
    mismatched = values(m["by_condition"]["mismatched"])
    assert mismatched["mirage_rate"] == 1.0 and mismatched["mirage_prior_match"] == 0.0


def test_abstained_rows_never_count_as_correct():
    preds = [row("s1", "normal", answerable=True, abstained=True, correct=True)]  # inconsistent input
    m = compute_metrics(preds, n_boot=0)
    assert m["overall"]["accuracy_answerable"]["value"] == 0.0
    assert m["overall"]["truthfulness"]["value"] == 0.0  # abstention is neutral


def test_truthfulness_counts_mirage_matching_prior_as_hallucination():
    # A correct guess on a blank image is not grounded: -1, like a wrong answer.
    preds = [row("s1", "normal", answerable=True, correct=True),
             row("s1", "corrupted", corruption="blank", answerable=False, correct=True)]
    m = compute_metrics(preds, n_boot=0)
    assert m["overall"]["truthfulness"]["value"] == 0.0
    assert m["overall"]["hallucination_rate"]["value"] == 0.5


def test_image_reliance_gap_pairs_by_source():
    blank = {"condition": "corrupted", "corruption": "blank", "answerable": False}
    preds = [
        row("a", "normal", answerable=True, correct=True),
        row("a", correct=True, **blank),  # same answer without the image: gap 0
        row("b", "normal", answerable=True, correct=True),
        row("b", abstained=True, **blank),  # gap 1
        row("b", correct=True, **blank),  # second blank row of b: b's blank accuracy is 1/2, gap 0.5
        row("c", "normal", answerable=True, correct=True),  # no blank row: not paired
        row("d", correct=False, **blank),  # no normal row: not paired
    ]
    gap = compute_metrics(preds, n_boot=200, seed=0)["overall"]["image_reliance_gap"]
    assert gap["n"] == 2
    assert gap["value"] == pytest.approx((0 + 0.5) / 2)
    # Unpaired accuracies would give 3/3 - 2/4 = 0.5: pairing matters.
    assert gap["ci_low"] <= gap["value"] <= gap["ci_high"]
    assert gap["ci_low"] >= 0.0 and gap["ci_high"] <= 0.5


def test_cis_bracket_value_and_are_deterministic():
    preds = hand_made() * 1  # 11 rows, 4 sources
    a = compute_metrics(preds, n_boot=500, seed=3)
    b = compute_metrics(preds, n_boot=500, seed=3)
    c = compute_metrics(preds, n_boot=500, seed=4)
    assert a == b
    assert a != c
    for section in [a["overall"], *a["by_condition"].values(), *a["by_corruption"].values()]:
        for metric in section.values():
            if metric["value"] is None:
                continue
            assert metric["ci_low"] <= metric["value"] + 1e-12
            assert metric["value"] <= metric["ci_high"] + 1e-12


def test_bootstrap_resamples_sources_not_rows():
    rng = np.random.default_rng(0)
    correct = rng.random(30) < 0.6
    one_row = [row(f"s{i}", "normal", answerable=True, correct=bool(c)) for i, c in enumerate(correct)]
    # Ten identical rows per source: under a cluster bootstrap this is the same evidence as one row.
    ten_rows = [r for r in one_row for _ in range(10)]
    a = compute_metrics(one_row, n_boot=400, seed=0)["overall"]["accuracy_answerable"]
    b = compute_metrics(ten_rows, n_boot=400, seed=0)["overall"]["accuracy_answerable"]
    assert b["n"] == 300 and a["value"] == pytest.approx(b["value"])
    assert (b["ci_low"], b["ci_high"]) == pytest.approx((a["ci_low"], a["ci_high"]))
    assert a["ci_high"] - a["ci_low"] > 0.2  # 30 sources, not 300 independent rows


def test_constant_outcome_gives_degenerate_ci():
    preds = [row(f"s{i}", "normal", answerable=True, correct=True) for i in range(5)]
    acc = compute_metrics(preds, n_boot=100)["overall"]["accuracy_answerable"]
    assert acc == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 5}


def test_output_is_strict_json(tmp_path):
    m = compute_metrics(hand_made(), n_boot=50)
    path = write_metrics(tmp_path / "sub" / "metrics.json", m)
    assert json.loads(path.read_text()) == m
    assert set(m["overall"]) == set(RATE_METRICS) | {"image_reliance_gap"}
    with pytest.raises(ValueError):
        write_metrics(tmp_path / "bad.json", {"x": float("nan")})


def test_read_predictions_roundtrip_and_errors(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in hand_made()) + "\n\n")
    assert read_predictions(path) == hand_made()
    path.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"predictions\.jsonl:2"):
        read_predictions(path)


@pytest.mark.parametrize(
    ("preds", "message"),
    [
        ([], "no predictions"),
        ([{"source_id": "a", "condition": "normal"}], "lacks keys"),
        ([row("a", "blurry", answerable=True)], "is not one of"),
    ],
)
def test_invalid_input_errors(preds, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(preds, n_boot=0)


def test_no_bootstrap_gives_null_cis():
    acc = compute_metrics(hand_made(), n_boot=0)["overall"]["accuracy_answerable"]
    assert acc["ci_low"] is None and acc["ci_high"] is None and acc["value"] == pytest.approx(4 / 6)

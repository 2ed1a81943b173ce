"""Linear probes: planted signal, chance on shuffled labels, grouped CV against leakage, text baseline on the
same folds, difference probe, labels, and pickle-free save/load."""

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rlkit.eval.probes import (
    LinearProbe,
    by_damage_auroc,
    correct_labels,
    fit_difference_probes,
    fit_layer_probes,
    load_probe,
    make_folds,
    mirage_labels,
    save_probe,
    save_probe_results,
    text_baseline,
    within_group_auroc,
)


def planted(seed=0, n=400, n_layers=4, d=16, layer=2, strength=2.5):
    """Gaussian activations; the label shifts one direction of one layer. Groups are pairs of rows."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, n_layers, d))
    x[:, layer, 0] += strength * (2 * y - 1)
    return x, y, np.arange(n) // 2


def memorisable(seed=0, n_groups=200, rows=3, d=256):
    """Each group: a random offset (its 'question') and one label for all its rows; no signal across groups.

    With d > n_groups a linear model can memorise every training group, so any split that puts rows of one
    group on both sides scores high while carrying no generalisable signal.
    """
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0, 1, (n_groups, d))
    group_label = rng.integers(0, 2, n_groups)
    groups = np.repeat(np.arange(n_groups), rows)
    x = offsets[groups] + 0.3 * rng.normal(0, 1, (len(groups), d))
    return x[:, None, :], group_label[groups], groups


def plain_kfold_ids(n, seed=0):
    fold_ids = np.empty(n, dtype=int)
    for k, (_, test) in enumerate(KFold(5, shuffle=True, random_state=seed).split(np.zeros(n))):
        fold_ids[test] = k
    return fold_ids


def test_probe_recovers_planted_signal_at_its_layer():
    x, y, groups = planted()
    result = fit_layer_probes(x, y, groups, layer_ids=[4, 8, 12, 16])
    assert result.auroc[2] > 0.95
    assert result.best_layer == 12 and result.probe.layer == 12
    for j in (0, 1, 3):
        assert abs(result.auroc[j] - 0.5) < 0.1
    assert result.oof_scores.shape == (400, 4) and result.n_positive == int(y.sum())
    assert len(result.fold_auroc) == 4 and all(len(f) == 5 for f in result.fold_auroc)
    json.dumps(result.to_dict(), allow_nan=False)


def test_probe_is_at_chance_on_shuffled_labels():
    x, y, groups = planted()
    shuffled = np.random.default_rng(1).permutation(y)
    result = fit_layer_probes(x, shuffled, groups)
    assert all(abs(a - 0.5) < 0.1 for a in result.auroc)


def test_grouped_cv_prevents_leakage_that_plain_kfold_shows():
    x, y, groups = memorisable()
    leaky = fit_layer_probes(x, y, groups, fold_ids=plain_kfold_ids(len(y)))
    grouped = fit_layer_probes(x, y, groups)
    assert leaky.auroc[0] > 0.9  # memorised group offsets, not a real signal
    assert abs(grouped.auroc[0] - 0.5) < 0.15
    # Every group sits in exactly one test fold.
    for g in np.unique(groups):
        assert len(np.unique(grouped.fold_ids[groups == g])) == 1


def test_make_folds_is_deterministic_and_keeps_groups_together():
    _, y, groups = planted()
    a, b = make_folds(y, groups, 5, seed=0), make_folds(y, groups, 5, seed=0)
    assert np.array_equal(a, b) and set(a.tolist()) == set(range(5))
    assert not np.array_equal(a, make_folds(y, groups, 5, seed=1))
    for g in np.unique(groups):
        assert len(np.unique(a[groups == g])) == 1


def test_text_baseline_uses_the_given_folds():
    _, y, groups = memorisable(n_groups=150, rows=2, d=1)
    rng = np.random.default_rng(0)
    # One random word per group, the same in all its rows (like a question shared by a pair and its blank).
    words = [f"tok{rng.integers(10**9)}" for _ in range(150)]
    texts = [f"what colour is the {words[g]} ?" for g in groups]
    grouped = text_baseline(texts, y, groups)
    leaky = text_baseline(texts, y, groups, fold_ids=plain_kfold_ids(len(y)))
    assert leaky > 0.9 and abs(grouped - 0.5) < 0.15

    # Same folds as the probe: passing the probe's fold_ids equals recomputing them from the same inputs.
    x = np.random.default_rng(1).normal(size=(len(y), 1, 4))
    probe = fit_layer_probes(x, y, groups, seed=3)
    assert text_baseline(texts, y, groups, fold_ids=probe.fold_ids) == text_baseline(texts, y, groups, seed=3)


def test_within_group_auroc_exact_values():
    # a: pos 0.9, 0.4 vs neg 0.5, 0.1 -> 3 of 4; b: pos 0.3 vs neg 0.3 (tie), 0.2 -> 1.5 of 2;
    # c: positives only, d: a negative only -> no pairs; e: pos 0.1 vs neg 0.9 -> 0 of 1. Rows interleaved.
    rows = [("a", 1, 0.9), ("b", 1, 0.3), ("c", 1, 0.8), ("a", 0, 0.5), ("e", 1, 0.1), ("b", 0, 0.3),
            ("d", 0, 0.6), ("a", 1, 0.4), ("c", 1, 0.7), ("e", 0, 0.9), ("a", 0, 0.1), ("b", 0, 0.2)]
    groups, labels, scores = zip(*rows)
    assert within_group_auroc(scores, labels, groups) == (4.5 / 7, 7)
    assert within_group_auroc([0.8, 0.7, 0.6], [1, 1, 0], ["c", "c", "d"]) == (None, 0)
    assert within_group_auroc([], [], []) == (None, 0)
    with pytest.raises(ValueError, match="0/1"):
        within_group_auroc([0.1, 0.2], [1, -1], ["a", "a"])
    with pytest.raises(ValueError, match="same length"):
        within_group_auroc([0.1, 0.2], [1, 0], ["a"])


def test_by_damage_auroc_exact_values():
    # normal rows score 0.1, 0.4 (label 0). blank: 0.9, 0.8 (label 1) -> separated, 1.0. swap: 0.3 (1) and
    # 0.2 (1) -> 0.3 beats 0.1 only, 0.2 beats 0.1 only: 2 of 4 = 0.5. blur: one label-0 row 0.5 and one
    # label-1 row 0.45 -> positives {0.45} vs negatives {0.1, 0.4, 0.5}: 2 of 3. hint: label 0 only -> None.
    scores = np.array([0.1, 0.4, 0.9, 0.8, 0.3, 0.2, 0.5, 0.45, 0.6])
    labels = np.array([0, 0, 1, 1, 1, 1, 0, 1, 0])
    damages = ["normal", "normal", "corrupted/blank", "corrupted/blank", "mismatched/swap", "mismatched/swap",
               "corrupted/blur", "corrupted/blur", "text_interference/hint"]
    out = by_damage_auroc(scores, labels, damages)
    assert list(out) == ["corrupted/blank", "corrupted/blur", "mismatched/swap", "text_interference/hint"]
    assert out["corrupted/blank"] == {"auroc": 1.0, "n": 4}
    assert out["corrupted/blur"] == {"auroc": pytest.approx(2 / 3), "n": 4}
    assert out["mismatched/swap"] == {"auroc": 0.5, "n": 4}
    assert out["text_interference/hint"] == {"auroc": None, "n": 3}


def test_within_group_auroc_matches_a_loop_over_pairs():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, 300) / 4  # coarse scores: many ties
    labels, groups = rng.integers(0, 2, 300), rng.integers(0, 40, 300)
    wins = [float(scores[i] > scores[j]) + 0.5 * (scores[i] == scores[j]) for i in range(300) for j in range(300)
            if groups[i] == groups[j] and labels[i] == 1 and labels[j] == 0]
    assert within_group_auroc(scores, labels, groups) == pytest.approx((np.mean(wins), len(wins)))


def test_text_cannot_rank_rows_of_one_question_but_the_probe_can():
    x, y, groups = planted()  # groups are pairs of rows; the label is in the activations only
    texts = [f"what colour is the object {g} ?" for g in groups]  # one text per group
    probe = fit_layer_probes(x, y, groups)
    auroc, scores = text_baseline(texts, y, groups, fold_ids=probe.fold_ids, return_scores=True)
    assert auroc == text_baseline(texts, y, groups, fold_ids=probe.fold_ids) and scores.shape == y.shape
    text_within, pairs = within_group_auroc(scores, y, groups)
    assert text_within == 0.5 and pairs == sum(len(set(y[groups == g])) == 2 for g in np.unique(groups))
    probe_within, probe_pairs = within_group_auroc(probe.best_scores, y, groups)
    assert probe_pairs == pairs and probe_within > 0.95
    assert np.array_equal(probe.best_scores, probe.oof_scores[:, 2])  # layer 2 carries the signal


def test_text_baseline_finds_a_textual_signal():
    _, y, groups = planted()
    texts = [("is the apple red" if label else "how many cats are there") + f" item {i}" for i, label in
             enumerate(y)]
    assert text_baseline(texts, y, groups) > 0.95
    # One-character tokens count: the label is only in the digit.
    digits = [f"are there {3 if label else 4} cats" for label in y]
    assert text_baseline(digits, y, groups) == 1.0
    with pytest.raises(ValueError, match="empty texts"):
        text_baseline([""] * len(y), y, groups)


def test_difference_probe_sees_what_the_image_adds():
    rng = np.random.default_rng(0)
    n, d = 300, 8
    y = rng.integers(0, 2, n)
    blank = rng.normal(0, 5, (n, 2, d))  # large question-driven variation shared by both passes
    image = blank + rng.normal(0, 0.1, (n, 2, d))
    image[:, 1, 0] += 1.0 * y  # the image's contribution carries the label
    groups = np.arange(n) // 3
    diff = fit_difference_probes(image, blank, y, groups)
    raw = fit_layer_probes(image, y, groups)
    assert diff.feature == "difference" and diff.probe.feature == "difference"
    assert diff.best_layer == 1 and diff.best_auroc > 0.95
    assert diff.best_auroc > raw.best_auroc + 0.1
    with pytest.raises(ValueError, match="same shape"):
        fit_difference_probes(image, blank[:, :1], y, groups)


def pred(source_id, condition, *, answerable, abstained=False, parsed="red", corruption="", correct=False):
    return {"source_id": source_id, "condition": condition, "corruption": corruption, "answerable": answerable,
            "abstained": abstained, "parsed": "" if abstained else parsed, "correct": correct}


def test_mirage_labels_follow_seed_000():
    blank = {"condition": "corrupted", "corruption": "blank", "answerable": False}
    preds = [
        pred("a", "normal", answerable=True, parsed="Red"),  # same answer as without image -> 1
        pred("a", parsed="red", **blank),  # answers an unanswerable item -> 1
        pred("b", "normal", answerable=True, parsed="red"),  # different from blank answer -> 0
        pred("b", parsed="blue", **blank),  # -> 1
        pred("c", "normal", answerable=True, parsed="red"),  # blank abstained -> 0
        pred("c", abstained=True, **blank),  # -> 0
        pred("d", "normal", answerable=True, parsed="red"),  # no blank row: undetermined -> -1
        pred("d", "normal", answerable=True, abstained=True),  # abstention -> 0
        pred("a", "corrupted", corruption="blur", answerable=True, parsed="red"),  # same as blank -> 1
        pred("a", "text_interference", answerable=True, parsed="red"),  # question changed -> 0
        pred("e", "mismatched", answerable=False, parsed="3"),  # -> 1
        pred("e", "mismatched", answerable=False, abstained=True),  # -> 0
    ]
    assert mirage_labels(preds).tolist() == [1, 1, 0, 1, 0, 0, -1, 0, 1, 0, 1, 0]


def test_correct_labels():
    preds = [pred("a", "normal", answerable=True, correct=True),
             pred("a", "normal", answerable=True, correct=False),
             pred("a", "normal", answerable=True, abstained=True, correct=True)]
    assert correct_labels(preds).tolist() == [1, 0, 0]


def test_save_load_roundtrip_matches_sklearn_without_pickle(tmp_path):
    x, y, groups = planted(n=200, d=6)
    x = 50.0 + 10.0 * x  # non-trivial scaler statistics
    x[:, :, 3] = 7.0  # a constant feature: sklearn's scale_ is 1 there
    result = fit_layer_probes(x, y, groups, pooling="image_mean")
    save_probe(tmp_path / "probe", result.probe)
    files = sorted(p.name for p in (tmp_path / "probe").iterdir())
    assert files == ["probe.json", "probe.safetensors"]
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.joblib"))

    loaded = load_probe(tmp_path / "probe")
    # The same pipeline sklearn would fit on all rows at the best layer.
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=0))
    reference.fit(x[:, result.best_layer], y)
    expected = reference.predict_proba(x[:, result.best_layer])[:, 1]
    np.testing.assert_allclose(loaded.score(x[:, result.best_layer]), expected, atol=1e-5)
    assert loaded.score(x[0, result.best_layer]).shape == (1,)

    meta = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert meta | {"auroc": None} == {
        "layer": result.best_layer, "pooling": "image_mean", "feature": "hidden", "label_name": "mirage",
        "auroc": None, "n": 200, "model_id": None, "model_hash": None, "n_features": 6, "format_version": 1}
    assert meta["auroc"] == pytest.approx(result.best_auroc)
    with pytest.raises(ValueError, match=r"\[n, 6\]"):
        loaded.score(np.zeros((2, 5)))


def test_save_probe_results_layout(tmp_path):
    x, y, groups = planted(n=120, n_layers=2, layer=1)
    result = fit_layer_probes(x, y, groups)
    diff = fit_difference_probes(x, np.zeros_like(x), y, groups)
    within = {"probe": 0.9, "text": 0.5, "pairs": 12}
    by_damage = {"corrupted/blank": {"auroc": 1.0, "n": 40}}
    summary = save_probe_results(tmp_path, result, text_auroc=0.6, difference=diff, model_id="tiny",
                                 within_question=within, by_damage=by_damage)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "difference_probe/probe.json", "difference_probe/probe.safetensors",
        "probe/probe.json", "probe/probe.safetensors", "probes.json"]
    assert json.loads((tmp_path / "probes.json").read_text()) == summary
    assert summary["probe_minus_text"] == pytest.approx(result.best_auroc - 0.6)
    assert summary["within_question"] == within and summary["by_damage"] == by_damage
    assert load_probe(tmp_path / "probe").model_id == "tiny"
    assert load_probe(tmp_path / "difference_probe").feature == "difference"


def test_load_probe_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"probe\.json"):
        load_probe(tmp_path)
    probe = LinearProbe(mean=np.zeros(3), scale=np.ones(3), coef=np.ones(3), intercept=0.0, layer=1)
    save_probe(tmp_path, probe)
    meta = json.loads((tmp_path / "probe.json").read_text())
    (tmp_path / "probe.json").write_text(json.dumps(meta | {"format_version": 99}))
    with pytest.raises(ValueError, match="format_version"):
        load_probe(tmp_path)


@pytest.mark.parametrize(
    ("labels", "groups", "message"),
    [
        (np.ones(20, dtype=int), np.arange(20), "one class"),
        (np.tile([0, 1], 10), np.arange(20) % 3, "need at least n_splits groups"),
        (np.r_[np.zeros(10, int), -np.ones(10, int)], np.arange(20), "drop them"),
        (np.r_[1, np.zeros(19, int)], np.arange(20), "label 1 occurs in 1 group"),
        (np.tile([0, 1], 10), np.arange(19), "shape"),
    ],
)
def test_degenerate_probe_inputs_raise(labels, groups, message):
    x = np.random.default_rng(0).normal(size=(20, 2, 3))
    with pytest.raises(ValueError, match=message):
        fit_layer_probes(x, labels, groups)


def test_features_must_be_three_dimensional():
    with pytest.raises(ValueError, match=r"\[n, L, d\]"):
        fit_layer_probes(np.zeros((20, 3)), np.tile([0, 1], 10), np.arange(20))

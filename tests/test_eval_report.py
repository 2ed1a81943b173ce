"""report.md and its plots, with every part present and with parts missing."""

import doctest

import numpy as np
import pytest

import rlkit.eval
from rlkit.eval import consistency as consistency_module
from rlkit.eval import metrics as metrics_module
from rlkit.eval import probes as probes_module
from rlkit.eval.consistency import self_consistency
from rlkit.eval.metrics import compute_metrics
from rlkit.eval.probes import fit_difference_probes, fit_layer_probes, summarize_probes
from rlkit.eval.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def predictions():
    blank = {"condition": "corrupted", "corruption": "blank", "answerable": False}
    rows = []
    for i in range(8):
        s = f"s{i}"
        rows.append({"source_id": s, "condition": "normal", "corruption": "", "answerable": True,
                     "abstained": False, "correct": i < 6, "parsed": "red"})  # 6 of 8 correct
        rows.append({"source_id": s, "abstained": i % 2 == 0, "correct": False, "parsed": "", **blank})
    return rows


@pytest.fixture(scope="module")
def parts():
    metrics = compute_metrics(predictions(), n_boot=200, seed=0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    x = rng.normal(size=(120, 3, 5))
    x[:, 1, 0] += 3 * y
    groups = np.arange(120) // 2
    probe = fit_layer_probes(x, y, groups, layer_ids=[0, 6, 12])
    diff = fit_difference_probes(x, np.zeros_like(x), y, groups, layer_ids=[0, 6, 12])
    probe_results = summarize_probes(probe, text_auroc=0.55, difference=diff,
                                     within_question={"probe": 0.9, "text": 0.5, "pairs": 42})
    sc = self_consistency([["a", "a", "b"], ["a", "b", "c"], ["x", "x", "x"], ["p", "q", "q"]],
                          [True, False, True, False])
    return metrics, probe_results, sc


def test_full_report_writes_markdown_and_all_plots(tmp_path, parts):
    metrics, probe_results, sc = parts
    path = write_report(tmp_path / "out", metrics, probe_results, sc)
    assert path == tmp_path / "out" / "report.md"
    for name in ("conditions.png", "probe_auroc.png", "consistency.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
        assert f"]({name})" in path.read_text()
    text = path.read_text()
    assert "| normal | 0.750 [" in text  # 6 of 8 correct on normal rows
    assert "| corrupted / blank | n/a (n=0) | 0.500 [" in text  # half the blank rows abstain
    assert "image-reliance gap" in text and "text-only baseline" in text
    assert "best layer: **6**" in text and "| 12 |" in text
    assert "; within question 0.900\n" in text and "; within question 0.500\n" in text
    assert "over the 42 (positive, negative) pairs" in text
    assert "AUROC of majority share | 0.875 |" in text  # 3.5 of 4 pairs ranked right
    assert "skipped" not in text


def test_missing_parts_are_skipped_with_a_note(tmp_path, parts):
    metrics, _, _ = parts
    path = write_report(tmp_path, metrics, None, None)
    text = path.read_text()
    assert "No probe results given" in text and "No self-consistency results given" in text
    assert (tmp_path / "conditions.png").exists()
    assert not (tmp_path / "probe_auroc.png").exists() and not (tmp_path / "consistency.png").exists()
    empty = write_report(tmp_path / "empty", None)
    assert "No metrics given" in empty.read_text()


def test_degenerate_consistency_still_reports(tmp_path):
    sc = self_consistency([["a"], ["b"]], [True, True])
    text = write_report(tmp_path, None, consistency=sc).read_text()
    assert "Undefined: correctness has one class" in text
    assert (tmp_path / "consistency.png").read_bytes().startswith(PNG_MAGIC)


def test_probe_section_without_text_baseline_or_difference(tmp_path, parts):
    _, probe_results, _ = parts
    bare = probe_results | {"text_baseline": {"auroc": None}, "probe_minus_text": None, "difference_probe": None,
                            "within_question": None}
    text = write_report(tmp_path, None, bare).read_text()
    assert "AUROC n/a" in text and "difference AUROC" not in text and "within question" not in text
    assert (tmp_path / "probe_auroc.png").exists()


def test_probe_results_keyed_by_label_with_a_skipped_one(tmp_path, parts):
    _, probe_results, _ = parts
    evidence = {**probe_results, "by_damage": {"corrupted/blank": {"auroc": 0.99, "n": 200},
                                               "mismatched/swap": {"auroc": None, "n": 100}}}
    both = {"mirage": probe_results, "correct": {"skipped": "labels have one class only"},
            "unanswerable": evidence}
    text = write_report(tmp_path, None, both).read_text()
    assert "### mirage" in text and "best layer: **6**" in text
    assert "### unanswerable" in text and "not the model's behaviour" in text
    assert "| corrupted/blank | 200 | 0.990 |" in text and "| mismatched/swap | 100 | n/a |" in text
    assert "### correct" in text and "_Skipped: labels have one class only._" in text
    assert (tmp_path / "probe_auroc.png").exists()
    text = write_report(tmp_path / "none", None, {"correct": {"skipped": "too few groups"}}).read_text()
    assert "_Skipped: too few groups._" in text and not (tmp_path / "none" / "probe_auroc.png").exists()


@pytest.mark.parametrize("module", [metrics_module, consistency_module, probes_module])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_package_exports_resolve_lazily():
    for name in rlkit.eval.__all__:
        assert getattr(rlkit.eval, name) is not None
    with pytest.raises(AttributeError):
        rlkit.eval.not_a_name  # noqa: B018

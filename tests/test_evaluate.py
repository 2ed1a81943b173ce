"""End-to-end evaluation of the tiny model on a small built dataset, and its input errors."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from rlkit.eval.evaluate import EvalSettings, evaluate
from rlkit.eval.metrics import read_predictions

SETTINGS = EvalSettings(batch_size=32, max_new_tokens=4, consistency_samples=2, probe_folds=3, n_boot=50)


@pytest.fixture(scope="module")
def evaluated(tiny_qwen, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "tiny"
    result = evaluate(str(tiny_qwen), tiny_data, out, SETTINGS)
    return out, result


def test_evaluate_writes_every_output(evaluated, tiny_data):
    out, result = evaluated
    for name in ("predictions.jsonl", "metrics.json", "consistency.json", "report.md", "conditions.png"):
        assert (out / name).is_file(), name
    preds = read_predictions(out / "predictions.jsonl")
    from data_builders.contract import load_built

    assert len(preds) == len(load_built(tiny_data, "eval"))  # one prediction per eval row, none dropped
    assert {p["condition"] for p in preds} == {"normal", "corrupted", "mismatched", "text_interference"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_rows"] == len(preds) and set(metrics["by_condition"]) == {p["condition"] for p in preds}
    # The random-weight model never says "cannot tell": every unanswerable row is a mirage.
    assert metrics["overall"]["mirage_rate"]["value"] == pytest.approx(
        np.mean([not p["abstained"] for p in preds if not p["answerable"]]))
    assert result["overall"] == metrics["overall"]
    # Attention entropy is opt-in: off by default, nothing written, nothing returned.
    assert not (out / "attention_entropy.json").exists() and result["attention_entropy"] is None
    assert "attention entropy" not in (out / "report.md").read_text().lower()


def test_probes_are_saved_without_pickle_and_reload(evaluated):
    out, result = evaluated
    assert not list(out.rglob("*.pkl")) and not list(out.rglob("*.joblib"))
    for label, summary in result["probes"].items():
        if "skipped" in summary:  # a degenerate label (e.g. never correct) is reported, not fitted
            assert summary["skipped"]
            continue
        folder = out / "probes" / label
        saved = json.loads((folder / "probes.json").read_text())
        assert 0.0 <= saved["probe"]["best_auroc"] <= 1.0 and saved["text_baseline"]["auroc"] is not None
        tensors = load_file(str(folder / "probe" / "probe.safetensors"))
        assert tensors["coef"].shape == (128,)  # the tiny model's hidden size
    report = (out / "report.md").read_text()
    assert set(result["probes"]) == {"mirage", "correct", "unanswerable"}
    assert all(f"### {label}" in report for label in result["probes"])  # every probe label, fitted or skipped
    # The evidence probe's label comes from the data, so it is always fitted; one AUROC per damage vs normal.
    evidence = result["probes"]["unanswerable"]
    preds = read_predictions(out / "predictions.jsonl")
    assert evidence["probe"]["n"] == len(preds) and evidence["probe"]["n_positive"] == sum(
        not p["answerable"] for p in preds)
    damages = {p["condition"] + (f"/{p['corruption']}" if p["corruption"] else "") for p in preds} - {"normal"}
    assert set(evidence["by_damage"]) == damages
    assert evidence["by_damage"]["corrupted/blank"]["auroc"] is not None
    assert evidence["difference_probe"] is None and not (out / "probes" / "unanswerable" / "difference_probe").exists()


def test_evaluate_refuses_to_overwrite(evaluated, tiny_qwen, tiny_data):
    out, _ = evaluated
    with pytest.raises(FileExistsError, match="--overwrite"):
        evaluate(str(tiny_qwen), tiny_data, out, SETTINGS)


def test_evaluate_input_errors(tiny_qwen, tiny_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate(str(tmp_path / "no-model"), tiny_data, tmp_path / "a", SETTINGS)
    with pytest.raises(FileNotFoundError, match="no built dataset"):
        evaluate(str(tiny_qwen), tmp_path / "no-data", tmp_path / "b", SETTINGS)
    with pytest.raises(KeyError, match="available splits"):
        evaluate(str(tiny_qwen), tiny_data, tmp_path / "c", EvalSettings(split="test"))

    # An empty split: keep the eval split's schema, drop every row.
    import datasets

    from data_builders.contract import FEATURES

    built = datasets.load_from_disk(str(tiny_data))
    datasets.DatasetDict({"train": built["train"], "eval": datasets.Dataset.from_dict(
        {c: [] for c in FEATURES}, features=FEATURES)}).save_to_disk(
        str(tmp_path / "empty-built"), num_shards={"train": 1, "eval": 1})  # datasets 5.2 cannot reload 0 shards
    shutil.copy(tiny_data / "manifest.json", tmp_path / "empty-built" / "manifest.json")
    with pytest.raises(ValueError, match="no rows to evaluate"):
        evaluate(str(tiny_qwen), tmp_path / "empty-built", tmp_path / "d", SETTINGS)

    # A missing column names itself.
    broken = tmp_path / "broken"
    datasets.DatasetDict({"train": built["train"], "eval": built["eval"].remove_columns("answerable")}).save_to_disk(
        str(broken))
    with pytest.raises(ValueError, match="answerable"):
        evaluate(str(tiny_qwen), broken, tmp_path / "e", SETTINGS)

"""Scoring new (image, question) pairs with a probe saved by evaluate(): same features, same prompt, same numbers."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from rlkit.eval.evaluate import EvalSettings, evaluate
from rlkit.eval.probes import load_probe, score_example, score_examples

# Cheapest evaluate() that still fits probes: no sampling, no bootstrap, 3 folds for 12 sources.
SETTINGS = EvalSettings(batch_size=32, max_new_tokens=4, consistency_samples=0, probe_folds=3, n_boot=0)


@pytest.fixture(scope="module")
def evaluated(tiny_qwen, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-score") / "tiny"
    evaluate(str(tiny_qwen), tiny_data, out, SETTINGS)
    return out


@pytest.fixture(scope="module")
def model_and_processor(tiny_qwen):
    from rlkit.models.load import ModelArguments, load_model, load_processor

    args = ModelArguments(model_name_or_path=str(tiny_qwen), dtype="auto")
    return load_model(args).eval(), load_processor(args)


@pytest.fixture(scope="module")
def rows(tiny_data):
    from data_builders.contract import load_built

    return [dict(row) for row in load_built(tiny_data, split="eval")]


def _feature_score(model, processor, probe, row_list):
    """The probe's score computed by hand from hidden_features of the rows as built."""
    from rlkit.eval.generate import hidden_features

    return probe.score(hidden_features(model, processor, row_list)[probe.pooling][:, probe.layer])


def test_score_example_equals_the_probe_on_the_rows_hidden_features(evaluated, model_and_processor, rows, tiny_qwen):
    from data_builders.config import DEFAULT_INSTRUCTION
    from data_builders.prompts import make_prompt

    model, processor = model_and_processor
    probe = load_probe(evaluated / "probes" / "mirage" / "probe")
    assert probe.model_id == str(tiny_qwen) and probe.feature == "hidden"
    row = next(r for r in rows if r["condition"] == "normal")
    # The default prompt is the builders' prompt: a bare question reproduces the row's stored prompt.
    assert make_prompt(DEFAULT_INSTRUCTION.replace("{question}", row["question"])) == row["prompt"]
    got = score_example(model, processor, row["image"], row["question"], probe)
    assert isinstance(got, float) and 0.0 < got < 1.0
    assert got == pytest.approx(_feature_score(model, processor, probe, [row])[0], abs=1e-5)


def test_batch_equals_single_and_prompt_override(evaluated, model_and_processor, rows):
    model, processor = model_and_processor
    probe = load_probe(evaluated / "probes" / "mirage" / "probe")
    # One row per condition, text_interference included: its shown question differs, so pass the prompt.
    picked = [next(r for r in rows if r["condition"] == c)
              for c in ("normal", "corrupted", "mismatched", "text_interference")]
    picked += [r for r in rows if r["corruption"] == "blank"][:3]
    prompts = [r["prompt"] for r in picked]
    batch = score_examples(model, processor, [r["image"] for r in picked], None, probe, prompts=prompts,
                           batch_size=3)  # 7 rows in batches of 3: crosses batch boundaries
    single = [score_example(model, processor, r["image"], None, probe, prompt=r["prompt"]) for r in picked]
    assert batch.shape == (len(picked),)
    np.testing.assert_allclose(batch, single, atol=1e-5)
    np.testing.assert_allclose(batch, _feature_score(model, processor, probe, picked), atol=1e-5)
    assert len(set(np.round(batch, 6))) > 1  # the rows are scored individually, not one constant
    # A prompt given as user text is wrapped like the builders do.
    text = picked[0]["prompt"][0]["content"][1]["text"]
    assert score_example(model, processor, picked[0]["image"], None, probe, prompt=text) == pytest.approx(single[0],
                                                                                                       abs=1e-6)


def test_difference_probe_subtracts_the_blank_image(evaluated, model_and_processor, rows):
    from rlkit.eval.generate import hidden_features

    model, processor = model_and_processor
    folder = evaluated / "probes" / "mirage" / "difference_probe"
    assert folder.is_dir(), "the tiny eval set has blank rows, so evaluate() fits a difference probe"
    probe = load_probe(folder)
    assert probe.feature == "difference"
    row = next(r for r in rows if r["condition"] == "normal")
    blank = next(r for r in rows if r["source_id"] == row["source_id"] and r["corruption"] == "blank")
    assert blank["prompt"] == row["prompt"]
    # The dataset's own blank row (built with the data config's blank colour) is what score_example rebuilds.
    h = hidden_features(model, processor, [row, blank])[probe.pooling][:, probe.layer]
    expected = probe.score(h[0] - h[1])[0]
    assert score_example(model, processor, row["image"], row["question"], probe) == pytest.approx(expected, abs=1e-5)
    # Another blank colour gives another feature, so the colour really is used.
    other = score_example(model, processor, row["image"], row["question"], probe, blank_color=(0, 0, 0))
    assert other != pytest.approx(expected, abs=1e-6)


def test_probe_that_does_not_fit_the_model_is_refused(evaluated, model_and_processor, rows):
    model, processor = model_and_processor
    probe = load_probe(evaluated / "probes" / "mirage" / "probe")
    row = rows[0]
    narrow = replace(probe, mean=probe.mean[:64], scale=probe.scale[:64], coef=probe.coef[:64])
    with pytest.raises(ValueError, match=r"size 64.*hidden size 128"):
        score_example(model, processor, row["image"], row["question"], narrow)
    with pytest.raises(ValueError, match=r"layer 9.*5 hidden states"):
        score_example(model, processor, row["image"], row["question"], replace(probe, layer=9))
    with pytest.raises(ValueError, match="2 images but 1"):
        score_examples(model, processor, [row["image"]] * 2, [row["question"]], probe)


def test_probes_module_imports_without_torch():
    code = "import sys, rlkit.eval.probes as p; p.score_example; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)

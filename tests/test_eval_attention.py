"""Spatial attention entropy: the formula, the opt-in forward pass, and the files evaluate() writes."""

import json
import math

import numpy as np
import pytest
import torch

from rlkit.eval import generate
from rlkit.eval.evaluate import (
    EvalSettings,
    attention_entropy_summary,
    evaluate,
    features,
)
from rlkit.eval.metrics import read_predictions


def test_entropy_is_over_image_tokens_renormalised_and_head_averaged():
    mask = torch.tensor([[False, True, True, True, True, False]])  # 4 image tokens among 6 keys
    uniform = torch.tensor([0.5, 0.1, 0.1, 0.1, 0.1, 0.1])  # uniform over the image tokens only
    peaked = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    weights = torch.stack([uniform, peaked])[None, :, None, :]  # [n=1, heads=2, queries=1, keys=6]
    got = generate.image_attention_entropy(weights, mask)
    assert got.shape == (1,) and got.item() == pytest.approx(math.log(4) / 2)  # heads: log 4 and 0
    assert math.isnan(generate.image_attention_entropy(weights, torch.zeros(1, 6, dtype=torch.bool)).item())


def test_summary_auroc_uses_entropy_as_the_score():
    row = {"condition": "normal", "corruption": "", "answerable": True, "abstained": False, "parsed": "red"}
    preds = [{**row, "idx": i, "source_id": f"s{i}", "correct": i % 2 == 0} for i in range(6)]
    entropy = np.array([[0.1, 1.0], [0.9, 1.0], [0.2, 1.0], [0.8, 1.0], [0.3, 1.0], [0.7, 1.0]])
    out = attention_entropy_summary(preds, entropy, np.full(6, 4))
    assert out["layers"] == [1, 2]
    correct = out["predicts"]["correct"]
    assert correct["auroc"] == [0.0, 0.5]  # low entropy <=> correct: AUROC 0; a constant: 0.5
    assert correct["n_positive"] == 3 and correct["mean_entropy_positive"][0] == pytest.approx(0.2)
    assert out["predicts"]["mirage"]["n"] == 0 and out["predicts"]["mirage"]["reason"]  # no blank rows: all -1
    json.dumps(out, allow_nan=False)


@pytest.fixture(scope="module")
def model_and_processor(tiny_qwen):
    from rlkit.models.load import ModelArguments, load_model, load_processor

    args = ModelArguments(model_name_or_path=str(tiny_qwen), dtype="auto")
    return load_model(args).eval(), load_processor(args)


def test_forward_pass_requests_attention_only_when_asked(model_and_processor, tiny_data, monkeypatch):
    from data_builders.contract import load_built

    model, processor = model_and_processor
    rows = [dict(row, idx=i) for i, row in enumerate(load_built(tiny_data, split="eval").select(range(5)))]
    attention = [layer.self_attn for layer in model.get_decoder().layers]
    calls = []
    forward = type(model).forward

    def ours() -> int:  # our entropy hooks (transformers keeps output-recording hooks of its own there)
        return sum(h.__qualname__.startswith("hidden_features.") for m in attention for h in m._forward_hooks.values())

    def spy(self, *args, **kwargs):
        calls.append({"output_attentions": kwargs.get("output_attentions"),
                      "implementation": self.config._attn_implementation,
                      "hooks": ours()})
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", spy)
    off = features(model, processor, rows, EvalSettings(batch_size=2))
    assert "attention_entropy" not in off
    assert calls and all(c == {"output_attentions": None, "implementation": "sdpa", "hooks": 0} for c in calls)

    calls.clear()
    on = features(model, processor, rows, EvalSettings(batch_size=2, attention_entropy=True))
    assert all(c["implementation"] == "eager" and c["hooks"] == len(attention) for c in calls)
    assert not calls[0]["output_attentions"]  # hooks read each layer's weights; nothing kept for the output
    assert model.config._attn_implementation == "sdpa" and ours() == 0
    assert on["attention_entropy"].shape == (5, len(attention))
    # Same pass, same hidden states (up to eager vs SDPA rounding).
    np.testing.assert_allclose(on["last_token"], off["last_token"], atol=1e-4)

    with pytest.raises(ValueError, match="eager"):
        generate.hidden_features(model, processor, rows[:1], attention_entropy=True)
    with generate.eager_attention(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"


def test_evaluate_writes_attention_entropy_per_row_and_layer(tiny_qwen, tiny_data, tmp_path, model_and_processor):
    settings = EvalSettings(max_new_tokens=4, consistency_samples=0, probes=False, n_boot=0, attention_entropy=True)
    result = evaluate(str(tiny_qwen), tiny_data, tmp_path / "on", settings)
    saved = json.loads((tmp_path / "on" / "attention_entropy.json").read_text())
    assert saved == json.loads(json.dumps(result["attention_entropy"]))
    n_layers = model_and_processor[0].config.get_text_config().num_hidden_layers
    preds = read_predictions(tmp_path / "on" / "predictions.jsonl")
    assert saved["layers"] == list(range(1, n_layers + 1)) and saved["n_rows"] == len(preds) == len(saved["rows"])
    for row, pred in zip(saved["rows"], preds, strict=True):
        assert row["idx"] == pred["idx"] and len(row["entropy"]) == n_layers and row["n_image_tokens"] > 1
        assert all(0.0 <= h <= math.log(row["n_image_tokens"]) + 1e-5 for h in row["entropy"])
    for label in ("correct", "mirage"):
        aurocs = saved["predicts"][label]["auroc"]
        assert len(aurocs) == n_layers and all(a is None or 0.0 <= a <= 1.0 for a in aurocs)
    assert any(a is not None for a in saved["predicts"]["mirage"]["auroc"])  # the random model mirages a lot
    report = (tmp_path / "on" / "report.md").read_text()
    assert "### Spatial attention entropy" in report and (tmp_path / "on" / "probe_auroc.png").is_file()
    assert not (tmp_path / "on" / "probes").exists()  # probes=False: only the entropy used the forward pass

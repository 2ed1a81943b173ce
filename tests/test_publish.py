"""`rlkit publish`: real run folders (tiny models, real eval files) -> hub-ready folders that load back."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rlkit.publish import PushError, check_folder, publish, push

TOKEN = "hf_rlkitTestTokenThatMustNeverLeak0123456789"
HIDDEN, LAYERS = 128, 5  # tiny Qwen: hidden size 128, embeddings + 4 layers, so the test probe fits its features


def _rows(n: int = 2) -> list[dict]:
    """Data-contract rows (image + conversational prompt), what rlkit.eval.generate consumes."""
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color is the circle?"}]}]
    return [{"image": Image.new("RGB", (56, 56), color), "prompt": prompt} for color in ("red", "blue")[:n]]


def _predictions() -> list[dict]:
    """Eight sources x (normal, blank, mismatched): a model that is right on 6/8 and abstains on half the blanks."""
    preds = []
    for i in range(8):
        base = {"source_id": f"s{i}", "task": "color", "question": "What color is the circle?", "answer": "red",
                "severity": 1.0, "completion": ""}
        preds.append(dict(base, condition="normal", corruption="", answerable=True, target="answer",
                          parsed="red" if i < 6 else "blue", abstained=False, correct=i < 6))
        preds.append(dict(base, condition="corrupted", corruption="blank", answerable=False, target="abstain",
                          parsed="" if i % 2 else "red", abstained=bool(i % 2), correct=False))
        preds.append(dict(base, condition="mismatched", corruption="", answerable=False, target="abstain",
                          parsed="", abstained=i < 5, correct=False))
    for idx, row in enumerate(preds):
        row["idx"] = idx
    return preds


def _write_eval(eval_dir) -> None:
    """metrics.json, probes/mirage/ and report.md + PNGs, written by the real rlkit.eval functions."""
    from rlkit.eval.metrics import compute_metrics, write_metrics
    from rlkit.eval.probes import fit_layer_probes, save_probe_results
    from rlkit.eval.report import write_report

    metrics = compute_metrics(_predictions(), n_boot=50, seed=0)
    write_metrics(eval_dir / "metrics.json", metrics)
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 20)
    features = rng.normal(size=(40, LAYERS, HIDDEN)).astype(np.float32)
    features[:, 2, :16] += 3.0 * labels[:, None]  # a planted signal at layer 2
    result = fit_layer_probes(features, labels, np.repeat(np.arange(10), 4), n_splits=3)
    summary = save_probe_results(eval_dir / "probes" / "mirage", result, text_auroc=0.55, model_id="tiny")
    write_report(eval_dir, metrics, summary)


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    """One evaluation folder, copied into every run folder (matplotlib and the probe fit cost seconds)."""
    path = tmp_path_factory.mktemp("eval")
    _write_eval(path)
    return path


def _make_run(root: Path, name: str, base_model: str, write_model, eval_dir: Path) -> Path:
    """runs/<name>/hallucination-groundedness/seed0 with run.json, model/, eval/ and runs/<name>/data/manifest.json."""
    run = root / name / "hallucination-groundedness" / "seed0"
    data = root / name / "data"
    data.mkdir(parents=True)
    (data / "manifest.json").write_text(json.dumps({"fingerprint": "0123456789abcdef" * 4, "source": "synthetic",
                                                    "counts": {"eval": {"rows": 24}}, "config": {"seed": 0}}))
    write_model(run / "model")
    shutil.copytree(eval_dir, run / "eval")
    recipe = {"model_name_or_path": base_model, "arm": "hallucination", "reward_funcs": ["groundedness"],
              "learning_rate": 5e-4, "num_generations": 8, "seed": 0}
    (run / "run.json").write_text(json.dumps({
        "name": name, "arm": "hallucination", "reward": "groundedness", "seed": 0, "recipe": recipe,
        "recipe_path": "recipes/tiny/grpo_hallucination.yaml", "config_hash": "abc123", "data_fingerprint":
        "0123456789abcdef" * 4, "data_dir": str(data), "base_model": base_model, "versions": {"torch": "x"},
        "git_commit": "deadbeef", "status": "done", "wall_time_s": 1.0}))
    return run


@pytest.fixture(scope="module")
def full_run(tiny_qwen, eval_dir, tmp_path_factory):
    def write_model(model_dir):
        shutil.copytree(tiny_qwen, model_dir)
        (model_dir / "training_args.bin").write_bytes(b"pickle bytes a trainer leaves behind")
        (model_dir / "README.md").write_text("trainer card\n")

    return _make_run(tmp_path_factory.mktemp("runs"), "full", str(tiny_qwen), write_model, eval_dir)


@pytest.fixture(scope="module")
def adapter_run(tiny_qwen, eval_dir, tmp_path_factory):
    from rlkit.models.load import ModelArguments, load_model, load_processor

    def write_model(model_dir):
        args = ModelArguments(model_name_or_path=str(tiny_qwen), use_peft=True, lora_r=4, dtype="float32")
        model = load_model(args)
        torch.manual_seed(0)
        with torch.no_grad():  # LoRA B starts at zero (a no-op adapter): make it matter, as training would
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.2)
        model.save_pretrained(model_dir)
        load_processor(args).save_pretrained(model_dir)

    return _make_run(tmp_path_factory.mktemp("runs"), "lora", str(tiny_qwen), write_model, eval_dir)


def _logits(model, processor) -> torch.Tensor:
    from rlkit.eval.generate import encode

    with torch.no_grad():
        return model(**encode(processor, _rows())).logits


def _generates(model, processor) -> None:
    from rlkit.eval.generate import generate

    completions = generate(model.eval(), processor, _rows(), max_new_tokens=4)
    assert len(completions) == 2 and all(isinstance(c[0], str) for c in completions)


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_full_checkpoint_loads_back_and_card_carries_exact_metrics(full_run, tmp_path):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = publish(full_run, tmp_path / "pub", license="mit")
    names = set(_files(out))
    assert {"README.md", "config.json", "model.safetensors", "tokenizer_config.json", "run.json", "recipe.yaml",
            "data_manifest.json", "eval/metrics.json", "eval/report.md", "eval/conditions.png",
            "eval/probes/mirage/probe/probe.safetensors", "eval/probes/mirage/probe/probe.json"} <= names
    assert "training_args.bin" not in names and not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)

    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    original = AutoModelForImageTextToText.from_pretrained(full_run / "model").eval()
    assert torch.equal(_logits(model, processor), _logits(original, processor))  # copied as is
    _generates(model, processor)

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and card.data.license == "mit"
    assert card.data.pipeline_tag == "image-text-to-text"
    assert {"rlkit", "grpo", "vision-language", "hallucination", "abstention", "groundedness"} <= set(card.data.tags)
    assert card.data.base_model is None  # a local tiny model is no hub id: left out rather than invalid
    assert card.data.datasets == ["rlkit-synthetic-0123456789ab"]
    assert "# rlkit-full-hallucination-groundedness-seed0" in card.text and "Tiny demo model" in card.text
    metrics = json.loads((full_run / "eval" / "metrics.json").read_text())
    got = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert got["clean_accuracy"] == metrics["by_condition"]["normal"]["accuracy_answerable"]["value"] == 0.75
    for key in ("accuracy_answerable", "abstention_unanswerable", "mirage_rate", "image_reliance_gap"):
        assert got[key] == metrics["overall"][key]["value"]
    probes = json.loads((full_run / "eval" / "probes" / "mirage" / "probes.json").read_text())
    assert got["mirage_probe_auroc"] == probes["probe"]["best_auroc"]
    assert got["mirage_text_baseline_auroc"] == 0.55


def test_card_base_model_is_the_hub_id_found_through_the_sft_run(full_run, tmp_path):
    from huggingface_hub import ModelCard

    sft = tmp_path / "sft"  # what the ablation writes for its SFT stage: run.json naming the recipe it ran
    sft.mkdir()
    (tmp_path / "sft.yaml").write_text("model_name_or_path: Qwen/Qwen2.5-VL-3B-Instruct\n")
    (sft / "run.json").write_text(json.dumps({"stage": "sft", "recipe_path": str(tmp_path / "sft.yaml"),
                                              "overrides": {"output_dir": str(sft)}}))
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "base_model": str(sft)}))

    card = ModelCard.load(publish(run, tmp_path / "pub") / "README.md")
    assert card.data.base_model == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert "Tiny demo model" not in card.text


def test_probe_loads_and_scores_the_published_models_hidden_states(full_run, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rlkit.eval.generate import hidden_features
    from rlkit.eval.probes import load_probe

    out = publish(full_run, tmp_path / "pub")
    probe = load_probe(out / "eval" / "probes" / "mirage" / "probe")
    original = load_probe(full_run / "eval" / "probes" / "mirage" / "probe")
    assert probe.layer == original.layer == 2 and np.array_equal(probe.coef, original.coef)
    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    feats = hidden_features(model, AutoProcessor.from_pretrained(out), _rows())
    scores = probe.score(feats[probe.pooling][:, probe.layer])  # the card's snippet, verbatim
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()


def test_adapter_is_published_as_peft_and_loads_on_its_base(adapter_run, tiny_qwen, tmp_path):
    from huggingface_hub import ModelCard
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = publish(adapter_run, tmp_path / "pub")
    names = set(_files(out))
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"} <= names
    assert "model.safetensors" not in names and "adapter" not in {n.split("/")[0] for n in names if "/" in n}
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "peft" and "lora" in card.data.tags
    assert "publish with `--merge`" in card.text  # the adapter's base is local: said in the limitations

    base = AutoModelForImageTextToText.from_pretrained(tiny_qwen)
    model = PeftModel.from_pretrained(base, out).eval()
    _generates(model, AutoProcessor.from_pretrained(out))


def test_merged_weights_match_base_plus_adapter(adapter_run, tiny_qwen, tmp_path):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rlkit.models.load import ModelArguments, load_model

    out = publish(adapter_run, tmp_path / "pub", merge=True)
    names = set(_files(out))
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "adapter/adapter_config.json",
            "adapter/adapter_model.safetensors"} <= names
    assert "adapter_config.json" not in names  # the root is a plain transformers checkpoint
    assert ModelCard.load(out / "README.md").data.library_name == "transformers"

    processor = AutoProcessor.from_pretrained(out)
    merged = AutoModelForImageTextToText.from_pretrained(out).eval()
    with_adapter = load_model(ModelArguments(model_name_or_path=str(adapter_run / "model"))).eval()
    base = AutoModelForImageTextToText.from_pretrained(tiny_qwen).eval()
    reference = _logits(with_adapter, processor)
    torch.testing.assert_close(_logits(merged, processor), reference, atol=1e-4, rtol=0)
    assert (_logits(base, processor) - reference).abs().max() > 1e-2  # the adapter does change the model
    _generates(merged, processor)


def test_existing_out_is_refused_without_overwrite(full_run, tmp_path):
    out = publish(full_run, tmp_path / "pub")
    (out / "stale.txt").write_text("from an older publish")
    with pytest.raises(FileExistsError, match="--overwrite"):
        publish(full_run, out)
    assert (out / "stale.txt").exists()
    publish(full_run, out, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "README.md").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["pub"]  # no temp or backup folder left behind


@pytest.mark.parametrize("damage, missing", [
    (lambda run: (run / "run.json").unlink(), "run.json"),
    (lambda run: (run / "run.json").write_text(json.dumps({"status": "training"})), "status is 'training'"),
    (lambda run: shutil.rmtree(run / "model"), "model is missing"),
    (lambda run: (run / "eval" / "metrics.json").unlink(), "metrics.json is missing"),
    (lambda run: (run / "model" / "model.safetensors").rename(run / "model" / "pytorch_model.bin"), "pickle"),
])
def test_incomplete_run_is_refused_naming_what_is_missing(full_run, tmp_path, damage, missing):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    damage(run)
    with pytest.raises((FileNotFoundError, ValueError), match=missing):
        publish(run, tmp_path / "pub")
    assert not (tmp_path / "pub").exists()


def test_push_offline_fails_clearly_and_token_never_leaks(full_run, tmp_path, monkeypatch, capsys, caplog):
    from rlkit.cli import main as cli

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    record = json.loads((run / "run.json").read_text())
    record["recipe"]["hub_token"] = TOKEN  # a recipe that carried the token must not publish it
    (run / "run.json").write_text(json.dumps(record))

    out = tmp_path / "pub"
    rc = cli(["publish", "--run", str(run), "--out", str(out), "--repo-id", "me/tiny", "--push", "--private"])
    assert rc == 1
    captured = capsys.readouterr()
    assert "hub is offline" in caplog.text and f"published {out}" in captured.out
    assert TOKEN not in captured.out + captured.err + caplog.text
    files = _files(out)
    assert not any(TOKEN.encode() in content for content in files.values())
    assert "hub_token" not in files["recipe.yaml"].decode() + files["run.json"].decode()

    with pytest.raises(PushError, match="offline"):
        push(out, "me/tiny")
    assert _files(out) == files  # intact


def test_push_without_token_and_leaked_token_are_refused(full_run, tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    out = publish(full_run, tmp_path / "pub")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)  # no env token, no local login
    with pytest.raises(PushError, match="no Hugging Face token"):
        push(out, "me/tiny")

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    (out / "eval" / "notes.md").write_text(f"oops {TOKEN}\n")
    with pytest.raises(PushError, match="notes.md contains the value of your Hugging Face token") as err:
        push(out, "me/tiny")
    assert TOKEN not in str(err.value)
    (out / "eval" / "notes.md").unlink()
    (out / "optimizer.pt").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="pickle"):
        check_folder(out)


def test_cli_help(capsys):
    from rlkit.cli import main as cli

    with pytest.raises(SystemExit) as exit_info:
        cli(["publish", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--run", "--out", "--merge", "--repo-id", "--push", "--private", "--overwrite", "--license"):
        assert flag in help_text

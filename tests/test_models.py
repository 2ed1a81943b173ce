"""Tiny models and model loading: real checkpoints built offline, loaded back the way hub models are."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from rlkit.models.load import (
    ModelArguments,
    is_vision_module,
    load_model,
    load_processor,
    resolve_model_path,
)
from rlkit.models.tiny import make_tiny_model, weights_sha256

RELOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = sys.argv[1]
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    processor.tokenizer.padding_side = "left"
    question = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color is it?"}]}]
    texts = processor.apply_chat_template([question, question], add_generation_prompt=True, tokenize=False)
    images = [Image.new("RGB", (64, 64), "red"), Image.new("RGB", (60, 60), "blue")]
    batch = processor(text=texts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
        generated = model.generate(**batch, max_new_tokens=5, do_sample=False)
    image_id = model.config.image_token_id if hasattr(model.config, "image_token_id") else None
    image_id = image_id if image_id is not None else model.config.image_token_index
    print(json.dumps({
        "n_hidden": len(out.hidden_states),
        "hidden_shape": list(out.hidden_states[-1].shape),
        "logits_finite": bool(torch.isfinite(out.logits).all()),
        "image_tokens": (batch["input_ids"] == image_id).sum(1).tolist(),
        "new_tokens": generated.shape[1] - batch["input_ids"].shape[1],
        "n_layers": model.config.text_config.num_hidden_layers,
    }))
    """
)


@pytest.mark.parametrize("fixture, image_tokens", [("tiny_qwen", 4), ("tiny_llava", 16)])
def test_reload_in_fresh_offline_process(fixture, image_tokens, request):
    path = request.getfixturevalue(fixture)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, str(path)], capture_output=True, text=True, env=env, timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["n_hidden"] == report["n_layers"] + 1  # embeddings + one per layer
    assert report["hidden_shape"][0] == 2 and report["hidden_shape"][2] == 128
    assert report["logits_finite"]
    assert report["image_tokens"] == [image_tokens, image_tokens]  # a 56-64 px image stays a handful of tokens
    assert 1 <= report["new_tokens"] <= 5


def test_summary_is_saved_and_matches(tiny_qwen):
    summary = json.loads((tiny_qwen / "rlkit_tiny.json").read_text())
    assert summary["architecture"] == "Qwen2_5_VLForConditionalGeneration"
    assert 500_000 < summary["parameters"] < 2_000_000
    model = load_model(ModelArguments(model_name_or_path=str(tiny_qwen)))
    assert weights_sha256(model) == summary["weights_sha256"]
    assert sum(p.numel() for p in model.parameters()) == summary["parameters"]


def test_weight_hash_is_stable_and_seed_dependent(tmp_path):
    a = make_tiny_model("qwen2_vl", tmp_path / "a", seed=3)
    b = make_tiny_model("qwen2_vl", tmp_path / "b", seed=3)
    c = make_tiny_model("qwen2_vl", tmp_path / "c", seed=4)
    assert a["weights_sha256"] == b["weights_sha256"] != c["weights_sha256"]
    # The tokenizer is trained, not downloaded: it must come out identical too.
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_tokenizer_knows_specials_and_task_words(tiny_qwen):
    tokenizer = load_processor(ModelArguments(model_name_or_path=str(tiny_qwen))).tokenizer
    for special in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|video_pad|>"):
        assert len(tokenizer.encode(special, add_special_tokens=False)) == 1, special
    for word in (" red", " circle", " cannot", " tell", " yes"):
        assert len(tokenizer.encode(word, add_special_tokens=False)) == 1, word
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.padding_side == "left"
    assert tokenizer.decode(tokenizer.encode("Is there a blue banana? 3 cats")) == "Is there a blue banana? 3 cats"


@pytest.mark.parametrize("fixture", ["tiny_qwen", "tiny_llava"])
def test_lora_leaves_the_vision_side_alone(fixture, request):
    path = request.getfixturevalue(fixture)
    model = load_model(ModelArguments(model_name_or_path=str(path), use_peft=True, lora_r=4))
    lora = [name for name, _ in model.named_modules() if name.endswith("lora_A")]
    assert lora, "LoRA added no adapter"
    assert not [name for name in lora if is_vision_module(name)]
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


def test_lora_can_be_allowed_on_the_vision_tower(tiny_qwen):
    args = ModelArguments(model_name_or_path=str(tiny_qwen), use_peft=True, lora_r=4, lora_exclude_modules=None)
    model = load_model(args)
    assert any(is_vision_module(name) for name, _ in model.named_modules() if name.endswith("lora_A"))


def test_freeze_vision_tower_stops_its_gradients(tiny_qwen):
    model = load_model(ModelArguments(model_name_or_path=str(tiny_qwen), freeze_vision_tower=True))
    params = dict(model.named_parameters())
    vision = {n for n in params if ".visual." in f".{n}"}
    assert vision and all(not params[n].requires_grad for n in vision)
    assert all(p.requires_grad for n, p in params.items() if n not in vision)

    processor = load_processor(ModelArguments(model_name_or_path=str(tiny_qwen)))
    from PIL import Image

    text = processor.apply_chat_template(
        [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]],
        add_generation_prompt=True, tokenize=False,
    )
    batch = processor(text=text, images=[Image.new("RGB", (64, 64), "red")], return_tensors="pt")
    model(**batch, labels=batch["input_ids"]).loss.backward()
    assert all(params[n].grad is None for n in vision)
    assert params["lm_head.weight"].grad is not None and params["lm_head.weight"].grad.abs().sum() > 0


def test_qlora_loads_4bit_language_model_and_keeps_vision_in_full_precision(tiny_qwen):
    import bitsandbytes as bnb

    model = load_model(ModelArguments(model_name_or_path=str(tiny_qwen), use_peft=True, load_in_4bit=True))
    modules = dict(model.named_modules())
    quantized = [n for n, m in modules.items() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and not [n for n in quantized if is_vision_module(n)]
    assert any(isinstance(m, torch.nn.Linear) and not isinstance(m, bnb.nn.Linear4bit)
               for n, m in modules.items() if ".visual." in n)


def test_error_missing_local_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model_path(str(tmp_path))


def test_error_hub_id_while_offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="hub is offline"):
        load_model(ModelArguments(model_name_or_path="rlkit-test/does-not-exist-vl"))


def test_error_unsupported_architecture(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "text-only")
    with pytest.raises(ValueError, match="not a vision-language model"):
        load_model(ModelArguments(model_name_or_path=str(tmp_path / "text-only")))


def test_error_qlora_without_bitsandbytes(tiny_qwen, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` raise ImportError
    with pytest.raises(ImportError, match=r"rlkit\[bnb\]"):
        load_model(ModelArguments(model_name_or_path=str(tiny_qwen), use_peft=True, load_in_4bit=True))


def test_error_quantization_without_peft():
    with pytest.raises(ValueError, match="use_peft: true"):
        ModelArguments(model_name_or_path="x", load_in_4bit=True)


def test_make_tiny_model_refuses_to_overwrite_and_unknown_family(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError, match="--overwrite"):
        make_tiny_model("qwen2_5_vl", tmp_path / "out")
    with pytest.raises(ValueError, match="available: qwen2_5_vl, qwen2_vl, llava"):
        make_tiny_model("gpt2", tmp_path / "other")


def test_cli_help_and_make_tiny_model(tmp_path):
    for args in (["--help"], ["make-tiny-model", "--help"]):
        result = subprocess.run([sys.executable, "-m", "rlkit.cli", *args], capture_output=True, text=True, check=False)
        assert result.returncode == 0 and "usage" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "make-tiny-model", "--family", "llava", "--out", str(tmp_path / "m")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # DeepSpeed, when installed, logs its accelerator choice to stdout before the JSON summary.
    assert json.loads(result.stdout[result.stdout.index("{\n"):])["architecture"] == "LlavaForConditionalGeneration"

"""Embedded tiny vision-language models, built offline and deterministically.

The tests and `make demo` need real VLMs without the hub. This file builds small random-weight models of
real architectures (the same classes `from_pretrained` returns for hub checkpoints) with a BPE tokenizer
trained locally on the vocabulary of rlkit's synthetic tasks, and saves each as an ordinary HF checkpoint
folder (model + processor + chat template) that `AutoModelForImageTextToText` / `AutoProcessor` load back.

    rlkit make-tiny-model --family qwen2_5_vl --out .cache/tiny-qwen2_5_vl          # ~1 M params, seconds
    rlkit make-tiny-model --family llava --size M --out /tmp/tiny-llava

Same family + size + seed -> byte-identical weights (see `weights_sha256`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

FAMILIES = ("qwen2_5_vl", "qwen2_vl", "llava")
SIZES = ("S", "M")

# Qwen2-VL special tokens, in the order the real tokenizer numbers them after its BPE vocabulary.
QWEN_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
LLAVA_IMAGE_TOKEN = "<image>"

# Qwen-style ChatML template without the default system prompt (it would triple the tiny context).
# Image items become <|vision_start|><|image_pad|><|vision_end|>; the processor expands <|image_pad|>.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAVA_CHAT_TEMPLATE = QWEN_CHAT_TEMPLATE.replace(
    "<|vision_start|><|image_pad|><|vision_end|>", LLAVA_IMAGE_TOKEN
)


@dataclass(frozen=True)
class TinySpec:
    """Dimensions of one tiny model size."""

    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_intermediate: int
    vocab_size: int


# S learns the synthetic colour/shape tasks on 2 CPU cores in minutes; M is for probes with more capacity.
SPECS = {
    "S": TinySpec(128, 4, 4, 2, 256, 64, 2, 4, 128, 2048),
    "M": TinySpec(256, 6, 8, 4, 512, 128, 4, 4, 256, 2048),
}

# Words of the synthetic tasks (data_builders) plus the abstention phrases the rewards recognise.
_COLOURS = "red green blue yellow orange purple pink brown black white gray grey cyan magenta".split()
_SHAPES = "circle square triangle star rectangle ellipse diamond cross heart banana apple object shape".split()
_NUMBERS = "zero one two three four five six seven eight nine ten 0 1 2 3 4 5 6 7 8 9 10 11 12".split()
_WORDS = (
    "yes no left right top bottom above below middle center bigger smaller larger same size color colour "
    "what which where how many is there are the a an of in on image picture scene this that it answer word "
    "cannot tell can't determine not visible unsure I don't know does show see clearly unknown unclear "
    "hint probably likely most shapes objects count number largest smallest next to near far usually "
    "describe only if say one with or and question please look at blurry blank dark noisy"
).split()
_ABSTENTIONS = [
    "cannot tell", "I cannot tell.", "I can't tell from the image.", "It is not visible.", "I don't know.",
    "The image does not show it.", "unsure", "Cannot determine from the image.",
]


def _training_corpus() -> list[str]:
    """A deterministic corpus covering the chat template, the task vocabulary and some generic text."""
    lines = []
    for shape in _SHAPES:
        for colour in _COLOURS:
            lines += [
                f"What color is the {shape}? {colour}",
                f"Is there a {colour} {shape} in the image? yes no",
                f"How many {shape}s are there? Hint: there are probably {len(colour) % 5} {shape}s.",
                f"The {colour} {shape} is left of the {shape}. Which {shape} is bigger?",
                "Answer with one word, or say \"cannot tell\" if the image does not show it.",
            ]
    lines += [" ".join(_NUMBERS), " ".join(_WORDS), *_ABSTENTIONS]
    for role in ("system", "user", "assistant"):
        lines.append(f"<|im_start|>{role}\nHello, what do you see?<|im_end|>\n")
    # Generic English so that unseen user text still tokenises into reasonably sized pieces.
    generic = (
        "The quick brown fox jumps over the lazy dog. Vision language models answer questions about images. "
        "A model that guesses instead of seeing should say so. Training with rewards teaches behaviour. "
        "Describe what you see, and do not assume anything unless it is clearly visible in the photo. "
        "Numbers and punctuation: 0 1 2 3 4 5 6 7 8 9 , . ; : ! ? ' \" ( ) [ ] { } < > / - _ + = * & % $ # @"
    )
    lines += [generic] * 4
    return lines


def build_tokenizer(vocab_size: int, family: str):
    """Train a byte-level BPE with Qwen2's pre-tokenizer and wrap it in `Qwen2Tokenizer`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    specials = QWEN_SPECIALS + ([LLAVA_IMAGE_TOKEN] if family == "llava" else [])
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_training_corpus(), trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=state["vocab"], merges=merges, errors="replace")
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    tokenizer.add_tokens([], special_tokens=True)
    tokenizer.eos_token = "<|im_end|>"  # generation stops at the end of the assistant turn, as in Qwen2-VL
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.padding_side = "left"  # batched generation
    if family == "llava":
        tokenizer.image_token = LLAVA_IMAGE_TOKEN
    return tokenizer


def _model_and_processor(family: str, spec: TinySpec, tokenizer):
    import transformers as tf

    vocab = -(-len(tokenizer) // 64) * 64  # round up like real checkpoints; unused rows stay random
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text_common = {
        "vocab_size": vocab, "hidden_size": spec.text_hidden, "intermediate_size": spec.text_intermediate,
        "num_hidden_layers": spec.text_layers, "num_attention_heads": spec.text_heads,
        "num_key_value_heads": spec.text_kv_heads, "max_position_embeddings": 1024,
        "bos_token_id": None, "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
    }
    if family in ("qwen2_5_vl", "qwen2_vl"):
        head_dim = spec.text_hidden // spec.text_heads
        quarter = head_dim // 8  # mrope_section (temporal, height, width) must sum to head_dim / 2
        rope = {"rope_type": "default", "rope_theta": 10000.0,
                "mrope_section": [2 * quarter, quarter, quarter]}
        image_processor = tf.Qwen2VLImageProcessor(
            min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14, merge_size=2, temporal_patch_size=2
        )
        video_processor = tf.Qwen2VLVideoProcessor(
            min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14, merge_size=2, temporal_patch_size=2
        )
        common = {
            "image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
            "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
            "tie_word_embeddings": False,
        }
        if family == "qwen2_5_vl":
            vision = {
                "depth": spec.vision_layers, "hidden_size": spec.vision_hidden, "num_heads": spec.vision_heads,
                "intermediate_size": spec.vision_intermediate, "out_hidden_size": spec.text_hidden,
                "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
                "fullatt_block_indexes": [spec.vision_layers - 1],
            }
            config = tf.Qwen2_5_VLConfig(
                text_config={**text_common, "rope_parameters": rope}, vision_config=vision, **common
            )
            model = tf.Qwen2_5_VLForConditionalGeneration(config)
            processor = tf.Qwen2_5_VLProcessor(
                image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                chat_template=QWEN_CHAT_TEMPLATE,
            )
        else:
            vision = {
                "depth": spec.vision_layers, "embed_dim": spec.vision_hidden, "num_heads": spec.vision_heads,
                "mlp_ratio": spec.vision_intermediate // spec.vision_hidden, "hidden_size": spec.text_hidden,
                "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
            }
            config = tf.Qwen2VLConfig(
                text_config={**text_common, "rope_parameters": rope}, vision_config=vision, **common
            )
            model = tf.Qwen2VLForConditionalGeneration(config)
            processor = tf.Qwen2VLProcessor(
                image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                chat_template=QWEN_CHAT_TEMPLATE,
            )
    elif family == "llava":
        image_size, patch = 64, 16  # 16 image tokens: LLaVA has no patch merger
        vision = tf.CLIPVisionConfig(
            hidden_size=spec.vision_hidden, intermediate_size=spec.vision_intermediate,
            num_hidden_layers=spec.vision_layers, num_attention_heads=spec.vision_heads,
            image_size=image_size, patch_size=patch, projection_dim=spec.vision_hidden,
        )
        text = tf.LlamaConfig(**text_common, rope_theta=10000.0)
        config = tf.LlavaConfig(
            vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids(
                LLAVA_IMAGE_TOKEN), vision_feature_select_strategy="default", vision_feature_layer=-1,
            tie_word_embeddings=False,
        )
        model = tf.LlavaForConditionalGeneration(config)
        image_processor = tf.CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        )
        processor = tf.LlavaProcessor(
            image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
            vision_feature_select_strategy="default", num_additional_image_tokens=1,
            chat_template=LLAVA_CHAT_TEMPLATE,
        )
    else:
        raise ValueError(f"Unknown tiny model family {family!r}; available: {', '.join(FAMILIES)}")
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model, processor


def weights_sha256(model) -> str:
    """SHA-256 over all parameters and buffers in name order: equal hashes mean identical weights."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        # Raw bytes via uint8 so that bf16/fp16 tensors (which numpy cannot hold) hash too.
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def make_tiny_model(family: str, out: str | os.PathLike, size: str = "S", seed: int = 0,
                    overwrite: bool = False) -> dict:
    """Build a tiny VLM of `family` and save it to `out` as an HF checkpoint folder.

    Args:
        family: one of `FAMILIES` (Qwen2.5-VL, Qwen2-VL or LLaVA architecture).
        out: destination folder; written atomically (temp folder, then rename).
        size: "S" (~1 M parameters) or "M".
        seed: weight-initialisation seed.
        overwrite: replace an existing `out`.

    Returns:
        A summary dict (also saved as `rlkit_tiny.json` in `out`): family, size, seed, parameter counts,
        image tokens for a 64 px image, weight hash.
    """
    import torch

    from rlkit.models.load import is_vision_module

    if family not in FAMILIES:
        raise ValueError(f"Unknown tiny model family {family!r}; available: {', '.join(FAMILIES)}")
    if size not in SPECS:
        raise ValueError(f"Unknown tiny model size {size!r}; available: {', '.join(SIZES)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")

    spec = SPECS[size]
    tokenizer = build_tokenizer(spec.vocab_size, family)
    torch.manual_seed(seed)
    model, processor = _model_and_processor(family, spec, tokenizer)
    model.eval()

    from PIL import Image

    if family == "llava":
        n_image_tokens = (64 // 16) ** 2
    else:
        grid = processor.image_processor(images=[Image.new("RGB", (64, 64))], return_tensors="pt")
        n_image_tokens = int(grid["image_grid_thw"][0].prod()) // 4
    summary = {
        "family": family, "size": size, "seed": seed, "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vision_parameters": sum(p.numel() for n, p in model.named_parameters() if is_vision_module(n)),
        "vocab_size": len(tokenizer), "image_tokens_64px": n_image_tokens,
        "weights_sha256": weights_sha256(model),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "rlkit_tiny.json").write_text(json.dumps(summary, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Built tiny %s (%s, %d params) at %s", family, size, summary["parameters"], out)
    return summary

"""Batched generation and hidden-state capture on built rows (the model-bound half of evaluation).

Both work on rows of the data contract (`image` + conversational `prompt`) and any VLM whose processor has a
chat template. Prompts are left-padded, so the last prompt token of every row sits at position -1.

`hidden_features(..., attention_entropy=True)` also measures, in the same forward pass, how spread out the
last prompt token's attention over the image tokens is (needs eager attention: see `eager_attention`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch


def encode(processor, rows: Sequence[dict]) -> dict:
    """Chat-template the rows' prompts and process them with their images into one left-padded batch."""
    texts = processor.apply_chat_template([row["prompt"] for row in rows], add_generation_prompt=True,
                                          tokenize=False)
    images = [row["image"].convert("RGB") for row in rows]
    processor.tokenizer.padding_side = "left"
    return processor(text=texts, images=images, return_tensors="pt", padding=True)


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def generate(model, processor, rows: Sequence[dict], max_new_tokens: int = 16, num_samples: int = 1,
             temperature: float = 0.0, seed: int = 0) -> list[list[str]]:
    """Generate `num_samples` completions per row: greedy when `temperature` is 0, else sampled.

    Returns:
        One list of `num_samples` decoded completions per row (special tokens removed).
    """
    batch = _to_device(encode(processor, rows), model.device)
    sample = temperature > 0
    if sample:
        torch.manual_seed(seed)
    out = model.generate(
        **batch, max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature if sample else None,
        top_p=None, top_k=None, num_return_sequences=num_samples,
        pad_token_id=processor.tokenizer.pad_token_id,
    )
    texts = processor.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return [texts[i * num_samples:(i + 1) * num_samples] for i in range(len(rows))]


def image_token_id(model) -> int:
    """The placeholder id the processor expands into image tokens (named differently across families)."""
    config = model.config
    for key in ("image_token_id", "image_token_index"):
        value = getattr(config, key, None)
        if value is not None:
            return int(value)
    raise ValueError(f"{type(model).__name__} config has no image_token_id / image_token_index")


def hidden_shape(model) -> tuple[int, int]:
    """`(layers + 1, hidden size)` of the language model: the shape of one row of `hidden_features`."""
    text = model.config.get_text_config()
    return int(text.num_hidden_layers) + 1, int(text.hidden_size)


@contextmanager
def eager_attention(model) -> Iterator[None]:
    """Run the block with eager attention, the one implementation that returns attention weights.

    SDPA and flash kernels never materialise the weights, so `attention_entropy` needs this. The previous
    implementation is restored on exit (as one string for the whole model).
    """
    before = model.config._attn_implementation
    if before == "eager":
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def image_attention_entropy(weights: torch.Tensor, image_mask: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the last query token's attention restricted to image tokens, averaged over heads.

    Args:
        weights: `[n, heads, queries, keys]` attention probabilities of one layer.
        image_mask: `[n, keys]` bool, True at image-token positions.

    Returns:
        `[n]` float32 in `[0, log(image tokens)]`: the attention of each head is renormalised over the image
        tokens, its entropy taken, then averaged over heads. NaN for a row without image tokens.
    """
    mask = image_mask[:, None, :].to(torch.float32)
    p = weights[:, :, -1, :].to(torch.float32) * mask
    total = p.sum(-1, keepdim=True)
    p = p / total.clamp_min(torch.finfo(torch.float32).tiny)
    entropy = -(p * torch.log(p.clamp_min(torch.finfo(torch.float32).tiny))).sum(-1).mean(1)
    return torch.where(image_mask.any(1), entropy, torch.full_like(entropy, float("nan")))


def _attention_layers(model) -> list[torch.nn.Module]:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if layers is None or not all(hasattr(layer, "self_attn") for layer in layers):
        raise ValueError(f"{type(model).__name__}: cannot find the language model's decoder layers "
                         "(model.get_decoder().layers[i].self_attn); attention entropy supports decoder-only "
                         "language models laid out that way.")
    return [layer.self_attn for layer in layers]


@torch.no_grad()
def hidden_features(model, processor, rows: Sequence[dict], attention_entropy: bool = False) -> dict[str, np.ndarray]:
    """Hidden states of every layer from ONE forward pass of the prompt (no generation).

    Args:
        attention_entropy: also return the spatial attention entropy of every layer, read by forward hooks
            on the attention modules in the same pass. The model must run eager attention (load it with
            `attn_implementation="eager"` or wrap the call in `eager_attention(model)`).

    Returns:
        `last_token`: [n, layers + 1, hidden] at the last prompt token (where the answer is decided);
        `image_mean`: [n, layers + 1, hidden] mean over the image-token positions. Index 0 is the embeddings.
        With `attention_entropy`: `attention_entropy` [n, layers] (`image_attention_entropy` of decoder layer
        i at column i, i.e. of the layer that produces hidden state i + 1) and `n_image_tokens` [n].

    Raises:
        ValueError: `attention_entropy` on a model whose attention returns no weights (not eager).
    """
    batch = _to_device(encode(processor, rows), model.device)
    image_mask = batch["input_ids"] == image_token_id(model)
    entropies: dict[int, torch.Tensor] = {}

    def record(index: int):
        def hook(module, args, output):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise ValueError(f"attention_entropy needs attention weights but {type(module).__name__} "
                                 f"returned none ({model.config._attn_implementation} attention); load the "
                                 "model with attn_implementation='eager' or call hidden_features inside "
                                 "rlkit.eval.generate.eager_attention(model).")
            entropies[index] = image_attention_entropy(weights, image_mask)
        return hook

    # Hooks instead of output_attentions=True: that would keep [n, heads, T, T] of every layer alive until the
    # end of the pass (~100 GB for a 3B model at batch 32); a hook reduces each layer's weights to [n] at once.
    hooks = ([m.register_forward_hook(record(i)) for i, m in enumerate(_attention_layers(model))]
             if attention_entropy else [])
    try:
        out = model(**batch, output_hidden_states=True, use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    states = torch.stack(out.hidden_states, dim=1).float()  # [n, L+1, T, d]
    last = states[:, :, -1, :]
    mask = image_mask.to(states.dtype)  # [n, T]
    counts = mask.sum(1).clamp(min=1)[:, None, None]
    image_mean = torch.einsum("nltd,nt->nld", states, mask) / counts
    result = {"last_token": last.cpu().numpy(), "image_mean": image_mean.cpu().numpy()}
    if attention_entropy:
        result["attention_entropy"] = torch.stack([entropies[i] for i in sorted(entropies)], 1).cpu().numpy()
        result["n_image_tokens"] = image_mask.sum(1).cpu().numpy()
    return result

"""Batched generation and hidden-state capture on built rows (the model-bound half of evaluation).

Both work on rows of the data contract (`image` + conversational `prompt`) and any VLM whose processor has a
chat template. Prompts are left-padded, so the last prompt token of every row sits at position -1.
"""

from __future__ import annotations

from collections.abc import Sequence

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


@torch.no_grad()
def hidden_features(model, processor, rows: Sequence[dict]) -> dict[str, np.ndarray]:
    """Hidden states of every layer from ONE forward pass of the prompt (no generation).

    Returns:
        `last_token`: [n, layers + 1, hidden] at the last prompt token (where the answer is decided);
        `image_mean`: [n, layers + 1, hidden] mean over the image-token positions. Index 0 is the embeddings.
    """
    batch = _to_device(encode(processor, rows), model.device)
    out = model(**batch, output_hidden_states=True, use_cache=False)
    states = torch.stack(out.hidden_states, dim=1).float()  # [n, L+1, T, d]
    last = states[:, :, -1, :]
    mask = (batch["input_ids"] == image_token_id(model)).to(states.dtype)  # [n, T]
    counts = mask.sum(1).clamp(min=1)[:, None, None]
    image_mean = torch.einsum("nltd,nt->nld", states, mask) / counts
    return {"last_token": last.cpu().numpy(), "image_mean": image_mean.cpu().numpy()}

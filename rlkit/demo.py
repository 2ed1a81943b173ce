"""`make demo`: the main job on the embedded default, offline on CPU.

Today it builds the tiny Qwen2.5-VL-architecture model (cached under `--cache`), loads it back through
`rlkit.models.load` as any hub model would be, and runs batched generation on a rendered scene and on a
blank image, printing what it ran and how long each step took.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image, ImageDraw

    from rlkit.models.load import ModelArguments, load_model, load_processor
    from rlkit.models.tiny import ensure_tiny_model

    t0 = time.perf_counter()
    path = ensure_tiny_model(Path(args.cache) / "tiny-qwen2_5_vl")
    model_args = ModelArguments(model_name_or_path=str(path))
    model, processor = load_model(model_args), load_processor(model_args)
    t_load = time.perf_counter() - t0

    scene = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(scene).ellipse((12, 12, 52, 52), fill="red")
    images = [scene, Image.new("RGB", (64, 64), "white")]
    question = 'What color is the circle? Answer with one word, or say "cannot tell" if the image does not show it.'
    messages = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]] * 2
    texts = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = processor(text=texts, images=images, return_tensors="pt", padding=True)
    t1 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=8, do_sample=False)
    t_gen = time.perf_counter() - t1
    answers = processor.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)

    n_params = sum(p.numel() for p in model.parameters())
    print(f"model      {path} ({type(model).__name__}, {n_params:,} parameters), built+loaded in {t_load:.1f} s")
    print(f"prompt     {question}")
    for name, answer in zip(("red circle", "blank image"), answers):
        print(f"{name:<11}-> {answer!r}")
    print(f"generation 2 samples x 8 tokens in {t_gen:.2f} s (random weights: the answers are noise until trained)")
    return 0

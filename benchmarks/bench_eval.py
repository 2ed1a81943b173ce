"""Benchmark evaluation on the tiny model: batched vs per-sample greedy generation, hidden-state capture, stages.

    .venv/bin/python benchmarks/bench_eval.py                    # prints the tables
    .venv/bin/python benchmarks/bench_eval.py --write-docs       # also updates docs/benchmarks.md (its section)
    .venv/bin/python benchmarks/bench_eval.py --rows 64 --repeats 2 --no-stages   # quicker

(a) `rlkit.eval.generate.generate` over the same rows in batches of each `--batch-sizes` against a per-sample
loop (batch of 1), interleaved, best of `--repeats`; batched and per-sample greedy completions are compared
row by row (left padding must not change them). (b) `hidden_features` rows/s at the same batch sizes, with
and without the attention-entropy hooks. (c) one `evaluate()`-shaped run split by stage (the stage functions
evaluate() calls, in its order, with default settings). The tiny model and a small build of the tiny data
recipe are made once under `.cache/bench/eval/` (a fresh checkout needs nothing else). CPU time of other
processes is not controlled.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.docs_section import write_section

for key, value in {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_USE_CPU": "true"}.items():
    os.environ.setdefault(key, value)

SECTION = "## Evaluation"
READING = (
    "How to read it: rows/s counts prompts (one greedy completion of up to `max_new_tokens` each, or one "
    "forward pass for hidden states). The per-sample loop is the same `generate` call with one row at a time; "
    "the ratio is batched over per-sample rows/s on the same rows, interleaved and best of the repeats. "
    "`agree` counts rows whose batched greedy completion equals the per-sample one. On CPU the tiny model "
    "(~1 M parameters) is dominated by per-call overhead (processor, generate bookkeeping), which batching "
    "amortises; on a GPU with a real model the gain comes from filling the device instead."
)


def prepare(cache: Path, sources: int):
    """The tiny Qwen2.5-VL model and an eval split of `sources` source questions, built once in `cache`."""
    import yaml

    from data_builders.build import build
    from rlkit.models.tiny import make_tiny_model

    model_dir, data_dir = cache / "tiny-qwen2_5_vl", cache / f"data-{sources}"
    if not (model_dir / "config.json").is_file():
        make_tiny_model("qwen2_5_vl", model_dir)
    if not (data_dir / "manifest.json").is_file():
        config = yaml.safe_load((ROOT / "recipes/tiny/data.yaml").read_text())
        config.update(train_sources=8, eval_sources=sources)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:  # atomic: a killed build leaves no half folder
            build(config, Path(tmp) / "data")
            os.replace(Path(tmp) / "data", data_dir)
    return model_dir, data_dir


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def bench_generate(model, processor, rows, batch_sizes, max_new_tokens, repeats):
    """{batch size: best rows/s} (1 = per-sample loop) and {batch size: rows agreeing with per-sample}."""
    from rlkit.eval.generate import generate

    def run(size):
        out = []
        for start in range(0, len(rows), size):
            out += [texts[0] for texts in generate(model, processor, rows[start:start + size], max_new_tokens)]
        return out

    best, completions = {}, {}
    for _ in range(repeats):
        for size in (1, *batch_sizes):  # interleaved, so a noisy neighbour hurts every variant alike
            seconds, completions[size] = _timed(lambda size=size: run(size))
            best[size] = max(best.get(size, 0.0), len(rows) / seconds)
    agree = {size: sum(a == b for a, b in zip(completions[1], completions[size], strict=True))
             for size in batch_sizes}
    return best, agree, completions


def bench_features(model, processor, rows, batch_sizes, repeats):
    """{(batch size, with entropy): best rows/s} of hidden_features."""
    from rlkit.eval.generate import eager_attention, hidden_features

    best = {}
    for _ in range(repeats):
        for size in (1, *batch_sizes):
            for entropy in (False, True):
                def run(size=size, entropy=entropy):
                    with eager_attention(model) if entropy else nullcontext():
                        for start in range(0, len(rows), size):
                            hidden_features(model, processor, rows[start:start + size], attention_entropy=entropy)
                seconds, _ = _timed(run)
                best[size, entropy] = max(best.get((size, entropy), 0.0), len(rows) / seconds)
    return best


def bench_stages(model, processor, data_dir, tmp: Path):
    """Seconds per evaluate() stage on the whole eval split with default EvalSettings, plus its row count."""
    from rlkit.eval import evaluate as ev
    from rlkit.eval.metrics import compute_metrics
    from rlkit.eval.report import write_report

    settings = ev.EvalSettings()
    rows = ev._load_rows(data_dir, settings)
    stages = {}
    stages["generate (greedy, batched)"], preds = _timed(lambda: ev.predict(model, processor, rows, settings))
    stages["metrics (bootstrap)"], metrics = _timed(lambda: compute_metrics(preds, n_boot=settings.n_boot,
                                                                            seed=settings.seed))
    stages[f"self-consistency (K={settings.consistency_samples})"], sc = _timed(
        lambda: ev.consistency(model, processor, rows, preds, settings))
    stages["hidden states"], feats = _timed(lambda: ev.features(model, processor, rows, settings))
    seconds, summaries = _timed(lambda: ev.probes(rows, preds, feats, tmp, settings, model_id="bench"))
    stages[f"probes ({settings.probe_folds}-fold, {len(summaries)} labels)"] = seconds
    stages["report"], _ = _timed(lambda: write_report(tmp, metrics, summaries or None, sc))
    return stages, len(rows)


def tables(gen, agree, feats, stages, n_rows, n_stage_rows, args) -> list[str]:
    title = (f"**(a) greedy generation** ({n_rows} eval rows, max_new_tokens={args.max_new_tokens}, best of "
             f"{args.repeats}, interleaved)")
    lines = [title, "",
             "| batch size | rows/s | vs per-sample | agree with per-sample |", "|---:|---:|---:|---:|"]
    for size, rate in gen.items():
        ratio = rate / gen[1]
        lines.append(f"| {size}{' (per-sample loop)' if size == 1 else ''} | {rate:,.1f} | {ratio:.2f}x | "
                     f"{'-' if size == 1 else f'{agree[size]}/{n_rows}'} |")
    lines += ["", f"**(b) hidden_features** ({n_rows} rows, one forward pass each, best of {args.repeats})", "",
              "| batch size | rows/s | rows/s with attention entropy (eager + hooks) |", "|---:|---:|---:|"]
    for size in sorted({s for s, _ in feats}):
        lines.append(f"| {size} | {feats[size, False]:,.1f} | {feats[size, True]:,.1f} |")
    out = ["\n".join(lines)]
    if stages:
        total = sum(stages.values())
        rows = [f"**(c) evaluate() stages** (all {n_stage_rows} eval rows, default EvalSettings, one run)", "",
                "| stage | seconds | share |", "|---|---:|---:|"]
        rows += [f"| {name} | {sec:.2f} | {sec / total:.0%} |" for name, sec in stages.items()]
        rows.append(f"| total | {total:.2f} | 100% |")
        out.append("\n".join(rows))
    return out


def write_docs(text: str, command: str) -> None:
    """Replace (or append) only this benchmark's section of docs/benchmarks.md."""
    write_section(SECTION, text, command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "bench" / "eval"))
    parser.add_argument("--sources", type=int, default=24, help="eval source questions of the data build")
    parser.add_argument("--rows", type=int, default=128, help="eval rows for (a) and (b)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-stages", action="store_true", help="skip (c)")
    parser.add_argument("--write-docs", action="store_true", help="update the section in docs/benchmarks.md")
    args = parser.parse_args(argv)

    import torch
    import transformers

    from data_builders.contract import load_built
    from rlkit.models.load import ModelArguments, load_model, load_processor

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    model_dir, data_dir = prepare(cache, args.sources)
    model_args = ModelArguments(model_name_or_path=str(model_dir), dtype="auto")
    model, processor = load_model(model_args).eval(), load_processor(model_args)
    rows = [dict(r) for r in load_built(data_dir, split="eval")][: args.rows]

    gen, agree, completions = bench_generate(model, processor, rows, args.batch_sizes, args.max_new_tokens,
                                             args.repeats)
    for size in args.batch_sizes:
        for i, (a, b) in enumerate(zip(completions[1], completions[size], strict=True)):
            if a != b:
                print(f"row {i}: per-sample {a!r} != batch {size} {b!r}", file=sys.stderr)
    feats = bench_features(model, processor, rows, args.batch_sizes, args.repeats)
    stages, n_stage_rows = {}, 0
    if not args.no_stages:
        with tempfile.TemporaryDirectory() as tmp:
            stages, n_stage_rows = bench_stages(model, processor, data_dir, Path(tmp))

    intro = (f"Tiny Qwen2.5-VL (`rlkit.models.tiny`, hidden 128, 4 layers, 4 image tokens per 64 px image), "
             f"eval split of the tiny data recipe with {args.sources} sources; {platform.machine()} CPU, "
             f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs shared with other jobs, "
             f"Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}.")
    texts = [intro, READING, *tables(gen, agree, feats, stages, len(rows), n_stage_rows, args)]
    print("\n\n".join(texts[2:]), flush=True)
    if args.write_docs:
        command = "python benchmarks/bench_eval.py " + " ".join(argv or sys.argv[1:])
        write_docs("\n\n".join(texts), command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())

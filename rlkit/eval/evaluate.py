"""Evaluate a VLM on a built eval split: behaviour per condition, hidden-state probes, self-consistency, report.

    rlkit evaluate --model .cache/tiny/sft --data .cache/tiny/data --out runs/eval-sft
    rlkit evaluate --model Qwen/Qwen2.5-VL-3B-Instruct --data data/vqa-halluc --out runs/eval-base --batch-size 32

Writes to `--out` (formats in docs/evaluation.md): `predictions.jsonl`, `metrics.json`, `consistency.json`,
`probes/` (per-layer AUROC, best layer, difference probe, text-only baseline, weights as safetensors + JSON),
`attention_entropy.json` (only with `attention_entropy=True`) and `report.md` with PNG plots. The same steps are
available from Python as `evaluate(...)`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


@dataclass
class EvalSettings:
    """How to evaluate (defaults suit the tiny model on CPU; real models want a GPU and bigger batches)."""

    split: str = "eval"
    batch_size: int = 32
    max_new_tokens: int = 16
    consistency_samples: int = 5  # K sampled answers per answerable row; 0 skips self-consistency
    consistency_temperature: float = 1.0
    probes: bool = True
    probe_folds: int = 5
    probe_C: float = 0.1  # inverse L2 strength: real hidden sizes (d ~ 1-4k) overfit at C = 1
    # Spatial attention entropy of the last prompt token over image tokens, per layer, and its AUROC for
    # correctness and mirage. Switches the hidden-state pass (not generation) to eager attention.
    attention_entropy: bool = False
    limit: int | None = None  # evaluate only the first `limit` source questions (all their conditions)
    n_boot: int = 1000
    seed: int = 0


def _batches(items: list, size: int, desc: str):
    for start in tqdm(range(0, len(items), size), desc=desc, unit="batch", leave=False):
        yield items[start:start + size]


def _load_rows(data: str | os.PathLike, settings: EvalSettings) -> list[dict]:
    from data_builders.contract import load_built

    dataset = load_built(data, split=settings.split)
    if settings.limit is not None:
        keep = sorted(set(dataset["source_id"]))[: settings.limit]
        dataset = dataset.filter(lambda s: s in set(keep), input_columns="source_id")
    if len(dataset) == 0:
        raise ValueError(f"{data}: split {settings.split!r} has no rows to evaluate")
    return [dict(row, idx=i) for i, row in enumerate(dataset)]


def predict(model, processor, rows: list[dict], settings: EvalSettings) -> list[dict]:
    """Greedy answers for every row, judged against the row's ground truth (one `Prediction` per row)."""
    from rlkit.eval.generate import generate
    from rlkit.rewards.answers import judge

    preds = []
    for batch in _batches(rows, settings.batch_size, "generate"):
        for row, (completion,) in zip(batch, generate(model, processor, batch, settings.max_new_tokens)):
            verdict = judge(completion, row["answer"], row.get("choices") or None)
            preds.append({
                "idx": row["idx"], "source_id": row["source_id"], "condition": row["condition"],
                "corruption": row["corruption"], "severity": float(row["severity"]), "task": row["task"],
                "question": row["question"], "answer": row["answer"], "answerable": bool(row["answerable"]),
                "target": row["target"], "completion": completion, "parsed": verdict.parsed,
                "abstained": verdict.abstained, "correct": verdict.correct,
            })
    return preds


def consistency(model, processor, rows: list[dict], preds: list[dict], settings: EvalSettings) -> dict:
    """Self-consistency of K sampled answers on answerable rows, as a predictor of greedy correctness."""
    from rlkit.eval.consistency import self_consistency
    from rlkit.eval.generate import generate
    from rlkit.rewards.answers import judge

    items = [(row, pred) for row, pred in zip(rows, preds) if pred["answerable"]]
    samples = []
    for i, batch in enumerate(_batches(items, max(1, settings.batch_size // settings.consistency_samples),
                                       "self-consistency")):
        texts = generate(model, processor, [row for row, _ in batch], settings.max_new_tokens,
                         num_samples=settings.consistency_samples, temperature=settings.consistency_temperature,
                         seed=settings.seed + i)
        samples += [[judge(t, row["answer"]).normalized for t in group] for (row, _), group in zip(batch, texts)]
    return self_consistency(samples, [pred["correct"] for _, pred in items])


def features(model, processor, rows: list[dict], settings: EvalSettings) -> dict[str, np.ndarray]:
    """Pooled hidden states of every layer for every row, one forward pass each, batched.

    With `settings.attention_entropy` the same passes also give `attention_entropy` [n, layers] and
    `n_image_tokens` [n], under eager attention (the only kind that returns weights; restored afterwards).
    """
    from contextlib import nullcontext

    from rlkit.eval.generate import eager_attention, hidden_features

    parts: dict[str, list[np.ndarray]] = {}
    with eager_attention(model) if settings.attention_entropy else nullcontext():
        for batch in _batches(rows, settings.batch_size, "hidden states"):
            for key, value in hidden_features(model, processor, batch, settings.attention_entropy).items():
                parts.setdefault(key, []).append(value)
    return {key: np.concatenate(value) for key, value in parts.items()}


ATTENTION_ENTROPY_VERSION = 1  # bump when attention_entropy.json changes meaning or layout


def attention_entropy_summary(preds: list[dict], entropy: np.ndarray, n_image_tokens: np.ndarray) -> dict:
    """AUROC per layer of the spatial attention entropy as a score for correctness and for mirage.

    Args:
        preds: one `Prediction` per row.
        entropy: `[n, L]` from `hidden_features(..., attention_entropy=True)` (decoder layer i in column i).
        n_image_tokens: `[n]` image tokens per row (the entropy's upper bound is their log).

    Returns:
        The content of `attention_entropy.json` (docs/evaluation.md): per label, AUROC per layer with the
        entropy as the score of label 1 (< 0.5: lower entropy goes with the label; null with one class),
        mean entropy per class, and per row the entropy of every layer.
    """
    from sklearn.metrics import roc_auc_score

    from rlkit.eval.probes import correct_labels, mirage_labels

    def mean(x: np.ndarray) -> float | None:
        x = x[np.isfinite(x)]
        return float(x.mean()) if len(x) else None

    n_layers = entropy.shape[1]
    predicts = {}
    for name, labels in (("correct", correct_labels(preds)), ("mirage", mirage_labels(preds))):
        keep = labels >= 0  # mirage: undetermined rows (-1) dropped, as for the probes
        auroc = []
        for j in range(n_layers):
            m = keep & np.isfinite(entropy[:, j])
            both = len(np.unique(labels[m])) == 2
            auroc.append(float(roc_auc_score(labels[m], entropy[m, j])) if both else None)
        predicts[name] = {
            "auroc": auroc, "n": int(keep.sum()), "n_positive": int((labels == 1).sum()),
            "mean_entropy_positive": [mean(entropy[labels == 1, j]) for j in range(n_layers)],
            "mean_entropy_negative": [mean(entropy[labels == 0, j]) for j in range(n_layers)],
            "reason": None if any(a is not None for a in auroc) else "labels have one class: AUROC undefined",
        }
    return {
        "attention_entropy_version": ATTENTION_ENTROPY_VERSION,
        "definition": "per layer, entropy (nats) of the last prompt token's attention restricted to image tokens "
                      "and renormalised over them, averaged over heads; in [0, log(n_image_tokens)]",
        "layers": list(range(1, n_layers + 1)),  # the hidden-state index each layer produces, as in probes/
        "n_rows": len(preds),
        "predicts": predicts,
        "rows": [{"idx": p["idx"], "source_id": p["source_id"], "condition": p["condition"],
                  "corruption": p["corruption"], "n_image_tokens": int(k),
                  "entropy": [float(v) if np.isfinite(v) else None for v in row]}
                 for p, k, row in zip(preds, n_image_tokens, entropy, strict=True)],
    }


def probes(rows: list[dict], preds: list[dict], feats: dict[str, np.ndarray], out: Path,
           settings: EvalSettings, model_id: str) -> dict:
    """Mirage, correctness and evidence probes per layer vs a text-only baseline on the same folds; weights saved.

    The `unanswerable` probe reads the data's label (the image lost the evidence), not the model's behaviour: its
    AUROC per damage says which damages the representation can tell from a clean image at all, i.e. where RL
    can teach grounded abstention.
    """
    from data_builders.contract import prompt_text
    from rlkit.eval.probes import (
        by_damage_auroc,
        correct_labels,
        fit_difference_probes,
        fit_layer_probes,
        mirage_labels,
        save_probe_results,
        text_baseline,
        within_group_auroc,
    )

    groups = np.array([p["source_id"] for p in preds])
    texts = [prompt_text(row["prompt"]) for row in rows]
    blank_of = {p["source_id"]: i for i, p in enumerate(preds) if p["corruption"] == "blank"}
    damages = [p["condition"] + (f"/{p['corruption']}" if p["corruption"] else "") for p in preds]
    unanswerable = np.array([int(not p["answerable"]) for p in preds], dtype=np.int8)
    summaries = {}
    for name, labels in (("mirage", mirage_labels(preds)), ("correct", correct_labels(preds)),
                         ("unanswerable", unanswerable)):
        keep = np.flatnonzero(labels >= 0)
        y, g = labels[keep], groups[keep]
        kw = {"n_splits": settings.probe_folds, "seed": settings.seed, "C": settings.probe_C, "label_name": name}
        try:
            result = fit_layer_probes(feats["last_token"][keep], y, g, pooling="last_token", **kw)
        except ValueError as err:  # e.g. a model that never mirages: nothing to probe, say why
            logger.warning("Skipping the %s probe: %s", name, err)
            summaries[name] = {"skipped": str(err)}
            continue
        text_auroc, text_scores = text_baseline([texts[i] for i in keep], y, g, fold_ids=result.fold_ids,
                                                return_scores=True)
        # Pairs showing the same prompt text (e.g. the normal and the blank image of one question): the fair
        # probe-vs-text contest. Text-interference rows change the prompt, so they pair only among themselves.
        same_prompt = np.array([f"{groups[i]}\n{texts[i]}" for i in keep])
        probe_within, pairs = within_group_auroc(result.best_scores, y, same_prompt)
        within = {"probe": probe_within, "text": within_group_auroc(text_scores, y, same_prompt)[0], "pairs": pairs}
        # h(image) - h(blank image) for the same prompt: blank rows themselves are left out (h(blank) - h(blank) = 0
        # would give them away), and so are text-interference rows, whose prompt is not the blank row's. Not for the
        # evidence probe: whether the image lost the evidence is a question about the image alone.
        paired = [] if name == "unanswerable" else [
            i for i in keep if groups[i] in blank_of and preds[i]["corruption"] != "blank"
            and preds[i]["condition"] != "text_interference"]
        difference = None
        if paired:
            blank_rows = [blank_of[groups[i]] for i in paired]
            try:
                difference = fit_difference_probes(feats["last_token"][paired], feats["last_token"][blank_rows],
                                                   labels[paired], groups[paired], **kw)
            except ValueError as err:
                logger.warning("Skipping the %s difference probe: %s", name, err)
        by_damage = by_damage_auroc(result.best_scores, y, [damages[i] for i in keep])
        summaries[name] = save_probe_results(out / "probes" / name, result, text_auroc, difference,
                                             model_id=model_id, within_question=within, by_damage=by_damage)
    return summaries


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def evaluate(model_path: str, data: str | os.PathLike, out: str | os.PathLike, settings: EvalSettings | None = None,
             overwrite: bool = False, trust_remote_code: bool = False) -> dict:
    """Run every evaluation step and write the output folder atomically.

    Returns:
        `metrics.json`'s content, plus `probes`, `consistency` and `attention_entropy` (None when off) summaries.
    """
    import torch

    from rlkit.eval.metrics import compute_metrics, write_metrics
    from rlkit.eval.report import write_report
    from rlkit.models.load import ModelArguments, load_model, load_processor

    settings = settings or EvalSettings()
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    rows = _load_rows(data, settings)
    model_args = ModelArguments(model_name_or_path=str(model_path), dtype="auto")
    model = load_model(model_args, trust_remote_code=trust_remote_code).eval()
    if torch.cuda.is_available():
        model = model.to("cuda")
    processor = load_processor(model_args, trust_remote_code=trust_remote_code)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        preds = predict(model, processor, rows, settings)
        _write_jsonl(tmp / "predictions.jsonl", preds)
        metrics = compute_metrics(preds, n_boot=settings.n_boot, seed=settings.seed)
        write_metrics(tmp / "metrics.json", metrics)
        sc = consistency(model, processor, rows, preds, settings) if settings.consistency_samples > 0 else None
        if sc is not None:
            (tmp / "consistency.json").write_text(json.dumps(sc, indent=2, allow_nan=False) + "\n")
        probe_summaries, entropy = {}, None
        if settings.probes or settings.attention_entropy:
            feats = features(model, processor, rows, settings)
            if settings.probes:
                probe_summaries = probes(rows, preds, feats, tmp, settings, model_id=str(model_path))
            if settings.attention_entropy:
                entropy = attention_entropy_summary(preds, feats["attention_entropy"], feats["n_image_tokens"])
                (tmp / "attention_entropy.json").write_text(json.dumps(entropy, allow_nan=False) + "\n")
        write_report(tmp, metrics, probe_summaries or None, sc, entropy)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Wrote the evaluation of %s to %s", model_path, out)
    return {**metrics, "probes": probe_summaries, "consistency": sc, "attention_entropy": entropy}

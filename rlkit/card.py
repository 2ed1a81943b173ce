"""The model card of a published run: hub metadata that validates, and a body a reader can trust.

`build_card` renders `CARD_TEMPLATE` with huggingface_hub's `ModelCard`: `base_model` is the first hub id found by
following the run's lineage (a GRPO run's SFT base, its tiny model, ...) back through run.json, recipes and
adapter configs; `model-index` holds the headline metrics and each probe's AUROC, and the body's table gives the
metrics with their confidence intervals. `rlkit.publish` writes it as the published folder's README.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

# (path in metrics.json, model-index metric type, label), in card order; undefined (null) metrics are left out.
CARD_METRICS = (
    (("by_condition", "normal", "accuracy_answerable"), "clean_accuracy", "clean accuracy (normal images)"),
    (("overall", "accuracy_answerable"), "accuracy_answerable", "accuracy on answerable rows"),
    (("overall", "abstention_unanswerable"), "abstention_unanswerable", "abstention on unanswerable rows"),
    (("overall", "mirage_rate"), "mirage_rate", "mirage rate (answers without evidence)"),
    (("overall", "over_abstention"), "over_abstention", "over-abstention on answerable rows"),
    (("overall", "hallucination_rate"), "hallucination_rate", "hallucination rate"),
    (("overall", "truthfulness"), "truthfulness", "truthfulness (correct - hallucinated)"),
    (("overall", "image_reliance_gap"), "image_reliance_gap", "image-reliance gap (normal - blank accuracy)"),
)
RECIPE_KEYS = ("reward_funcs", "reward_weights", "answerable_correct", "answerable_wrong", "answerable_abstain",
               "unanswerable_abstain", "unanswerable_answer", "learning_rate", "max_steps", "num_train_epochs",
               "per_device_train_batch_size", "gradient_accumulation_steps", "num_generations",
               "max_completion_length", "temperature", "beta", "use_peft", "lora_r", "lora_alpha", "load_in_4bit",
               "freeze_vision_tower")
ARM_ROWS = {"standard": "normal image-question pairs only",
            "hallucination": "hallucination-inducing rows (corrupted or mismatched images, misleading text)",
            "mixed": "normal pairs mixed with hallucination-inducing rows"}

# Rendered by huggingface_hub's ModelCard.from_template (Jinja); `card_data` is the validated YAML metadata.
CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

A vision-language model post-trained with rlkit (GRPO) to answer from the image and to say when it cannot tell,
instead of guessing from the question alone.
{% if tiny %}
> **Tiny demo model.** This is rlkit's random-initialised ~1 M-parameter demo VLM, trained for minutes on synthetic
> scenes. It is useful for testing pipelines and nothing else.
{% endif %}
## Training

| | |
|---|---|
| started from | `{{ started }}` |
| base model on the hub | {{ "`%s`" % base_model if base_model else "none (a local model)" }} |
| arm | `{{ arm }}`: {{ arm_rows }} |
| reward | `{{ reward }}` |
| seed | {{ seed }} |
| data | `{{ dataset }}` (fingerprint `{{ fingerprint }}`) |
| config hash / git commit | `{{ config_hash }}` / `{{ git_commit }}` |
{% for key, value in settings %}| {{ key }} | `{{ value }}` |
{% endfor %}
Full recipe: `recipe.yaml`; run record: `run.json`; data manifest: {{ "`data_manifest.json`" if has_manifest
else "not available for this run" }}.

## Evaluation

On the eval split of the same data build; 95% cluster-bootstrap intervals over source questions (definitions in
rlkit's docs/evaluation.md). Full report with plots: `eval/report.md`.

| metric | value | 95% CI | n |
|---|---|---|---|
{% for _, label, value, low, high, n in rows %}| {{ label }} | {{ "%.3f" % value }} | {{ "[%.3f, %.3f]" % (low, high)
if low is not none and high is not none else "" }} | {{ n }} |
{% endfor %}
## How to load

```python
from transformers import AutoModelForImageTextToText, AutoProcessor
{% if library_name == "peft" %}from peft import PeftModel

base = AutoModelForImageTextToText.from_pretrained("{{ started }}")
model = PeftModel.from_pretrained(base, "{{ ref }}")
{% else %}
model = AutoModelForImageTextToText.from_pretrained("{{ ref }}")
{% endif %}processor = AutoProcessor.from_pretrained("{{ ref }}")

question = 'What color is the circle? Answer with one word, or say "cannot tell".'
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
text = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(text=[text], images=[image], return_tensors="pt")  # image: a PIL image
new_tokens = model.generate(**inputs, max_new_tokens=16)[:, inputs["input_ids"].shape[1]:]
print(processor.batch_decode(new_tokens, skip_special_tokens=True)[0])
```
{% if merged %}
These weights are the LoRA adapter in `adapter/` merged into its base
(`PeftModel.from_pretrained(base, "{{ ref }}", subfolder="adapter")` loads the adapter itself).
{% endif %}{% if has_probe %}
## Mirage probe

`eval/probes/mirage/probe/` holds a linear probe (safetensors + JSON, no pickle) that reads the hidden state of the
last prompt token and estimates whether the model is about to answer without visual evidence:

```python
from rlkit.eval.generate import hidden_features
from rlkit.eval.probes import load_probe

probe = load_probe("<local copy of this repo>/eval/probes/mirage/probe")
features = hidden_features(model, processor, rows)  # rows: rlkit data-contract rows (prompt + image)
p_mirage = probe.score(features[probe.pooling][:, probe.layer])
```
{% endif %}
## Limitations
{% if tiny %}
- A tiny demo model: its answers and metrics mean nothing outside rlkit's tests and demo.{% endif %}
- Abstention was learnt and measured on the damage types of this data build (see the manifest); other kinds of
  missing evidence may still get confident guesses.
- The metrics come from the eval split of the same data family, not from an external benchmark.
{% if library_name == "peft" and not base_model %}- The adapter applies on top of `{{ started }}`, a local model that
  is not on the hub: publish that model too, or publish with `--merge`.
{% endif %}{% if chain %}- Local models in its lineage: {{ chain }}.
{% endif %}"""


def _parent_of(folder: Path) -> str | None:
    """The model `folder` was trained or adapted from, as its own records say (None when they do not)."""
    if (folder / "adapter_config.json").is_file():
        return json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not (folder / "run.json").is_file():
        return None
    record = json.loads((folder / "run.json").read_text())
    for candidate in (record.get("base_model"), (record.get("recipe") or {}).get("model_name_or_path"),
                      (record.get("overrides") or {}).get("model_name_or_path")):
        if candidate:
            return str(candidate)
    recipe = record.get("recipe_path")
    if recipe and Path(recipe).is_file():
        return (yaml.safe_load(Path(recipe).read_text()) or {}).get("model_name_or_path")
    return None


def _lineage(start: str | None) -> tuple[str | None, list[str], bool]:
    """Follow base models back from `start`: (first hub id or None, local folders passed, tiny demo model?).

    GRPO usually starts from a local SFT run; its run.json / recipe / adapter_config name the model it came from,
    and so on, up to a hub id (the only thing the card's `base_model` may hold) or a dead end.
    """
    chain: list[str] = []
    tiny, name = False, start
    while name and len(chain) < 8:
        path = Path(name).expanduser()
        if not path.is_dir():
            hub_like = re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name) is not None
            return (name if hub_like else None), chain, tiny
        chain.append(str(path))
        tiny = tiny or (path / "rlkit_tiny.json").is_file()
        name = _parent_of(path)
    return None, chain, tiny


def card_metrics(metrics: dict, eval_dir: Path) -> list[tuple[str, str, float, float | None, float | None, int]]:
    """`(metric type, label, value, ci_low, ci_high, n)` of the headline metrics and of each probe's AUROC."""
    rows = []
    for path, kind, label in CARD_METRICS:
        node = metrics
        for key in path:
            node = node.get(key) or {}
        if node.get("value") is not None:
            rows.append((kind, label, node["value"], node.get("ci_low"), node.get("ci_high"), node.get("n", 0)))
    for summary_path in sorted(eval_dir.glob("probes/*/probes.json")):
        summary, name = json.loads(summary_path.read_text()), summary_path.parent.name
        probe = summary.get("probe") or {}
        if probe.get("best_auroc") is not None:
            rows.append((f"{name}_probe_auroc", f"{name} probe AUROC (layer {probe['best_layer']}, out-of-fold)",
                         probe["best_auroc"], None, None, probe.get("n", 0)))
        text_auroc = (summary.get("text_baseline") or {}).get("auroc")
        if text_auroc is not None:
            rows.append((f"{name}_text_baseline_auroc", f"{name} text-only baseline AUROC", text_auroc, None, None,
                         probe.get("n", 0)))
    return rows


def build_card(record: dict, recipe: dict, manifest: dict | None, eval_dir: Path, *, license: str, library: str,
               merged: bool, repo_id: str | None = None):
    """The model card: hub metadata built with `ModelCardData` / `EvalResult` (so it validates) and a body.

    Returns:
        A `huggingface_hub.ModelCard`.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    arm, reward, seed = record.get("arm", "unknown"), record.get("reward", "unknown"), record.get("seed")
    name = (repo_id or "").split("/")[-1] or f"rlkit-{record.get('name', 'run')}-{arm}-{reward}-seed{seed}"
    base_model, chain, tiny = _lineage(record.get("base_model"))
    manifest = manifest or {}
    fingerprint = str(manifest.get("fingerprint") or record.get("data_fingerprint") or "unknown")
    disk = (manifest.get("config") or {}).get("disk") or {}
    # A hub dataset is named by its id; a locally built one by its source and content fingerprint.
    dataset = disk.get("path") if disk.get("format") == "hub" else None
    dataset = dataset or f"rlkit-{manifest.get('source', 'data')}-{fingerprint[:12]}"
    rows = card_metrics(json.loads((eval_dir / "metrics.json").read_text()), eval_dir)
    results = [EvalResult(task_type="image-text-to-text", task_name="VQA with abstention on damaged images",
                          dataset_type=dataset, dataset_name=f"rlkit eval split ({fingerprint[:12]})",
                          dataset_split="eval", metric_type=kind, metric_name=label, metric_value=value)
               for kind, label, value, *_ in rows]
    tags = ["rlkit", "grpo", "vision-language", "hallucination", "abstention"]
    tags += [re.sub(r"[^\w-]+", "-", str(t)).strip("-") for t in (arm, reward)] + (["lora"] * (library == "peft"))
    data = ModelCardData(base_model=base_model, datasets=[dataset], tags=list(dict.fromkeys(tags)), license=license,
                         library_name=library, pipeline_tag="image-text-to-text", model_name=name,
                         eval_results=results or None)
    return ModelCard.from_template(
        data, template_str=CARD_TEMPLATE, title=name, tiny=tiny, started=record.get("base_model", "unknown"), arm=arm,
        arm_rows=ARM_ROWS.get(arm, "custom arm"), reward=reward, seed=seed, dataset=dataset, fingerprint=fingerprint,
        config_hash=record.get("config_hash"), git_commit=record.get("git_commit"),
        settings=[(k, recipe[k]) for k in RECIPE_KEYS if k in recipe], has_manifest=bool(manifest), rows=rows,
        ref=repo_id or "path/to/this/folder", merged=merged,
        has_probe=(eval_dir / "probes" / "mirage" / "probe").is_dir(), chain=", ".join(f"`{c}`" for c in chain))

"""Human-readable evaluation report: `report.md` plus PNG plots.

```python
from rlkit.eval.report import write_report

write_report("out", metrics, probe_results=summary, consistency=sc)   # -> out/report.md
```

`metrics` is the output of `rlkit.eval.metrics.compute_metrics`, `probe_results` of
`rlkit.eval.probes.summarize_probes` (what `probes/probes.json` holds), `consistency` of
`rlkit.eval.consistency.self_consistency` and `attention_entropy` of
`rlkit.eval.evaluate.attention_entropy_summary` (what `attention_entropy.json` holds). A part given as None is
skipped with a note, not an error.

Plots use matplotlib's object API on a bare `Figure` (Agg canvas), so writing a report never touches
pyplot's global state or the backend of the caller's session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_CONDITION_COLUMNS = ("accuracy_answerable", "abstention_unanswerable", "mirage_rate", "mirage_prior_match",
                      "over_abstention", "truthfulness")
_PLOTTED = ("accuracy_answerable", "abstention_unanswerable", "mirage_rate")
_LABELS = {
    "accuracy_answerable": "accuracy (answerable)",
    "abstention_unanswerable": "abstention (unanswerable)",
    "mirage_rate": "mirage rate",
    "mirage_prior_match": "mirage = prior",
    "over_abstention": "over-abstention",
    "hallucination_rate": "hallucination",
    "truthfulness": "truthfulness",
    "image_reliance_gap": "image-reliance gap",
    "paired_accuracy_drop": "paired accuracy drop",
}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cell(metric: dict | None) -> str:
    """`0.750 [0.500, 1.000] (n=4)`; `n/a (n=0)` for an empty denominator."""
    if not metric or metric.get("value") is None:
        return f"n/a (n={metric.get('n', 0) if metric else 0})"
    ci = ""
    if metric.get("ci_low") is not None:
        ci = f" [{_fmt(metric['ci_low'])}, {_fmt(metric['ci_high'])}]"
    return f"{_fmt(metric['value'])}{ci} (n={metric['n']})"


def _new_figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def _behaviour_groups(metrics: dict) -> list[tuple[str, dict]]:
    """Overall, then each condition, then each corruption within `corrupted`."""
    groups = [("overall", metrics.get("overall", {}))]
    groups += [(name, values) for name, values in metrics.get("by_condition", {}).items()]
    groups += [(f"corrupted / {name}", values) for name, values in metrics.get("by_corruption", {}).items()]
    return groups


def plot_conditions(metrics: dict, path: Path) -> Path:
    """Bars of accuracy / abstention / mirage rate per condition, with CI error bars; n/a bars omitted."""
    groups = _behaviour_groups(metrics)
    fig, ax = _new_figure(max(6.0, 1.6 * len(groups) + 2), 4.0)
    width = 0.8 / len(_PLOTTED)
    for j, name in enumerate(_PLOTTED):
        xs, heights, err_low, err_high = [], [], [], []
        for i, (_, values) in enumerate(groups):
            m = values.get(name)
            if not m or m.get("value") is None:
                continue
            v = m["value"]
            xs.append(i + (j - (len(_PLOTTED) - 1) / 2) * width)
            heights.append(v)
            err_low.append(v - m["ci_low"] if m.get("ci_low") is not None else 0.0)
            err_high.append(m["ci_high"] - v if m.get("ci_high") is not None else 0.0)
        if xs:
            ax.bar(xs, heights, width, yerr=[err_low, err_high], capsize=3, label=_LABELS[name])
    ax.set_xticks(range(len(groups)), [g.replace(" / ", "\n") for g, _ in groups], fontsize="small")
    ax.set_ylim(0, 1.25)  # headroom so the legend never hides a bar
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("rate")
    ax.set_title("Behaviour per condition (95% CI, bootstrap over sources)")
    ax.legend(loc="upper center", ncol=len(_PLOTTED), fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _probe_summaries(probe_results: dict | None) -> dict[str, dict]:
    """`{label: summary}` from one `summarize_probes` dict or a mapping of them (entries may be `{"skipped": why}`)."""
    if not probe_results:
        return {}
    if "probe" in probe_results:
        return {probe_results["probe"].get("label_name", "probe"): probe_results}
    return dict(probe_results)


def plot_probe_auroc(probe_results: dict | None, path: Path, attention_entropy: dict | None = None) -> Path:
    """Out-of-fold AUROC per layer for each probe label, text-only baselines and chance as horizontal lines.

    With `attention_entropy`, the AUROC of the spatial attention entropy per layer for each label is drawn as
    a dotted line in that label's colour (a raw score: no fitting, no folds).
    """
    fig, ax = _new_figure()
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown"]
    fitted = {k: v for k, v in _probe_summaries(probe_results).items() if v.get("probe")}
    entropy = (attention_entropy or {}).get("predicts", {})
    labels = list(dict.fromkeys([*fitted, *entropy]))
    color_of = {label: colors[i % len(colors)] for i, label in enumerate(labels)}
    for label, summary in fitted.items():
        color = color_of[label]
        probe = summary["probe"]
        ax.plot(probe["layers"], probe["auroc"], marker="o", color=color,
                label=f"{label} probe ({probe.get('pooling', '')})")
        diff = summary.get("difference_probe")
        if diff:
            ax.plot(diff["layers"], diff["auroc"], marker="s", linestyle="-.", color=color,
                    label=f"{label} difference probe h(img) - h(blank)")
        text_auroc = (summary.get("text_baseline") or {}).get("auroc")
        if text_auroc is not None:
            ax.axhline(text_auroc, color=color, linestyle="--", label=f"{label} text-only ({text_auroc:.3f})")
    for label, result in entropy.items():
        points = [(x, a) for x, a in zip(attention_entropy["layers"], result["auroc"], strict=True) if a is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="x", linestyle=":", color=color_of[label],
                    label=f"{label}: attention entropy (raw score)")
    ax.axhline(0.5, color="grey", linestyle=":", label="chance")
    ax.set_xlabel("layer")
    ax.set_ylabel("AUROC (grouped out-of-fold)")
    ax.set_ylim(0, 1.02)
    ax.set_title("Linear probes per layer" + (" and attention entropy" if entropy else ""))
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _share_bins(shares: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Bin index per item: one bin per distinct share when few (shares are multiples of 1/K), else deciles."""
    distinct = np.unique(shares)
    if len(distinct) <= 12:
        return np.searchsorted(distinct, shares), [f"{v:.2f}" for v in distinct]
    edges = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(shares, edges[1:-1]), 0, 9)
    return idx, [f"{edges[i]:.1f}-{edges[i + 1]:.1f}" for i in range(10)]


def plot_consistency(consistency: dict, path: Path) -> Path:
    """Fraction of correct greedy answers per majority-share bin, annotated with each bin's item count."""
    shares = np.asarray(consistency["majority_share"], dtype=float)
    correct = np.asarray(consistency["correct"], dtype=float)
    idx, labels = _share_bins(shares)
    fig, ax = _new_figure()
    xs, fracs, counts = [], [], []
    for b in range(len(labels)):
        m = idx == b
        if m.any():
            xs.append(b)
            fracs.append(correct[m].mean())
            counts.append(int(m.sum()))
    bars = ax.bar(xs, fracs, 0.7, color="tab:green")
    for bar, n in zip(bars, counts, strict=True):
        ax.annotate(f"n={n}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                    va="bottom", fontsize="small")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("majority share of the K sampled answers")
    ax.set_ylabel("fraction of greedy answers correct")
    r = (consistency.get("point_biserial_r") or {}).get("value")
    auroc = (consistency.get("auroc") or {}).get("value")
    ax.set_title(f"Self-consistency vs correctness (R = {_fmt(r)}, AUROC = {_fmt(auroc)})")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _metrics_section(metrics: dict | None, out_dir: Path) -> list[str]:
    lines = ["## Behaviour per condition", ""]
    if not metrics:
        return lines + ["_No metrics given: behaviour section skipped._", ""]
    ci = metrics.get("ci", {})
    intro = (f"metrics_version {metrics.get('metrics_version')}, {metrics.get('n_rows')} rows from "
             f"{metrics.get('n_sources')} sources. Cells: value [{ci.get('level', 0.95):.0%} CI] (n = rows in "
             f"the denominator); CI: {ci.get('method', 'n/a')}, {ci.get('n_boot')} resamples, "
             f"seed {ci.get('seed')}. Definitions: docs/evaluation.md.")
    lines += [intro, ""]
    header = ["group"] + [_LABELS[c] for c in _CONDITION_COLUMNS]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, values in _behaviour_groups(metrics):
        lines.append("| " + " | ".join([name] + [_cell(values.get(c)) for c in _CONDITION_COLUMNS]) + " |")
    overall = metrics.get("overall", {})
    gap = (f"- **{_LABELS['image_reliance_gap']}** (accuracy on normal minus blank-image rows, paired by "
           f"source; n = sources): {_cell(overall.get('image_reliance_gap'))}")
    lines += ["", gap, f"- **{_LABELS['hallucination_rate']}** (overall): {_cell(overall.get('hallucination_rate'))}"]
    drops = {k: v.get("paired_accuracy_drop") for k, v in metrics.get("by_corruption", {}).items()}
    for name, drop in drops.items():
        lines.append(f"- paired accuracy drop, normal -> {name}: {_cell(drop)}")
    plot_conditions(metrics, out_dir / "conditions.png")
    return lines + ["", "![behaviour per condition](conditions.png)", ""]


_PROBE_MEANINGS = {
    "mirage": "label 1: the model answered although the answer did not come from the image (docs/evaluation.md)",
    "correct": "label 1: the greedy answer is correct",
    "unanswerable": "label 1: the image lost the evidence (`answerable` is false): the data's label, not the "
                    "model's behaviour; where this probe fails, no training can teach grounded abstention",
}


def _one_probe(label: str, summary: dict) -> list[str]:
    if not summary.get("probe"):
        return [f"### {label}", "", f"_Skipped: {summary.get('skipped', 'no probe fitted')}._", ""]
    probe = summary["probe"]
    diff = summary.get("difference_probe")
    text_auroc = (summary.get("text_baseline") or {}).get("auroc")
    intro = (f"Pooling `{probe.get('pooling')}`: {probe['n']} rows ({probe['n_positive']} positive) in "
             f"{probe['n_groups']} source groups, {probe['n_splits']}-fold grouped CV (seed {probe['seed']}, "
             f"C = {probe['C']}).")
    within = summary.get("within_question")  # absent in probes.json written before it existed
    probe_within = f"; within question {_fmt(within['probe'])}" if within else ""
    text_within = f"; within question {_fmt(within['text'])}" if within else ""
    meaning = f"{_PROBE_MEANINGS[label]}. " if label in _PROBE_MEANINGS else ""
    lines = [f"### {label}", "", meaning + intro, "",
             f"- best layer: **{probe['best_layer']}**, AUROC {_fmt(probe['best_auroc'])}{probe_within}",
             f"- text-only baseline (TF-IDF + logistic regression, same folds): AUROC {_fmt(text_auroc)}{text_within}",
             f"- probe minus text: {_fmt(summary.get('probe_minus_text'))}"]
    if within:
        lines.append(f"- within question: AUROC over the {within['pairs']} (positive, negative) pairs of rows that "
                     "share a source_id (same question: identical prompt text unless a row is text_interference)")
    if diff:
        lines.append(f"- difference probe h(image) - h(blank): best layer {diff['best_layer']}, "
                     f"AUROC {_fmt(diff['best_auroc'])} ({diff['n']} rows)")
    if summary.get("by_damage"):
        lines += ["", "AUROC of the best layer's out-of-fold scores on the normal rows plus one damage's rows "
                  "(which damages the probe tells from a clean image):", "", "| damage | rows | AUROC |",
                  "|---|---|---|"]
        lines += [f"| {name} | {v['n']} | {_fmt(v['auroc'])} |" for name, v in summary["by_damage"].items()]
    diff_by_layer = dict(zip(diff["layers"], diff["auroc"], strict=True)) if diff else {}
    header = "| layer | probe AUROC |" + (" difference AUROC |" if diff else "")
    lines += ["", header, "|---|---|" + ("---|" if diff else "")]
    for layer, auroc in zip(probe["layers"], probe["auroc"], strict=True):
        extra = f" {_fmt(diff_by_layer.get(layer))} |" if diff else ""
        lines.append(f"| {layer} | {_fmt(auroc)} |{extra}")
    return [*lines, ""]


def _attention_entropy_lines(entropy: dict) -> list[str]:
    predicts = entropy["predicts"]
    lines = ["### Spatial attention entropy", "",
             f"H_s: {entropy['definition']}. Used as a raw score (no fitting): AUROC for label 1 per layer "
             "(below 0.5: lower entropy goes with the label). Rows: " +
             ", ".join(f"{k} {v['n']} ({v['n_positive']} positive)" for k, v in predicts.items()) + ".", ""]
    header = ["layer"] + [cell for k in predicts for cell in (f"{k}: AUROC", f"{k}: mean H_s (1 / 0)")]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for j, layer in enumerate(entropy["layers"]):
        cells = [f"{_fmt(v['auroc'][j])} | {_fmt(v['mean_entropy_positive'][j])} / "
                 f"{_fmt(v['mean_entropy_negative'][j])}" for v in predicts.values()]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    reasons = [f"{k}: {v['reason']}" for k, v in predicts.items() if v.get("reason")]
    return [*lines, *([""] + [f"_{r}._" for r in reasons] if reasons else []), ""]


def _probe_section(probe_results: dict | None, out_dir: Path, attention_entropy: dict | None = None) -> list[str]:
    lines = ["## Probes", ""]
    summaries = _probe_summaries(probe_results)
    if not summaries and not attention_entropy:
        return [*lines, "_No probe results given: probe section skipped._", ""]
    for label, summary in summaries.items():
        lines += _one_probe(label, summary)
    if attention_entropy:
        lines += _attention_entropy_lines(attention_entropy)
    if any(v.get("probe") for v in summaries.values()) or attention_entropy:
        plot_probe_auroc(probe_results, out_dir / "probe_auroc.png", attention_entropy)
        lines += ["![probe AUROC per layer](probe_auroc.png)", ""]
    return lines


def _consistency_section(consistency: dict | None, out_dir: Path) -> list[str]:
    lines = ["## Self-consistency", ""]
    if not consistency:
        return lines + ["_No self-consistency results given: section skipped._", ""]
    r, auroc = consistency.get("point_biserial_r", {}), consistency.get("auroc", {})
    lines += ["| statistic | value |", "|---|---|",
              f"| items | {consistency['n_items']} |",
              f"| samples per item (K) | {consistency['k_min']}-{consistency['k_max']} |",
              f"| mean majority share, correct | {_fmt(consistency.get('mean_share_correct'))} |",
              f"| mean majority share, incorrect | {_fmt(consistency.get('mean_share_incorrect'))} |",
              f"| point-biserial R (p) | {_fmt(r.get('value'))} ({_fmt(r.get('p_value'), 4)}) |",
              f"| AUROC of majority share | {_fmt(auroc.get('value'))} |", ""]
    if r.get("reason") or auroc.get("reason"):
        lines += [f"_Undefined: {r.get('reason') or auroc.get('reason')}._", ""]
    plot_consistency(consistency, out_dir / "consistency.png")
    return lines + ["![self-consistency vs correctness](consistency.png)", ""]


def write_report(out_dir: str | Path, metrics: dict | None, probe_results: dict | None = None,
                 consistency: dict | None = None, attention_entropy: dict | None = None) -> Path:
    """Write `report.md` and its plots (`conditions.png`, `probe_auroc.png`, `consistency.png`) to `out_dir`.

    Args:
        out_dir: folder to write into (created if missing).
        metrics: output of `compute_metrics`; None skips the behaviour section.
        probe_results: output of `summarize_probes`, or a mapping `{label: summary}` of several (an entry
            `{"skipped": reason}` is reported as skipped); None skips the probe section.
        consistency: output of `self_consistency`; None skips the self-consistency section.
        attention_entropy: output of `attention_entropy_summary`, reported in the probe section (table and
            lines on `probe_auroc.png`); None leaves it out.

    Returns:
        Path of `report.md`. Only the plots of the parts given are written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Evaluation report", ""]
    lines += _metrics_section(metrics, out_dir)
    lines += _probe_section(probe_results, out_dir, attention_entropy)
    lines += _consistency_section(consistency, out_dir)
    path = out_dir / "report.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


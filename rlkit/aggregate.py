"""Aggregate an ablation's evaluations: every headline metric per arm, mean and 95% CI over seeds.

    rlkit aggregate --out runs/tiny      # also run at the end of `rlkit ablate`

Reads `<arm>-<reward>/seed<k>/eval/` and `base/eval/`, writes `results.json`, `results.md` and
`results.png` (one panel per metric, arms side by side, error bars = 95% t-interval over seeds).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# (key, label, where in metrics.json / probes.json)
HEADLINE = (
    ("clean_accuracy", "clean accuracy", ("metrics", "by_condition", "normal", "accuracy_answerable")),
    ("abstention_unanswerable", "abstention on unanswerable", ("metrics", "overall", "abstention_unanswerable")),
    ("mirage_rate", "mirage rate", ("metrics", "overall", "mirage_rate")),
    ("mirage_prior_match", "mirage guesses matching the answer", ("metrics", "overall", "mirage_prior_match")),
    ("over_abstention", "over-abstention", ("metrics", "overall", "over_abstention")),
    ("image_reliance_gap", "image-reliance gap", ("metrics", "overall", "image_reliance_gap")),
    ("truthfulness", "truthfulness", ("metrics", "overall", "truthfulness")),
    ("probe_auroc", "mirage probe AUROC (best layer)", ("probes", "probe", "best_auroc")),
    ("text_auroc", "text-only baseline AUROC", ("probes", "text_baseline", "auroc")),
    ("probe_minus_text", "probe minus text AUROC", ("probes", "probe_minus_text")),
    # AUROC over pairs of rows sharing a source_id, i.e. the same question: the fair probe-vs-text comparison.
    ("probe_auroc_within_question", "mirage probe AUROC within question",
     ("probes", "within_question", "probe")),
    ("text_auroc_within_question", "text-only AUROC within question", ("probes", "within_question", "text")),
)
PLOTTED = ("clean_accuracy", "abstention_unanswerable", "mirage_rate", "image_reliance_gap", "probe_auroc")


def _dig(tree, path):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    if isinstance(tree, dict):  # metrics.json values are {"value", "ci_low", "ci_high", "n"}
        tree = tree.get("value")
    return tree


def read_eval(eval_dir: Path) -> dict[str, float | None]:
    """The headline numbers of one evaluation folder."""
    sources = {"metrics": json.loads((eval_dir / "metrics.json").read_text())}
    probes = eval_dir / "probes" / "mirage" / "probes.json"
    sources["probes"] = json.loads(probes.read_text()) if probes.exists() else {}
    return {key: _dig(sources, path) for key, _, path in HEADLINE}


def mean_ci(values: list[float | None]) -> dict:
    """Mean and 95% t-interval half-width over seeds (None values are left out and counted)."""
    from scipy import stats

    xs = [v for v in values if v is not None]
    out = {"mean": None, "ci95": None, "n": len(xs), "values": values}
    if xs:
        out["mean"] = sum(xs) / len(xs)
    if len(xs) > 1:
        sd = math.sqrt(sum((x - out["mean"]) ** 2 for x in xs) / (len(xs) - 1))
        out["ci95"] = float(stats.t.ppf(0.975, len(xs) - 1) * sd / math.sqrt(len(xs)))
    return out


def aggregate(out_dir: str | Path, arms: list[str], rewards: list[str], seeds: list[int]) -> dict:
    """Collect every run's evaluation and write results.json / results.md / results.png to `out_dir`."""
    out_dir = Path(out_dir)
    rows = {"base": {key: mean_ci([value]) for key, value in read_eval(out_dir / "base" / "eval").items()}}
    for arm in arms:
        for reward in rewards:
            per_seed = [read_eval(out_dir / f"{arm}-{reward}" / f"seed{s}" / "eval") for s in seeds]
            rows[f"{arm}-{reward}"] = {key: mean_ci([r[key] for r in per_seed]) for key, _, _ in HEADLINE}
    results = {"seeds": seeds, "metrics": {k: label for k, label, _ in HEADLINE}, "rows": rows}
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    (out_dir / "results.md").write_text(results_table(results) + "\n")
    plot_results(results, out_dir / "results.png")
    return results


def _cell(stat: dict) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean']:.3f}" + (f" ± {stat['ci95']:.3f}" if stat["ci95"] is not None else "")


def results_table(results: dict) -> str:
    """Markdown table: one row per arm-reward (and the base), one column per headline metric."""
    keys = [k for k, _, _ in HEADLINE]
    lines = [f"Mean ± 95% CI over seeds {results['seeds']} (base: one model, no interval).", "",
             "| run | " + " | ".join(results["metrics"][k] for k in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for name, row in results["rows"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(row[k]) for k in keys) + " |")
    return "\n".join(lines)


def plot_results(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["rows"])
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4 * len(PLOTTED), 4.5), constrained_layout=True)
    colours = ["#888888"] + [f"C{i}" for i in range(len(names) - 1)]
    for ax, key in zip(axes, PLOTTED):
        stats = [results["rows"][n][key] for n in names]
        means = [s["mean"] if s["mean"] is not None else math.nan for s in stats]
        errors = [s["ci95"] or 0.0 for s in stats]
        ax.bar(range(len(names)), means, yerr=errors, color=colours, capsize=3)
        if key == "probe_auroc":  # the control the probe must beat
            text = [results["rows"][n]["text_auroc"]["mean"] for n in names]
            ax.scatter(range(len(names)), [t if t is not None else math.nan for t in text], marker="_", s=300,
                       color="black", label="text-only baseline", zorder=3)
            ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
            ax.legend(fontsize=8, loc="lower right")
        ax.set_title(results["metrics"][key], fontsize=10)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""Aggregate an ablation's evaluations: every headline metric per arm, mean and 95% CI over seeds.

    rlkit aggregate --out runs/tiny      # also run at the end of `rlkit ablate`

Reads `<arm>-<reward>/seed<k>/eval/` and `base/eval/`, writes `results.json`, `results.md` and
`results.png` (one panel per metric, arms side by side, error bars = 95% t-interval over seeds), and the abstention
rate per damage (`results_by_damage.png`, a second table): where a run abstains tells grounded abstention (on the
damages the model can see) from abstaining on the question text (everywhere, clean images included).
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


def read_damages(eval_dir: Path) -> dict[str, float | None]:
    """Abstention per damage: on clean images (`normal`: over-abstention) and on each damage's unanswerable rows."""
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    out = {"normal": _dig(metrics, ("by_condition", "normal", "over_abstention"))}
    for name in metrics.get("by_corruption", {}):
        out[f"corrupted/{name}"] = _dig(metrics, ("by_corruption", name, "abstention_unanswerable"))
    for condition in metrics.get("by_condition", {}):
        if condition not in ("normal", "corrupted"):
            out[condition] = _dig(metrics, ("by_condition", condition, "abstention_unanswerable"))
    return out


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
    runs = {"base": [out_dir / "base" / "eval"]}
    runs |= {f"{a}-{r}": [out_dir / f"{a}-{r}" / f"seed{s}" / "eval" for s in seeds] for a in arms for r in rewards}
    rows, damages = {}, {}
    for name, eval_dirs in runs.items():
        per_seed = [read_eval(d) for d in eval_dirs]
        rows[name] = {key: mean_ci([r[key] for r in per_seed]) for key, _, _ in HEADLINE}
        per_seed = [read_damages(d) for d in eval_dirs]
        keys = dict.fromkeys(k for r in per_seed for k in r)
        damages[name] = {k: mean_ci([r.get(k) for r in per_seed]) for k in keys}
    # a damage never unanswerable (noise, hints: always answerable) has no abstention rate to show
    shown = [k for k in dict.fromkeys(k for row in damages.values() for k in row)
             if any(row.get(k, {}).get("mean") is not None for row in damages.values())]
    results = {"seeds": seeds, "metrics": {k: label for k, label, _ in HEADLINE}, "rows": rows,
               "abstention_by_damage": {name: {k: row[k] for k in shown if k in row} for name, row in damages.items()}}
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    (out_dir / "results.md").write_text(results_table(results) + "\n\n" + damage_table(results) + "\n")
    plot_results(results, out_dir / "results.png")
    plot_damages(results, out_dir / "results_by_damage.png")
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


def damage_table(results: dict) -> str:
    """Markdown table: abstention rate per damage (columns) per run (rows), `normal` being clean images."""
    by_damage = results["abstention_by_damage"]
    columns = list(dict.fromkeys(k for row in by_damage.values() for k in row))
    lines = ["Abstention rate per damage: on clean images (`normal`, over-abstention) and on each damage's "
             f"unanswerable rows. Mean ± 95% CI over seeds {results['seeds']}.", "",
             "| run | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, row in by_damage.items():
        lines.append(f"| {name} | " + " | ".join(_cell(row[k]) if k in row else "n/a" for k in columns) + " |")
    return "\n".join(lines)


def plot_damages(results: dict, path: Path) -> Path:
    """Heat map of the abstention rate per run (rows) and damage (columns), each cell annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_damage = results["abstention_by_damage"]
    names, columns = list(by_damage), list(dict.fromkeys(k for row in by_damage.values() for k in row))
    grid = [[(row.get(k) or {}).get("mean") for k in columns] for row in by_damage.values()]
    values = [[math.nan if v is None else v for v in line] for line in grid]
    fig, ax = plt.subplots(figsize=(1.1 * len(columns) + 3, 0.45 * len(names) + 1.6), constrained_layout=True)
    image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i, line in enumerate(grid):
        for j, v in enumerate(line):
            ax.text(j, i, "n/a" if v is None else f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if v is not None and v > 0.6 else "white")
    ax.set_xticks(range(len(columns)), columns, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_title(f"Abstention rate per damage (mean over seeds {results['seeds']}; normal = clean images)", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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

"""`make demo`: the main job on the embedded default, offline on 2 CPU cores.

Runs `recipes/tiny/ablation.yaml` (tiny Qwen2.5-VL-architecture model, synthetic scenes: data, SFT warm start,
3 arms x 2 rewards x 3 seeds of GRPO, evaluation with probes), prints the results table, then reads the
headline effects off the results it just produced. A second run reuses everything already finished.
"""

from __future__ import annotations

import argparse

RECIPE = "recipes/tiny/ablation.yaml"


def _pct(stat: dict) -> str:
    return "n/a" if stat["mean"] is None else f"{100 * stat['mean']:.1f}%"


def headline(results: dict) -> list[str]:
    """Plain-language findings computed from `results.json` (never fixed text)."""
    rows = results["rows"]
    base, lines = rows["base"], []
    lines.append(f"base (SFT) model: abstains on {_pct(base['abstention_unanswerable'])} of evidence-destroyed "
                 f"items, clean accuracy {_pct(base['clean_accuracy'])}")
    for name in ("mixed-groundedness", "hallucination-accuracy", "standard-accuracy"):
        if name not in rows:
            continue
        row = rows[name]
        delta = None
        if row["clean_accuracy"]["mean"] is not None and base["clean_accuracy"]["mean"] is not None:
            delta = 100 * (row["clean_accuracy"]["mean"] - base["clean_accuracy"]["mean"])
        lines.append(f"{name}: abstains on {_pct(row['abstention_unanswerable'])} of them, mirage rate "
                     f"{_pct(row['mirage_rate'])}, clean accuracy {_pct(row['clean_accuracy'])}"
                     + ("" if delta is None else f" ({delta:+.1f} points vs base)"))
    probe, text = base["probe_auroc"]["mean"], base["text_auroc"]["mean"]
    if probe is not None and text is not None:
        lines.append(f"mirage probe on the base model: AUROC {probe:.3f} vs text-only baseline {text:.3f}")
    probe, text = (base.get(f"{k}_auroc_within_question", {}).get("mean") for k in ("probe", "text"))
    if probe is not None and text is not None:
        lines.append(f"  within question (pairs of rows sharing a source_id): probe {probe:.3f} vs text {text:.3f}")
    return lines


def main(args: argparse.Namespace) -> int:
    from rlkit.ablation import Ablation, load_ablation
    from rlkit.aggregate import damage_table, results_table

    config = load_ablation(RECIPE)
    if args.cache != ".cache":
        config.out_dir = f"{args.cache}/runs/tiny"
    results = Ablation(config).run()
    print()
    print(results_table(results))
    print()
    print(damage_table(results))
    print()
    for line in headline(results):
        print("  " + line)
    print(f"\nwall time {results['wall_time_s'] / 60:.1f} min. Table: {config.out_dir}/results.md, "
          f"plots: {config.out_dir}/results.png and results_by_damage.png, "
          f"per-run reports: {config.out_dir}/<arm>-<reward>/seed<k>/eval/report.md")
    return 0

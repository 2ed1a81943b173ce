"""The `rlkit` command: one entry point for every stage.

    rlkit make-tiny-model --family qwen2_5_vl --out .cache/tiny-qwen2_5_vl
    rlkit build-data --config recipes/tiny/data.yaml --out .cache/data/tiny
    rlkit demo

Training runs under `accelerate launch -m rlkit.train.grpo --config RECIPE` (see README). Each subcommand
imports its heavy dependencies only when it runs, so `rlkit --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _make_tiny_model(args: argparse.Namespace) -> int:
    from rlkit.models.tiny import make_tiny_model

    summary = make_tiny_model(args.family, args.out, size=args.size, seed=args.seed, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    return 0


def _build_data(argv: list[str]) -> int:
    from data_builders.__main__ import main as data_main

    return data_main(["build", *argv])


def _evaluate(args: argparse.Namespace) -> int:
    from rlkit.eval.evaluate import EvalSettings, evaluate

    settings = EvalSettings(split=args.split, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                            consistency_samples=args.consistency_samples, probes=not args.no_probes,
                            limit=args.limit, seed=args.seed, attention_entropy=args.attention_entropy)
    result = evaluate(args.model, args.data, args.out, settings, overwrite=args.overwrite,
                      trust_remote_code=args.trust_remote_code)
    overall = result["overall"]
    for key in ("accuracy_answerable", "abstention_unanswerable", "mirage_rate", "image_reliance_gap"):
        value = overall.get(key, {}).get("value")
        print(f"{key:<26} {'n/a' if value is None else f'{value:.3f}'}")
    print(f"wrote {args.out}/report.md")
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from rlkit.ablation import main as ablate

    results = ablate(args.recipe, overwrite=args.overwrite)
    from rlkit.aggregate import damage_table, results_table

    print(results_table(results))
    print()
    print(damage_table(results))
    print(f"\nwall time {results['wall_time_s'] / 60:.1f} min; results.md, results.json, results.png and "
          f"results_by_damage.png are in {results['out_dir']}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from rlkit.publish import main as publish_main

    return publish_main(args)


def _demo(args: argparse.Namespace) -> int:
    from rlkit.demo import main as demo_main

    return demo_main(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # build-data forwards its arguments untouched to data_builders' own parser (one source of truth).
    if argv[:1] == ["build-data"]:
        return _build_data(argv[1:])

    parser = argparse.ArgumentParser(prog="rlkit", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-tiny-model", help="build an offline tiny VLM checkpoint folder")
    p.add_argument("--family", required=True, choices=("qwen2_5_vl", "qwen2_vl", "llava"))
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--size", default="S", choices=("S", "M"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_make_tiny_model)

    sub.add_parser("build-data", help="build a dataset from a data config (see `rlkit build-data --help`)")

    p = sub.add_parser("evaluate", help="behaviour per condition, probes, self-consistency and a report")
    p.add_argument("--model", required=True, help="checkpoint folder (full or LoRA adapter) or hub id")
    p.add_argument("--data", required=True, help="dataset folder built by `rlkit build-data`")
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--split", default="eval")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--consistency-samples", type=int, default=5, help="K sampled answers per row; 0 skips")
    p.add_argument("--no-probes", action="store_true", help="skip the hidden-state probes")
    p.add_argument("--attention-entropy", action="store_true",
                   help="also measure spatial attention entropy over image tokens per layer (eager attention)")
    p.add_argument("--limit", type=int, default=None, help="only the first N source questions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trust-remote-code", action="store_true", help="run model code from the checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("ablate", help="arms x rewards x seeds: build data, SFT, GRPO, evaluate, aggregate")
    p.add_argument("--recipe", required=True, help="ablation YAML (e.g. recipes/tiny/ablation.yaml)")
    p.add_argument("--overwrite", action="store_true", help="rerun stages whose recipe changed")
    p.set_defaults(func=_ablate)

    p = sub.add_parser("publish", help="a hub-ready folder (model, card, eval, probe) from a run; --push uploads it")
    p.add_argument("--run", required=True, help="finished run folder (run.json, model/, eval/)")
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--merge", action="store_true", help="merge a LoRA adapter into its base (adapter kept in adapter/)")
    p.add_argument("--repo-id", default=None, help="hub repo (user/name): named in the card; where --push uploads")
    p.add_argument("--push", action="store_true", help="upload --out to --repo-id (token: HF_TOKEN or `hf auth login`)")
    p.add_argument("--private", action="store_true", help="create the hub repo as private")
    p.add_argument("--license", default="apache-2.0", help="license id in the card metadata")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_publish)

    p = sub.add_parser("demo", help="the main job on the embedded tiny model (what `make demo` runs)")
    p.add_argument("--cache", default=".cache", help="where tiny models, data and runs are cached")
    p.set_defaults(func=_demo)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""Command line of data_builders (``rlkit build-data`` forwards here).

    python -m data_builders build --config recipes/tiny/data.yaml --out data/tiny \
        [--overwrite] [--shard i/n] [--num-proc N]
    python -m data_builders merge --out data/full data/part0 data/part1
    python -m data_builders validate data/tiny
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_builders",
                                     description="Build labelled normal / corrupted / mismatched / "
                                                 "text-interference image-QA data (docs/data.md).")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="config -> dataset folder (train / eval) + manifest.json")
    build.add_argument("--config", default=None,
                       help="data config YAML (default: the embedded tiny recipe, recipes/tiny/data.yaml)")
    build.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    build.add_argument("--shard", default=None, help="i/n: build only the i-th of n blocks (merge them later)")
    build.add_argument("--num-proc", type=int, default=None, help="processes building rows, this one too (default 1)")
    merge = sub.add_parser("merge", help="merge shard folders into one dataset")
    merge.add_argument("--out", required=True)
    merge.add_argument("--overwrite", action="store_true")
    merge.add_argument("shards", nargs="+", help="the shard folders (any order)")
    check = sub.add_parser("validate", help="check a built folder against the data contract")
    check.add_argument("path")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 a clear error was printed to stderr)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "build":
            from data_builders.build import build

            manifest = build(args.config, args.out, overwrite=args.overwrite, shard=args.shard,
                             num_proc=args.num_proc)
        elif args.command == "merge":
            from data_builders.merge import merge

            manifest = merge(args.shards, args.out, overwrite=args.overwrite)
        else:
            from data_builders.contract import SPLITS, load_built

            sizes = {split: len(load_built(args.path, split)) for split in SPLITS}
            print(f"{args.path}: valid ({', '.join(f'{k} {v} rows' for k, v in sizes.items())})")
            return 0
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    counts = {split: manifest["counts"][split]["rows"] for split in ("train", "eval")}
    print(json.dumps({"out": args.out, "rows": counts, "skipped": manifest["skipped"]["count"],
                      "fingerprint": manifest["fingerprint"], "seconds": manifest["build_seconds"]}))
    return 0

"""Benchmark data_builders: rows/s per damage and for a full build, against the decode + encode floor.

    .venv/bin/python benchmarks/bench_data_builders.py                      # tiny recipe, prints a table
    .venv/bin/python benchmarks/bench_data_builders.py --write-docs         # also updates docs/benchmarks.md
    .venv/bin/python benchmarks/bench_data_builders.py --image-sizes 224    # synthetic scenes at 224 px only
    .venv/bin/python benchmarks/bench_data_builders.py --disk-images 0      # no on-disk source

Two sources, the same conditions (the config's): synthetic scenes at each ``--image-sizes``, and an on-disk JSONL
of ``--disk-images`` photo-sized JPEGs (``photo_dataset``: what a COCO-style VQA dataset costs to read).

The floor of a set of rows is the time to just decode their stored PNGs (PIL) and encode them again with the
build's PNG encoder (``images.encode_png``): the least any build of those images must spend. Per damage, the
build time is making the damaged row (corrupt + label + params) and encoding it; the full build is
``build()`` end to end (scene generation, all rows, writing the save_to_disk layout, reload + validation,
manifest), run at num_proc 1 and 2, against the floor over all its rows at the same number of processes.
After one untimed warm-up, each of ``--repeats`` rounds times the build and then the floor on the same rows: the
rates are the best rounds, build / floor is the median of the rounds' ratios (the machine may be shared; a
round's two runs see the same load). CPU time of other processes is not controlled.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image

from benchmarks.docs_section import write_section
from data_builders.build import build, load_config, shared_map
from data_builders.images import encode_png
from data_builders.pairs import Planner, SourceRows, damages, single_threaded_blas
from data_builders.sources import NotApplicable, open_source

SECTION = "## Data builders"
READING = (
    "How to read it: the floor is decoding each stored PNG and encoding it again with the build's encoder, the "
    'least any build of those images must spend. It leaves out the work the build exists for (drawing the scene, '
    'corrupting it, computing the exact label, the row and its digest), so rows whose damage is cheap (a flat '
    'blank image; a hint, whose image the normal row already encoded) reach or pass it, while rows whose '
    'corruption alone costs about a PNG round trip or more (Gaussian blur, JPEG thumbnail, noise, which is also '
    'incompressible) cannot. At 64 px a PNG round trip takes ~0.2 ms, so the Python work per row (scene, label, '
    "params, digest, Arrow, validation) is most of a full build's ~0.5 ms a row and 64 px builds stay near 40% of "
    "the floor; at 224 px the pixel work weighs more (PIL's Gaussian blur alone takes ~3 ms a 224 px image, more "
    'than a PNG round trip) and full builds reach about 60%. On the on-disk source with photo-sized images '
    '(640x480) the pixel work (decoding a JPEG, the corruption, encoding a PNG) dwarfs the per-row Python, and a '
    'full build runs at or above the floor: it decodes a JPEG where the floor decodes a PNG, and its '
    'text-interference rows reuse an image already encoded. Each round times a build and then the floor on the '
    "same rows, and build / floor is the median of the rounds' ratios: this machine's speed drifts by tens of "
    'percent within minutes, so rates from different rounds do not compare. num_proc=2 is this process and one '
    'spawned worker, on 2 cores shared with other jobs; the worker takes ~1 s to start (imports, pandas among '
    'them, which pyarrow loads on its first array) while this process already builds, so builds of a few '
    'thousand rows gain nothing from it. The floor at num_proc=2 runs the same way (`build.shared_map`).'
)


def floor_seconds(blobs: list[bytes]) -> float:
    start = time.perf_counter()
    for blob in blobs:
        with Image.open(io.BytesIO(blob)) as image:
            image.load()
            encode_png(image.convert("RGB") if image.mode != "RGB" else image)
    return time.perf_counter() - start


def _floor_chunk(blobs: list[bytes]) -> int:
    floor_seconds(blobs)
    return len(blobs)


def floor_rate(blobs: list[bytes], num_proc: int) -> float:
    """Rows/s of decode + encode over ``blobs`` with ``num_proc`` spawned processes (start-up included)."""
    if not blobs:
        return 0.0
    if num_proc <= 1:
        return len(blobs) / floor_seconds(blobs)
    start = time.perf_counter()
    size = max(1, len(blobs) // (num_proc * 8))
    with multiprocessing.get_context("spawn").Pool(num_proc - 1) as pool:  # + this process, as build() runs
        chunks = [blobs[i:i + size] for i in range(0, len(blobs), size)]
        done = sum(shared_map(pool, _floor_chunk, chunks, ahead=2 * (num_proc - 1)))
    return done / (time.perf_counter() - start)


def paired(run: Callable[[], tuple[Any, ...]], floor: Callable[[], float],
           repeats: int) -> tuple[float, float, float]:
    """(best build rows/s, best floor rows/s, median of the per-round build / floor ratios).

    Each round times ``run`` (rows, seconds, ...) and then ``floor`` (rows/s) on the same rows, so both see the same
    machine load; the median of the rounds' ratios is robust to a shared machine speeding up or slowing down.
    """
    builds, floors = [], []
    for _ in range(repeats):
        rows, seconds = run()[:2]
        builds.append(rows / seconds if rows else 0.0)
        floors.append(floor())
    ratios = [b / f for b, f in zip(builds, floors) if f]
    return max(builds), max(floors), statistics.median(ratios) if ratios else 0.0


def per_damage(cfg, sources: int, repeats: int) -> list[tuple[str, int, float, float, float]]:
    """(damage, rows, build rows/s, floor rows/s, build / floor) for the normal rows and each damage."""
    source = open_source(cfg)
    planner = Planner(cfg, source)
    items = [source.item("eval", i) for i in range(sources)]

    def normal() -> tuple[int, float, list[bytes]]:
        out = SourceRows()
        start = time.perf_counter()
        for i in range(sources):
            item = source.item("eval", i)
            planner._add(out, planner._row(item, item.image, item.question, "normal", "", 0.0, True, "", [], {}))
        seconds = time.perf_counter() - start
        return len(out.rows), seconds, [r["image"]["bytes"] for r in out.rows]

    def damaged(damage) -> tuple[int, float, list[bytes]]:
        out = SourceRows()
        start = time.perf_counter()
        for item in items:
            with contextlib.suppress(NotApplicable):
                planner._add(out, planner.damaged(item, damage, []))
        seconds = time.perf_counter() - start
        return len(out.rows), seconds, [r["image"]["bytes"] for r in out.rows]

    results = []
    making = "scene + render" if cfg.source == "synthetic" else "read + decode"
    for label, make in [(f"normal ({making})", normal)] + [(d.label, lambda d=d: damaged(d)) for d in damages(cfg)]:
        blobs = make()[2]  # warm-up (caches, first imports); its images are the floor's
        build, floor, ratio = paired(make, lambda blobs=blobs: floor_rate(blobs, 1), repeats)
        results.append((label, len(blobs), build, floor, ratio))
    return results


def full_build(cfg, num_proc: int, repeats: int) -> tuple[int, float, float, float]:
    """(rows, build rows/s, floor rows/s, build / floor) of a whole build at ``num_proc``."""
    import datasets

    with tempfile.TemporaryDirectory() as tmp:
        build(cfg, os.path.join(tmp, "data"), num_proc=num_proc)  # warm-up; its images are the floor's
        built = datasets.load_from_disk(os.path.join(tmp, "data"))
        blobs = [img["bytes"] for split in ("train", "eval")
                 for img in built[split].cast_column("image", datasets.Image(decode=False))["image"]]

    def run() -> tuple[int, float]:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            manifest = build(cfg, os.path.join(tmp, "data"), num_proc=num_proc)
            seconds = time.perf_counter() - start
        return manifest["counts"]["train"]["rows"] + manifest["counts"]["eval"]["rows"], seconds

    return (len(blobs), *paired(run, lambda: floor_rate(blobs, num_proc), repeats))


PHOTO_COLORS = ("red", "green", "blue", "yellow", "white", "black")


def photo_dataset(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> Path:
    """``count`` photo-sized JPEGs (quality 90) and a JSONL of colour questions: a stand-in for COCO-style VQA data.

    Each image is a smooth random field (a 1/16-scale random image upscaled bicubically) plus fine noise, so it
    compresses roughly like a photo (PNG at level 1 ~0.7x the raw pixels, JPEG ~0.1x): the encode cost depends on it.
    """
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    width, height = size
    lines = []
    for i in range(count):
        coarse = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC), np.int16)
        pixels = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.jpg", quality=90)
        answer = PHOTO_COLORS[int(rng.integers(len(PHOTO_COLORS)))]
        lines.append(json.dumps({"img": f"img{i}.jpg", "q": "What color is the big car?", "a": answer}))
    (folder / "data.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "data.jsonl"


def disk_config(base: str, jsonl: Path, count: int):
    """The recipe's conditions on an on-disk source: a tenth of the rows for eval, the rest for train."""
    disk = {"path": str(jsonl), "columns": {"image": "img", "question": "q", "answer": "a"}}
    return load_config({**load_config(base).to_dict(), "source": "disk", "disk": disk,
                        "eval_sources": max(1, count // 10), "train_sources": None})


def measure(cfg, sources: int, repeats: int) -> tuple[list, dict[str, dict[int, tuple[int, float, float, float]]]]:
    """The per-damage rows and the full builds at num_proc 1 and 2 of one config."""
    with single_threaded_blas():  # as build() does
        damage_rows = per_damage(cfg, sources, repeats)
    return damage_rows, {"full build": {n: full_build(cfg, n, repeats) for n in (1, 2)}}


def table(header: str, damage_rows, builds: dict[str, dict[int, tuple[int, float, float, float]]]) -> str:
    lines = [header, "", "| scope | what | rows | build rows/s | floor rows/s | build / floor |",
             "|---|---|---:|---:|---:|---:|"]
    for label, rows, rate, floor, ratio in damage_rows:
        lines.append(f"| per damage | {label} | {rows} | {rate:,.0f} | {floor:,.0f} | {ratio:.0%} |")
    for scope, results in builds.items():
        for num_proc, (rows, rate, floor, ratio) in results.items():
            lines.append(f"| {scope} | num_proc={num_proc} | {rows} | {rate:,.0f} | {floor:,.0f} | {ratio:.0%} |")
    return "\n".join(lines)


def write_docs(text: str, command: str) -> None:
    """Replace (or append) only this benchmark's section of docs/benchmarks.md."""
    write_section(SECTION, text, command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="recipes/tiny/data.yaml")
    parser.add_argument("--image-sizes", type=int, nargs="+", default=[64, 224], help="synthetic.image_size values")
    parser.add_argument("--sources", type=int, default=100, help="eval source questions for the per-damage rows")
    parser.add_argument("--scale", type=int, default=4, help="also build with N x the sources (num_proc scaling)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--disk-images", type=int, default=200,
                        help="also build an on-disk source of this many photo-sized JPEGs (0: skip)")
    parser.add_argument("--disk-size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    parser.add_argument("--write-docs", action="store_true", help="update the section in docs/benchmarks.md")
    args = parser.parse_args(argv)
    intro = (f"Conditions of `{args.config}` (the tiny recipe) on its synthetic scenes and on an on-disk source; "
             f"{platform.machine()}, {os.cpu_count()} CPUs shared with other jobs, Python {platform.python_version()}, "
             f"Pillow {Image.__version__}.")
    texts = [intro, READING]
    for size in args.image_sizes:
        cfg = load_config(args.config)
        cfg.synthetic.image_size = size
        damage_rows, builds = measure(cfg, min(args.sources, cfg.eval_sources), args.repeats)
        rounds = f"{args.repeats} rounds"
        if args.scale > 1:
            big = load_config(args.config)
            big.synthetic.image_size = size
            big.train_sources, big.eval_sources = cfg.train_sources * args.scale, cfg.eval_sources * args.scale
            big_rounds = max(1, args.repeats - 1)
            builds[f"full build, {args.scale}x sources"] = {n: full_build(big, n, big_rounds) for n in (1, 2)}
            rounds += f", {big_rounds} for the {args.scale}x build"
        header = (f"**{size} px images** (per damage: {damage_rows[0][1]} eval source questions; full build: "
                  f"train_sources={cfg.train_sources}, eval_sources={cfg.eval_sources}; {rounds})")
        texts.append(table(header, damage_rows, builds))
        print(texts[-1], flush=True)
    if args.disk_images:
        with tempfile.TemporaryDirectory() as tmp:
            width, height = args.disk_size
            cfg = disk_config(args.config, photo_dataset(Path(tmp) / "photos", args.disk_images, (width, height)),
                              args.disk_images)
            damage_rows, builds = measure(cfg, cfg.eval_sources, args.repeats)
        header = (f"**On-disk source, {width}x{height} JPEGs** (`source: disk`, {args.disk_images} photo-like images "
                  f"from `photo_dataset`; per damage: {damage_rows[0][1]} eval source questions; full build: "
                  f"eval_sources={cfg.eval_sources}, the rest train; {args.repeats} rounds)")
        texts.append(table(header, damage_rows, builds))
        print(texts[-1], flush=True)
    if args.write_docs:
        command = "python benchmarks/bench_data_builders.py " + " ".join(argv or sys.argv[1:])
        write_docs("\n\n".join(texts), command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())

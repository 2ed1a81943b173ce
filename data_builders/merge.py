"""Merge the shards of one build (``build --shard i/n`` on n machines) into the whole dataset.

    python -m data_builders merge --out data/full data/part0 data/part1 data/part2 data/part3

Checks that the shards come from the same config and cover 0..n-1 exactly once, concatenates each split in
shard order (which is the order of a whole build), sums the counts, and recomputes the fingerprint from the
rows; it equals the fingerprint of the same build made in one go.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from data_builders.build import publish, quiet_save
from data_builders.contract import MANIFEST_NAME, SPLITS, validate
from data_builders.manifest import MAX_LISTED_SKIPS, fingerprint_dir, versions, write


def _read_manifest(folder: str) -> dict[str, Any]:
    path = os.path.join(folder, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder!r} has no {MANIFEST_NAME}: not a folder written by data_builders build")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _add_counts(total: Any, part: Any) -> Any:
    if isinstance(part, dict):
        total = dict(total or {})
        for key, value in part.items():
            total[key] = _add_counts(total.get(key), value)
        return total
    return (total or 0) + part


def merge(shard_dirs: list[str], out: str | os.PathLike, overwrite: bool = False) -> dict[str, Any]:
    """Merge shard folders into ``out``; return the merged manifest."""
    import datasets

    started = time.perf_counter()
    if not shard_dirs:
        raise ValueError("merge needs the shard folders to merge")
    given = [(d, _read_manifest(d)) for d in shard_dirs]
    first = given[0][1]
    for folder, manifest in given:
        if manifest.get("shard") is None:
            raise ValueError(f"{folder!r} is a whole build, not a shard (its manifest has shard: null)")
        if manifest["config"] != first["config"]:
            raise ValueError(f"{folder!r} was built from another config than {shard_dirs[0]!r}; merge shards of "
                             "one build only")
    n = first["shard"][1]
    by_index: dict[int, str] = {}
    for folder, manifest in given:
        i, count = manifest["shard"]
        if count != n:
            raise ValueError(f"{folder!r} is shard {i}/{count} but {shard_dirs[0]!r} is one of {n}")
        if i in by_index:
            raise ValueError(f"shard {i}/{n} given twice: {by_index[i]!r} and {folder!r}")
        by_index[i] = folder
    missing = sorted(set(range(n)) - set(by_index))
    if missing:
        raise ValueError(f"shards {missing} of {n} are missing; build them with --shard i/{n}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"output {str(out)!r} already exists; pass --overwrite to replace it")
    ordered = [by_index[i] for i in range(n)]
    manifests = dict(given)
    loaded = [datasets.load_from_disk(d) for d in ordered]
    merged = datasets.DatasetDict({s: datasets.concatenate_datasets([part[s] for part in loaded]) for s in SPLITS})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        quiet_save(merged, tmp / "final")
        validate(datasets.load_from_disk(str(tmp / "final")), str(tmp / "final"))
        whole, per_split = fingerprint_dir(str(tmp / "final"))
        counts: dict[str, Any] = {}
        skipped = {"count": 0, "by_reason": {}, "rows": [], "listed": 0}
        for folder in ordered:
            counts = _add_counts(counts, manifests[folder]["counts"])
            part = manifests[folder]["skipped"]
            skipped["count"] += part["count"]
            skipped["by_reason"] = _add_counts(skipped["by_reason"], part["by_reason"])
            skipped["rows"] = (skipped["rows"] + part["rows"])[:MAX_LISTED_SKIPS]
        skipped["listed"] = len(skipped["rows"])
        manifest = {**first, "fingerprint": whole, "fingerprints": per_split, "shard": None,
                    "merged_from": ordered, "counts": counts, "skipped": skipped, "versions": versions(),
                    "build_seconds": round(time.perf_counter() - started, 3)}
        write(str(tmp / "final" / MANIFEST_NAME), manifest)
        publish(tmp / "final", out, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest

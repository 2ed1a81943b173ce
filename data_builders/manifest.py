"""``manifest.json``: config, seed, counts, skipped rows, library versions and a content fingerprint.

The fingerprint is sha256 over, for split in (train, eval), the split name and the digests of its rows in order
(``pairs.row_digest``: every column, the image as decoded pixels). Same config + seed -> same fingerprint, for
any ``num_proc``; the shards of a build, merged in order, have the fingerprint of the whole build.
Recompute it from a folder: ``fingerprint_dir(path)``.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections import Counter
from importlib import metadata
from typing import Any

FORMAT_VERSION = 1  # bump when the row layout or a labelling rule changes meaning
MAX_LISTED_SKIPS = 1000


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("datasets", "pyarrow", "numpy", "pillow", "pyyaml"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "absent"
    return out


class Tally:
    """Counts of one split as rows stream in."""

    def __init__(self) -> None:
        self.rows = 0
        self.sources = 0
        self.counters: dict[str, Counter[str]] = {k: Counter() for k in
                                                  ("condition", "corruption", "target", "task", "arm",
                                                   "condition_target")}
        self.not_applicable: Counter[str] = Counter()
        self.skipped: list[dict[str, Any]] = []
        self.digest = hashlib.sha256()

    def add(self, chunk: Any) -> None:
        """Count one ``pairs.Chunk`` (rows must arrive in build order: the digest depends on it)."""
        self.sources += chunk.built
        self.rows += len(chunk.summaries)
        for condition, label, target, task, arms in chunk.summaries:
            self.counters["condition"][condition] += 1
            self.counters["corruption"][label] += 1
            self.counters["target"][target] += 1
            self.counters["task"][task] += 1
            self.counters["condition_target"][f"{condition}/{target}"] += 1
            for arm in arms:
                self.counters["arm"][arm] += 1
        for digest in chunk.digests:
            self.digest.update(digest)
        for label, reason in chunk.not_applicable:
            self.not_applicable[f"{label}: {reason}"] += 1
        self.skipped.extend(chunk.skipped)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.rows, "sources": self.sources}
        for key, counter in self.counters.items():
            out[f"by_{key}"] = dict(sorted(counter.items()))
        out["not_applicable"] = dict(sorted(self.not_applicable.items()))
        return out


def skipped_section(tallies: dict[str, Tally]) -> dict[str, Any]:
    records = [dict(r, split=split) for split, t in tallies.items() for r in t.skipped]
    reasons = Counter(f"{r['field']}: {r['reason'].split(' (')[0]}" for r in records)
    return {"count": len(records), "by_reason": dict(sorted(reasons.items())),
            "rows": records[:MAX_LISTED_SKIPS], "listed": min(len(records), MAX_LISTED_SKIPS)}


def fingerprint(split_digests: dict[str, bytes]) -> str:
    """Combine per-split digests (sha256 state over row digests) into the build's fingerprint."""
    h = hashlib.sha256()
    for split in sorted(split_digests, key=("train", "eval").index):
        h.update(split.encode())
        h.update(split_digests[split])
    return h.hexdigest()


def fingerprint_dir(path: str) -> tuple[str, dict[str, str]]:
    """Recompute the fingerprint of a built folder from its rows (decodes every image)."""
    import datasets

    from data_builders.images import pixel_digest
    from data_builders.pairs import row_digest

    built = datasets.load_from_disk(path)
    per_split = {}
    for split in ("train", "eval"):
        h = hashlib.sha256()
        for row in built[split]:
            image = row.pop("image")
            h.update(row_digest(row, pixel_digest(image.convert("RGB") if image.mode != "RGB" else image)))
        per_split[split] = h.digest()
    return fingerprint(per_split), {k: v.hex() for k, v in per_split.items()}


def write(path: str, manifest: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=False)
        handle.write("\n")

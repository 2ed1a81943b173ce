"""Config -> built dataset on disk (train / eval splits, Arrow, ``Image`` feature) + ``manifest.json``.

    python -m data_builders build --config recipes/tiny/data.yaml --out data/tiny
    python -m data_builders build --config my.yaml --out data/part0 --shard 0/4 --num-proc 2   # 1 of 4 machines
    python -m data_builders merge --out data/full data/part0 data/part1 data/part2 data/part3

    >>> from data_builders.build import build
    >>> manifest = build("recipes/tiny/data.yaml", "data/tiny", overwrite=True)    # doctest: +SKIP

The output appears atomically: everything is written to a hidden temporary folder beside ``out`` and renamed
into place at the end; an existing ``out`` is replaced only with ``overwrite``. A shard ``i/n`` builds the i-th
of n contiguous blocks of each split's source questions; the shards merged in order equal the whole build.

Rows are streamed straight into the folder layout ``DatasetDict.save_to_disk`` writes (``dataset_dict.json``;
per split ``data-XXXXX-of-YYYYY.arrow`` shards of at most ~500 MB, ``state.json``, ``dataset_info.json``), so the
images are written once; the folder is then loaded with ``datasets.load_from_disk`` and validated.
``datasets`` (through ``contract``) is imported inside the functions: spawned workers re-import the caller's
main module, and a script that imports this module should not cost every worker a second of imports.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from data_builders.config import DataConfig, load_config
from data_builders.manifest import (
    FORMAT_VERSION,
    Tally,
    fingerprint,
    skipped_section,
    versions,
    write,
)
from data_builders.pairs import (
    Chunk,
    Planner,
    init_worker,
    run_chunk,
    single_threaded_blas,
)
from data_builders.sources import open_source

__all__ = ["build", "load_config", "parse_shard", "shared_map"]
logger = logging.getLogger(__name__)
SPLITS = ("train", "eval")  # contract.SPLITS (not imported here: see the module docstring)
SHARD_BYTES = 500 * 10**6  # roll to a new Arrow file past this size, like save_to_disk's default max_shard_size
FLUSH_ROWS = 2048  # rows buffered per Arrow write

def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"`` or ``(i, n)`` -> ``(i, n)`` with 0 <= i < n; None stays None."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in (text.split("/") if isinstance(text, str) else text))
    except (ValueError, TypeError):
        raise ValueError(f"shard {text!r}: use i/n, e.g. 0/4 for the first of 4 shards") from None
    if not 0 <= i < n:
        raise ValueError(f"shard {text!r}: need 0 <= i < n")
    return i, n


def _block(count: int, shard: tuple[int, int] | None) -> range:
    if shard is None:
        return range(count)
    i, n = shard
    return range(i * count // n, (i + 1) * count // n)


def _chunks(planner: Planner, shard: tuple[int, int] | None, num_proc: int) -> list[tuple[str, int, int]]:
    chunks = []
    for split in SPLITS:
        block = _block(len(planner.source.ids(split)), shard)
        size = max(1, min(64, -(-len(block) // (num_proc * 8))))
        chunks += [(split, start, min(start + size, block.stop)) for start in range(block.start, block.stop, size)]
    return chunks


def _results(planner: Planner, chunks: list[tuple[str, int, int]], num_proc: int) -> Iterator[Chunk]:
    from data_builders.contract import FEATURES

    schema = FEATURES.arrow_schema
    init_worker(planner, schema, limit_blas=False)  # this process builds chunks too
    with single_threaded_blas():
        if num_proc <= 1:
            yield from map(run_chunk, chunks)
            return
        # spawn: safe even when the caller has threads (torch, tokenizers). The worker functions live in pairs.py,
        # whose imports stay light (no `datasets`); a worker still takes ~1 s to start, which this process spends
        # building chunks.
        with multiprocessing.get_context("spawn").Pool(num_proc - 1, init_worker, (planner, schema)) as pool:
            yield from shared_map(pool, run_chunk, chunks, ahead=2 * (num_proc - 1))


def shared_map(pool: Any, fn: Callable[[Any], Any], items: list[Any], ahead: int) -> Iterator[Any]:
    """``map(fn, items)`` run by the pool's workers and by this process, results in order.

    The workers always hold ``ahead`` items (each finished item hands them the next one, from the pool's result
    thread); whenever the next result is not in yet, this process runs the next item itself. So it works while
    spawned workers start (~1 s of imports each) instead of waiting, and n - 1 workers keep n processes busy.
    An exception (from either side) is raised when its item's turn comes, as ``map`` would.
    """
    if ahead < 1:
        raise ValueError(f"ahead must be >= 1, got {ahead}")
    turn = threading.Condition()
    results: dict[int, Any] = {}  # item index -> AsyncResult of a worker
    here: dict[int, tuple[Any, BaseException | None]] = {}  # item index -> (value, error) made in this process
    state = {"handed": 0, "open": True}  # items [0, handed) are taken; open: hand the workers more

    def take() -> int | None:
        with turn:
            if state["handed"] == len(items):
                return None
            state["handed"] += 1
            return state["handed"] - 1

    def feed(_: Any = None) -> None:
        with turn:
            if not state["open"] or (index := take()) is None:
                return
            results[index] = pool.apply_async(fn, (items[index],), callback=feed, error_callback=feed)
            turn.notify_all()

    try:
        for _ in range(ahead):
            feed()
        for index in range(len(items)):
            while index not in here:
                with turn:
                    entry = results.get(index)
                if entry is not None and entry.ready():
                    break
                mine = take() if len(here) < 4 * ahead else None  # bounded: a slow item can't make us hoard
                if mine is None:
                    with turn:
                        turn.wait_for(lambda index=index: index in results)
                    results[index].wait()
                    break
                try:
                    here[mine] = fn(items[mine]), None
                except Exception as exc:  # kept for its turn, not raised ahead of earlier items
                    here[mine] = None, exc
            if index in here:
                value, error = here.pop(index)
                if error is not None:
                    raise error
                yield value
            else:
                with turn:
                    entry = results.pop(index)
                yield entry.get()
    finally:
        with turn:
            state["open"] = False


def quiet_save(built: Any, path: Path) -> None:
    """``save_to_disk`` without its progress bars (ours is the one that matters; saving takes < 1 s)."""
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    # An empty split (a shard with no eval sources) needs an explicit shard, or it is saved unloadable.
    empty = {split: 1 for split, ds in built.items() if len(ds) == 0}
    try:
        built.save_to_disk(str(path), num_shards=empty or None)
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


class _SplitWriter:
    """Streams the rows of one split into ``folder`` as ``save_to_disk`` would lay it out.

    Rows are buffered and written as large Arrow record batches (per-row writes are slow); a new file starts
    past ``SHARD_BYTES``; ``close`` names the files ``data-XXXXX-of-YYYYY.arrow`` and writes ``state.json``
    and ``dataset_info.json``.
    """

    def __init__(self, folder: Path, batch_rows: int | None = None) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.batch_rows = batch_rows or FLUSH_ROWS
        self.tables: list[Any] = []
        self.pending = 0
        self.files: list[Path] = []
        self.writer: Any = None
        self.file_bytes = 0
        self._open()

    def _open(self) -> None:
        from datasets.arrow_writer import ArrowWriter

        from data_builders.contract import FEATURES

        self.files.append(self.folder / f"part-{len(self.files)}.arrow")
        self.writer = ArrowWriter(features=FEATURES, path=str(self.files[-1]))
        self.file_bytes = 0

    def add(self, table: Any) -> None:
        if table is not None:
            self.tables.append(table)
            self.pending += table.num_rows
        if self.pending >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if self.tables:
            import pyarrow as pa

            if self.file_bytes >= SHARD_BYTES:
                self.writer.finalize()
                self._open()
            table = pa.concat_tables(self.tables)
            self.writer.write_table(table)
            self.file_bytes += table.nbytes
            self.tables, self.pending = [], 0

    def close(self, fingerprint: str) -> None:
        """Finish the files; ``fingerprint`` (16 hex digits) becomes the split's ``datasets`` cache key."""
        import datasets

        self.flush()
        self.writer.finalize()
        names = [f"data-{i:05d}-of-{len(self.files):05d}.arrow" for i in range(len(self.files))]
        for path, name in zip(self.files, names):
            os.replace(path, self.folder / name)
        state = {"_data_files": [{"filename": name} for name in names], "_fingerprint": fingerprint,
                 "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
                 "_output_all_columns": False, "_split": None}
        _write_json(self.folder / datasets.config.DATASET_STATE_JSON_FILENAME, state, sort_keys=True)
        _write_json(self.folder / datasets.config.DATASET_INFO_FILENAME, _info_dict())


def _info_dict() -> dict[str, Any]:
    """``dataset_info.json`` as ``save_to_disk`` writes it (only the first level of keys sorted; ``asdict`` is the
    one ``save_to_disk`` uses, which leaves out fields at their default)."""
    import datasets
    from datasets.utils.py_utils import asdict

    from data_builders.contract import FEATURES

    info = asdict(datasets.DatasetInfo(features=FEATURES))
    return {key: info[key] for key in sorted(info)}


def _write_json(path: Path, value: Any, sort_keys: bool = False, indent: int | None = 2) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=indent, sort_keys=sort_keys)


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise FileExistsError(f"output {str(out)!r} already exists; pass --overwrite (overwrite=True) to replace "
                              "it, or choose another --out")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output {str(out)!r} exists and is not a folder; remove it or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)


def publish(final: Path, out: Path, tmp: Path) -> None:
    """Move the finished folder into place; an old output goes only after the new one is complete."""
    old = None
    if out.exists():
        old = tmp / "old"
        os.replace(out, old)
    try:
        os.replace(final, out)
    except OSError:
        if old is not None:
            os.replace(old, out)  # put the previous build back before tmp is removed
        raise


def build(config: str | os.PathLike | dict[str, Any] | DataConfig | None, out: str | os.PathLike,
          overwrite: bool = False, shard: tuple[int, int] | str | None = None,
          num_proc: int | None = None) -> dict[str, Any]:
    """Build the dataset the config describes into ``out``; return the manifest (also in ``out/manifest.json``).

    Args:
        config: a YAML path, a dict, a ``DataConfig``, or None for the embedded default (the tiny recipe).
        out: output folder; must not exist unless ``overwrite``.
        overwrite: replace an existing ``out`` (the new build is complete before the old one is removed).
        shard: ``(i, n)`` or ``"i/n"``: build only the i-th of n blocks of source questions.
        num_proc: processes that build rows, this one included (None or 1: this process alone; n: n - 1
            spawned workers besides it).
    """
    started = time.perf_counter()
    cfg = load_config(config)
    shard = parse_shard(shard)
    num_proc = max(1, int(num_proc or 1))
    out = Path(out)
    _prepare_out(out, overwrite)
    source = open_source(cfg)
    planner = Planner(cfg, source)
    chunks = _chunks(planner, shard, num_proc)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        manifest = _write(cfg, planner, chunks, num_proc, shard, tmp, started, config)
        publish(tmp / "final", out, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built %s: %s", out, {s: manifest["counts"][s]["rows"] for s in SPLITS})
    return manifest


def _write(cfg: DataConfig, planner: Planner, chunks: list[tuple[str, int, int]], num_proc: int,
           shard: tuple[int, int] | None, tmp: Path, started: float, config: Any) -> dict[str, Any]:
    import datasets
    from tqdm.auto import tqdm

    from data_builders.contract import MANIFEST_NAME, validate

    final = tmp / "final"
    tallies = {split: Tally() for split in SPLITS}
    writers = {split: _SplitWriter(final / split) for split in SPLITS}
    total = sum(stop - start for _, start, stop in chunks)
    with tqdm(total=total, unit="src", desc="build data", disable=None) as bar:
        for chunk in _results(planner, chunks, num_proc):
            writers[chunk.split].add(chunk.table)
            tallies[chunk.split].add(chunk)
            bar.update(chunk.sources)
    for split, tally in tallies.items():
        if tally.rows == 0 and shard is None:
            raise ValueError(f"the {split} split has no rows ({len(tally.skipped)} input rows skipped as bad); "
                             "see the errors above or set on_bad_row: error to stop at the first bad row")
    for split, writer in writers.items():
        writer.close(fingerprint=tallies[split].digest.hexdigest()[:16])
    _write_json(final / datasets.config.DATASETDICT_JSON_FILENAME, {"splits": list(SPLITS)}, indent=None)
    reloaded = datasets.load_from_disk(str(final))
    built, saved = {s: t.rows for s, t in tallies.items()}, {s: len(reloaded[s]) for s in SPLITS}
    if saved != built:  # never expected; a silent loss of rows would be worse than stopping
        raise RuntimeError(f"{final}: the saved splits hold {saved} rows but {built} were built")
    validate(reloaded, str(final))  # the contract holds for what training will read
    manifest = {
        "format_version": FORMAT_VERSION,
        "fingerprint": fingerprint({s: t.digest.digest() for s, t in tallies.items()}),
        "fingerprints": {s: t.digest.hexdigest() for s, t in tallies.items()},
        "seed": cfg.seed,
        "source": cfg.source,
        "shard": list(shard) if shard else None,
        "counts": {s: t.summary() for s, t in tallies.items()},
        "skipped": skipped_section(tallies),
        "config_path": os.fspath(config) if isinstance(config, (str, os.PathLike)) else None,
        "config": cfg.to_dict(),
        "versions": versions(),
        "num_proc": num_proc,
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    write(str(final / MANIFEST_NAME), manifest)
    return manifest

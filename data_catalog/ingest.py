"""Put an SF-XL-style dataset into the catalog.

    python -m data_catalog.ingest DATASET_DIR --db data/catalog.duckdb
    python -m data_catalog.ingest sf_xl/raw/train_images_paths.txt --db data/catalog.duckdb

DATASET_DIR is a dataset root (holding train/, val/database, val/queries, test/database,
test/queries_v1, test/queries_v2) or one of those folders; a `X_images_paths.txt` file lists
paths relative to folder X (the reference implementation's convention), one per line, so
nothing is walked. Paths are stored relative to the dataset root, so ingesting the root or
one of its folders gives the same rows.

Names are parsed in bulk inside DuckDB by the one parser of data_catalog.name_table (the
one training, evaluation and the app use): its pattern accepts only names that
`names.parse_name` accepts too, and the rare names it refuses go through `parse_name`
itself, which keeps or rejects them with its reason, so both ways agree by construction.
Lists are read by the same line reader too: absolute paths inside the listed folder are
made relative to it, those outside it are malformed names with that reason.

A sub-folder of a split (train/2013) is ingested as that part of the dataset; a folder
outside any dataset layout, or one with no images, is refused with a sentence.

The whole ingest is one transaction: an interruption or a crash leaves the catalog as it was.
Each stage's SQL is in data_catalog.ingest_stages; this module holds the transaction, the
progress bar and the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
from tqdm import tqdm

from core.errors import UserError, user_errors
from data_catalog import map_views
from data_catalog.catalog import DEFAULT_DB, add_memory_limit_argument, connect, dataset_zone, run
from data_catalog.dataset_layout import Source, resolve_source
from data_catalog.ingest_stages import (
    VIEWS,
    count_paths,
    insert_fallback,
    insert_fast,
    load_source,
)
from data_catalog.name_source import IMAGE_EXTENSIONS, LIST_SUFFIX, NameSourceError

# --- the ingest ------------------------------------------------------------------------------


class DatasetNameError(UserError, ValueError):
    """A dataset name the catalog already holds for another folder."""


@dataclass
class IngestResult:
    dataset: str
    root: Path
    names: int  # paths seen
    added: int  # new rows in images
    already_present: int  # paths already in images or malformed_names for this dataset
    malformed: int  # new rows in malformed_names
    seconds: float
    stage_seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"dataset {self.dataset!r} ({self.root}): {self.names:,} names, "
            f"{self.added:,} images added, {self.already_present:,} already catalogued, "
            f"{self.malformed:,} malformed names (table malformed_names), "
            f"{self.seconds:.1f} s"
        )


Hook = Callable[[str], None]


def ingest(
    con: duckdb.DuckDBPyConnection,
    source: str | os.PathLike,
    dataset: str | None = None,
    progress: bool = True,
    on_stage: Hook | None = None,
) -> IngestResult:
    """Ingest a folder or path list into the catalog in one transaction.

    on_stage(stage) is called after each stage ("counted", "inserted", "fallback",
    "checked"); tests use it to interrupt an ingest half-way.
    """
    start = time.perf_counter()
    src = resolve_source(source)
    dataset = dataset or src.dataset_root.name
    con.begin()
    try:
        # Everything below runs in this one transaction: an interruption leaves no trace.
        result = _ingest_in_transaction(con, src, dataset, progress, on_stage or (lambda _: None))
        con.commit()
    except BaseException as error:
        # KeyboardInterrupt included: nothing of this ingest may remain.
        _rollback(con)
        if _is_interrupt(error):  # Ctrl-C during a query: DuckDB raises its own error
            raise KeyboardInterrupt(f"ingest of {src.folder} interrupted") from error
        raise
    finally:
        for view in VIEWS:  # no-op if absent
            try:
                con.unregister(view)
            except duckdb.Error:
                pass  # the connection is unusable only while a rollback is pending
    result.seconds = time.perf_counter() - start
    return result


def _is_interrupt(error: BaseException) -> bool:
    return isinstance(error, duckdb.InterruptException) or (
        isinstance(error, RuntimeError) and "interrupted" in str(error).lower()
    )


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    # A few tries: a Ctrl-C arriving again can interrupt the ROLLBACK itself.
    for _ in range(5):
        try:
            con.rollback()
            return
        except duckdb.Error as error:
            if "no transaction is active" in str(error):
                # DuckDB already ended the transaction (a statement failed): nothing was
                # committed, and the original error is the one worth raising.
                return


def _ingest_in_transaction(
    con: duckdb.DuckDBPyConnection, src: Source, dataset: str, progress: bool, on_stage: Hook
) -> IngestResult:
    result = IngestResult(dataset, src.dataset_root, 0, 0, 0, 0, 0.0)
    clock = time.perf_counter()

    def stage_done(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        result.stage_seconds[stage] = now - clock
        clock = now
        on_stage(stage)

    _register_dataset(con, dataset, src.dataset_root)
    if load_source(con, src, progress) == 0:
        what = src.list_file or src.folder
        raise NameSourceError(
            f"{what} lists no images"
            if src.list_file
            else f"{what} holds no image files "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}); give a folder of SF-XL images or "
            f"a *{LIST_SUFFIX} list"
        )
    with tqdm(total=100, desc=f"ingest {dataset}: counting", unit="%", disable=not progress) as bar:
        with _polling(con, bar, 100, progress):
            result.names, unique, already, new_paths = count_paths(con, dataset)
        bar.unit = " names"
        bar.reset(total=unique)
        bar.set_description(f"ingest {dataset}")
        result.already_present = already
        bar.update(already)
        stage_done("counted")
        with _polling(con, bar, unique, progress):
            result.added = insert_fast(con, dataset, new_paths)
        bar.n = already + result.added
        stage_done("inserted")
        if result.added < unique - already:  # some names were refused by the pattern
            fallback_added, result.malformed = insert_fallback(con, dataset, new_paths, bar)
            result.added += fallback_added
        stage_done("fallback")
        if result.added:
            map_views.forget(con, dataset)  # they describe the images before this ingest
            zone = dataset_zone(con, dataset)  # MixedUTMZoneError rolls everything back
            run(
                con,
                "UPDATE datasets SET utm_zone_number = ?, utm_zone_letter = ? WHERE dataset = ?",
                [zone.number, zone.letter, dataset],
            )
        run(con, "DROP TABLE _ingest_source")
        bar.n = unique
        stage_done("checked")
    return result


@contextmanager
def _polling(con: duckdb.DuckDBPyConnection, bar: tqdm, total: float, enabled: bool):
    """Move the bar with DuckDB's own progress while one long statement runs."""
    if not enabled:
        yield
        return
    run(con, "SET enable_progress_bar = true")
    run(con, "SET enable_progress_bar_print = false")
    start, stop = bar.n, threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            done = con.query_progress()
            if done >= 0:
                bar.n = start + int((total - start) * done / 100)
                bar.refresh()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _register_dataset(con: duckdb.DuckDBPyConnection, dataset: str, root: Path) -> None:
    known = run(con, "SELECT root FROM datasets WHERE dataset = ?", [dataset])
    if not known:
        run(con, "INSERT INTO datasets (dataset, root) VALUES (?, ?)", [dataset, str(root)])
    elif known[0][0] != str(root):
        raise DatasetNameError(
            f"{root}: dataset {dataset!r} is already in the catalog from {known[0][0]}; "
            "pass --dataset to give this one another name"
        )


# --- command line ----------------------------------------------------------------------------


@functools.partial(user_errors, interrupted="interrupted: the catalog is unchanged", logs=False)
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m data_catalog.ingest",
        description="Ingest an SF-XL-style dataset folder or *_images_paths.txt list into the "
        "DuckDB catalog (one transaction: re-running adds nothing, Ctrl-C changes nothing).",
    )
    parser.add_argument(
        "source",
        help="dataset root, one of its folders (train, val/database, test/queries_v1, ...) "
        f"or a *{LIST_SUFFIX} file listing paths relative to the folder of that name",
    )
    parser.add_argument("--db", default=DEFAULT_DB, help=f"catalog file (default {DEFAULT_DB})")
    parser.add_argument("--dataset", help="name in the catalog (default: the root folder's name)")
    add_memory_limit_argument(parser)
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no_map_views",
        action="store_true",
        help="do not store the Map page's first view (python -m data_catalog.map_views later)",
    )
    args = parser.parse_args(argv)

    with connect(args.db, memory_limit=args.memory_limit, threads=args.threads) as con:
        # Row order inside one INSERT does not matter here, and not keeping it saves memory.
        run(con, "SET preserve_insertion_order = false")
        result = ingest(con, args.source, args.dataset, progress=not args.no_progress)
        stored_s = None
        if not args.no_map_views and (result.added or not map_views.has_views(con, result.dataset)):
            start = time.perf_counter()
            map_views.store_map_views(con, result.dataset, show_progress=not args.no_progress)
            stored_s = time.perf_counter() - start
    print(result.summary())
    print(
        "seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in result.stage_seconds.items())
    )
    if result.malformed:
        print(f"{result.malformed:,} malformed names: SELECT * FROM malformed_names")
    if stored_s is not None:
        print(f"the Map page's first view stored in {stored_s:.1f} s (data_catalog.map_views)")


if __name__ == "__main__":
    main()

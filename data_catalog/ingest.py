"""Put an SF-XL-style dataset into the catalog.

    python -m data_catalog.ingest DATASET_DIR --db data/catalog.duckdb
    python -m data_catalog.ingest sf_xl/raw/train_images_paths.txt --db data/catalog.duckdb

DATASET_DIR is a dataset root (holding train/, val/database, val/queries, test/database,
test/queries_v1, test/queries_v2) or one of those folders; a `X_images_paths.txt` file lists
paths relative to folder X (the reference implementation's convention), one per line, so
nothing is walked. Paths are stored relative to the dataset root, so ingesting the root or
one of its folders gives the same rows.

Names are parsed in bulk inside DuckDB: one regular expression, built from
`names.FIELD_NAMES`, accepts only names that `names.parse_name` accepts too (plain decimal
numbers, ranges checked); the fields are then cut with string_split and cast. The rare names
it does not accept (exponents, odd digits, malformed ones) go through `parse_name` itself,
which keeps or rejects them with its reason, so both ways agree by construction.

The whole ingest is one transaction: an interruption or a crash leaves the catalog as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from data_catalog.catalog import (
    IMAGE_COLUMNS,
    NAME_COLUMNS,
    SPLITS,
    connect,
    dataset_zone,
    run,
)
from data_catalog.names import (
    FIELD_NAMES,
    NUMERIC_FIELDS,
    OPTIONAL_NUMERIC_FIELDS,
    ZONE_LETTERS,
    MalformedNameError,
    SFXLName,
    parse_name,
)

LIST_SUFFIX = "_images_paths.txt"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
SUBSET_FOLDERS = ("database", "queries", "queries_v1", "queries_v2")
LAYOUT_REASON = "not inside train/, val/<subset>/ or test/<subset>/ of the dataset root"
DEFAULT_DB = "data/catalog.duckdb"

# --- the bulk parser: a conservative pattern per field ---------------------------------------
# Each pattern accepts a subset of what names._check_fields accepts for that field, so a
# name matching the whole pattern is valid for parse_name too. Anything else is decided by
# parse_name itself (see _parse_one).

_NUMBER = r"[+-]?[0-9]+(?:\.[0-9]+)?"
_SPECIAL_PATTERNS = {
    "lat": r"[+-]?0*(?:[1-8]?[0-9](?:\.[0-9]+)?|90(?:\.0+)?)",  # |lat| <= 90
    "lon": r"[+-]?0*(?:(?:1[0-7][0-9]|[1-9]?[0-9])(?:\.[0-9]+)?|180(?:\.0+)?)",  # |lon| <= 180
    "utm_zone_number": r"0?(?:[1-9]|[1-5][0-9]|60)",
    "utm_zone_letter": f"[{ZONE_LETTERS}]",
    "timestamp": r"(?:[0-9]{4}(?:0[1-9]|1[0-2])(?:[0-9]{2}(?:_[0-9]{6})?)?)?",
    "extension": r"\.[^@/]*",
}
_FREE_TEXT_FIELDS = ("pano_id", "tile_num", "note")  # parse_name checks nothing but '@'


def _field_pattern(field: str) -> str:
    if field in _SPECIAL_PATTERNS:
        return _SPECIAL_PATTERNS[field]
    if field in NUMERIC_FIELDS:
        return _NUMBER
    if field in OPTIONAL_NUMERIC_FIELDS:
        return f"(?:{_NUMBER})?"
    if field in _FREE_TEXT_FIELDS:
        return "[^@/]*"
    # A field added to names.py must get a pattern here, or the bulk parser could accept
    # names that parse_name rejects.
    raise KeyError(f"no bulk-parser pattern for name field {field!r}")


# Matched against the whole relative path: a base name after the last '/' (folders may hold '@').
FAST_NAME_PATTERN = (
    "^(?:.*/)?" + "".join(f"@(?:{_field_pattern(field)})" for field in FIELD_NAMES) + "$"
)


def _typed_fields_sql(parts: str = "parts") -> str:
    """SQL casting each field of a string_split(path, '@') list to its column type."""
    count = len(FIELD_NAMES)
    columns = []
    for index, field in enumerate(FIELD_NAMES):
        text = f"{parts}[{index - count}]"  # counted from the end: folders may hold '@'
        kind = NAME_COLUMNS[field].split()[0]
        if kind == "VARCHAR":
            columns.append(text)
        elif NAME_COLUMNS[field].endswith("NOT NULL"):
            columns.append(f"CAST({text} AS {kind})")
        else:
            columns.append(f"CAST(NULLIF({text}, '') AS {kind})")
    stamp = f"{parts}[{FIELD_NAMES.index('timestamp') - count}]"
    # Same as SFXLName.year / .month: the first 4 and next 2 characters of the timestamp.
    columns.append(f"CAST(NULLIF({stamp}[1:4], '') AS SMALLINT)")
    columns.append(f"CAST(NULLIF({stamp}[5:6], '') AS TINYINT)")
    return ", ".join(columns)


def _typed_row(name: SFXLName) -> dict:
    """The column values of a name parsed by parse_name (the slow, rare way)."""
    row: dict = {}
    for field in FIELD_NAMES:
        text = getattr(name, field)
        kind = NAME_COLUMNS[field]
        if kind.startswith("VARCHAR"):
            row[field] = text
        elif kind.startswith("INTEGER"):
            row[field] = int(text)
        else:
            row[field] = float(text) if text else None
    row["year"], row["month"] = name.year, name.month
    return row


def _parse_one(path: str) -> dict | str:
    """parse_name's verdict on a path: its typed row, or the reason it is malformed."""
    try:
        return _typed_row(parse_name(path))
    except MalformedNameError as error:
        return error.reason
    except ValueError as error:  # e.g. a zone number of non-ASCII digits int() refuses
        return f"unreadable field: {error}"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_SUBSET_SQL = (
    "CASE split WHEN 'train' THEN 'train' ELSE split_part(path, '/', 2) END"  # val/<subset>/...
)
_SPLIT_SQL = (
    "CASE WHEN path LIKE 'train/%' THEN 'train' "
    "WHEN path LIKE 'val/%/%' THEN 'val' WHEN path LIKE 'test/%/%' THEN 'test' END"
)
# The rows taken the fast way: a name the pattern accepts, in a known split folder.
_FAST_SQL = f"split IS NOT NULL AND regexp_full_match(path, {_sql_text(FAST_NAME_PATTERN)})"


# --- where the names come from ---------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    dataset_root: Path  # the folder holding train/, val/, test/
    prefix: str  # the listed folder relative to dataset_root ('' or e.g. 'val/database/')
    folder: Path  # the folder whose files are listed
    list_file: Path | None  # a *_images_paths.txt file listing them, or None to walk


def _is_subset_folder(name: str) -> bool:
    return name in SUBSET_FOLDERS or name.startswith(("queries", "database"))


def resolve_source(source: str | os.PathLike) -> Source:
    """Find the dataset root and the prefix of a folder or *_images_paths.txt file."""
    source = Path(os.path.abspath(source))
    if source.is_file():
        if not source.name.endswith(LIST_SUFFIX):
            raise ValueError(f"{source}: neither a folder nor a *{LIST_SUFFIX} list of paths")
        folder, list_file = source.with_name(source.name[: -len(LIST_SUFFIX)]), source
    elif source.is_dir():
        folder, list_file = source, None
    else:
        raise FileNotFoundError(f"{source}: no such folder or file")
    if folder.name in SPLITS:
        return Source(folder.parent, f"{folder.name}/", folder, list_file)
    if folder.parent.name in ("val", "test") and _is_subset_folder(folder.name):
        prefix = f"{folder.parent.name}/{folder.name}/"
        return Source(folder.parent.parent, prefix, folder, list_file)
    return Source(folder, "", folder, list_file)


def walk_images(folder: Path, progress: bool = True) -> list[str]:
    """Relative paths of the image files under folder, sorted (hidden entries skipped)."""
    paths = []
    with tqdm(desc=f"listing {folder}", unit=" files", disable=not progress) as bar:
        for directory, subdirs, files in os.walk(folder):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            relative = os.path.relpath(directory, folder)
            for file in files:
                if not file.startswith(".") and os.path.splitext(file)[1].lower() in (
                    IMAGE_EXTENSIONS
                ):
                    paths.append(file if relative == "." else f"{relative}/{file}")
            bar.update(len(files))
    paths.sort()
    return paths


def _source_sql(con: duckdb.DuckDBPyConnection, source: Source, progress: bool) -> str:
    """A SELECT yielding one `path` column, the paths relative to source.folder."""
    if source.list_file is not None:
        # One column per line: a delimiter no path holds, no quoting, no type sniffing.
        return (
            f"SELECT path FROM read_csv({_sql_text(str(source.list_file))}, "
            "columns = {'path': 'VARCHAR'}, header = false, delim = '\x01', quote = '', "
            "escape = '', auto_detect = false, strict_mode = false)"
        )
    table = pa.table({"path": pa.array(walk_images(source.folder, progress), pa.string())})
    con.register("_ingest_walked", table)
    return "SELECT path FROM _ingest_walked"


# --- the ingest ------------------------------------------------------------------------------


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
        for view in ("_ingest_walked", "_ingest_fallback", "_ingest_malformed"):  # no-op if absent
            con.unregister(view)
    result.seconds = time.perf_counter() - start
    return result


def _is_interrupt(error: BaseException) -> bool:
    if isinstance(error, duckdb.InterruptException):
        return True
    return isinstance(error, RuntimeError) and "interrupted" in str(error).lower()


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.rollback()
    except duckdb.Error:
        # DuckDB already ended the transaction (a statement failed or was interrupted):
        # nothing was committed, and the original error is the one worth raising.
        pass


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
    _create_source_view(con, src, progress)
    with tqdm(total=100, desc=f"ingest {dataset}: counting", unit="%", disable=not progress) as bar:
        with _polling(con, bar, 100, progress):
            result.names, unique, already, new_paths = _count(con, dataset)
        bar.unit = " names"
        bar.reset(total=unique)
        bar.set_description(f"ingest {dataset}")
        result.already_present = already
        bar.update(already)
        stage_done("counted")
        with _polling(con, bar, unique, progress):
            result.added = _insert_fast(con, dataset, new_paths)
        bar.n = already + result.added
        stage_done("inserted")
        if result.added < unique - already:  # some names were refused by the pattern
            fallback_added, result.malformed = _insert_fallback(con, dataset, new_paths, bar)
            result.added += fallback_added
        stage_done("fallback")
        if result.added:
            zone = dataset_zone(con, dataset)  # MixedUTMZoneError rolls everything back
            run(
                con,
                "UPDATE datasets SET utm_zone_number = ?, utm_zone_letter = ? WHERE dataset = ?",
                [zone.number, zone.letter, dataset],
            )
        run(con, "DROP VIEW _ingest_source")
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
        raise ValueError(
            f"{root}: dataset {dataset!r} is already in the catalog from {known[0][0]}; "
            "pass --dataset to give this one another name"
        )


def _create_source_view(con: duckdb.DuckDBPyConnection, src: Source, progress: bool) -> None:
    """_ingest_source(path): the listed paths made relative to the dataset root.

    A view, not a table: each pass streams the list again rather than holding 41M paths.
    """
    run(
        con,
        f"""CREATE OR REPLACE TEMP VIEW _ingest_source AS
            SELECT {_sql_text(src.prefix)} ||
                   CASE WHEN starts_with(path, './') THEN path[3:] ELSE path END AS path
            FROM ({_source_sql(con, src, progress)}) WHERE path <> ''""",
    )


def _known_sql(dataset: str) -> str:
    """The paths of a dataset already in the catalog, as images or as malformed names."""
    name = _sql_text(dataset)
    return (
        f"SELECT path FROM images WHERE dataset = {name} "
        f"UNION ALL SELECT path FROM malformed_names WHERE dataset = {name}"
    )


def _count(con: duckdb.DuckDBPyConnection, dataset: str) -> tuple[int, int, int, str]:
    """(names, distinct names, already catalogued, SQL of the new distinct paths)."""
    names, hashes = run(con, "SELECT count(*), count(DISTINCT hash(path)) FROM _ingest_source")[0]
    unique, new_paths = names, "SELECT path FROM _ingest_source"
    if hashes != names:  # a list naming a file twice, or (rarely) a hash collision
        new_paths = "SELECT DISTINCT path FROM _ingest_source"
        unique = run(con, f"SELECT count(*) FROM ({new_paths})")[0][0]
    known = run(
        con,
        "SELECT EXISTS (SELECT 1 FROM images WHERE dataset = $1) "
        "OR EXISTS (SELECT 1 FROM malformed_names WHERE dataset = $1)",
        [dataset],
    )[0][0]
    already = 0
    if known:  # re-ingest: leave out what is there already, comparing whole paths
        known_paths = _known_sql(dataset)
        query = f"SELECT count(*) FROM ({new_paths}) WHERE path IN ({known_paths})"
        already = run(con, query)[0][0]
        new_paths = f"SELECT path FROM ({new_paths}) WHERE path NOT IN ({known_paths})"
    return names, unique, already, new_paths


def _insert_fast(con: duckdb.DuckDBPyConnection, dataset: str, new_paths: str) -> int:
    """Insert, in one streaming statement, the new names the pattern accepts."""
    return run(
        con,
        f"""INSERT INTO images ({", ".join(IMAGE_COLUMNS)})
            SELECT $1, path, split, {_SUBSET_SQL}, {_typed_fields_sql()}
            FROM (SELECT path, split, string_split(path, '@') AS parts
                  FROM (SELECT path, {_SPLIT_SQL} AS split FROM ({new_paths}))
                  WHERE {_FAST_SQL})""",
        [dataset],
    )[0][0]


def _insert_fallback(
    con: duckdb.DuckDBPyConnection, dataset: str, new_paths: str, bar: tqdm
) -> tuple[int, int]:
    """Names the pattern refused: parse_name keeps or rejects each. (added, malformed)."""
    # Fetched whole before inserting: a new statement on the connection ends a pending result.
    odd = con.sql(
        f"""SELECT path, split, {_SUBSET_SQL} AS subset
            FROM (SELECT path, {_SPLIT_SQL} AS split FROM ({new_paths}))
            WHERE NOT ({_FAST_SQL})""",
    ).to_arrow_table()
    added = malformed = 0
    for batch in odd.to_batches(max_chunksize=100_000):
        rows, rejected = [], []
        for path, split, subset in zip(*batch.to_pydict().values(), strict=True):
            parsed = _parse_one(path)
            if isinstance(parsed, str):
                rejected.append((path, parsed))
            elif split is None:
                rejected.append((path, LAYOUT_REASON))
            else:
                rows.append({"dataset": dataset, "path": path, "split": split, "subset": subset})
                rows[-1].update(parsed)
        added += _append_images(con, rows)
        malformed += _append_malformed(con, dataset, rejected)
        bar.update(batch.num_rows)
    return added, malformed


def _append_images(con: duckdb.DuckDBPyConnection, rows: list[dict]) -> int:
    if not rows:
        return 0
    con.register("_ingest_fallback", pd.DataFrame(rows, columns=list(IMAGE_COLUMNS)))
    columns = ", ".join(IMAGE_COLUMNS)
    run(con, f"INSERT INTO images ({columns}) SELECT {columns} FROM _ingest_fallback")
    con.unregister("_ingest_fallback")
    return len(rows)


def _append_malformed(
    con: duckdb.DuckDBPyConnection, dataset: str, rejected: list[tuple[str, str]]
) -> int:
    if not rejected:
        return 0
    table = pd.DataFrame(rejected, columns=["path", "reason"])
    con.register("_ingest_malformed", table)
    run(
        con,
        "INSERT INTO malformed_names (dataset, path, reason) "
        "SELECT ?, path, reason FROM _ingest_malformed",
        [dataset],
    )
    con.unregister("_ingest_malformed")
    return len(rejected)


# --- the same parser on a list of names, for tests and one-off checks ------------------------


def bulk_parse(
    con: duckdb.DuckDBPyConnection, paths: Iterable[str]
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Parse paths the way the ingest does: (typed rows of valid names, (path, reason) list).

    Rows come back in input order with a `fast` column telling which way each was parsed.
    """
    table = pa.table({"path": pa.array(list(paths), pa.string())})
    parsed = (
        con.from_arrow(table)
        .query(
            "_paths",
            f"""SELECT row_number() OVER () AS position, path,
                       regexp_full_match(path, {_sql_text(FAST_NAME_PATTERN)}) AS fast
                FROM _paths""",
        )
        .df()
    )
    fast = parsed[parsed["fast"]]
    columns = [*NAME_COLUMNS, "year", "month"]
    typed = con.from_df(fast).query(
        "_fast",
        f"SELECT position, path, true AS fast, {_typed_fields_sql()} "
        "FROM (SELECT *, string_split(path, '@') AS parts FROM _fast)",
    )
    frames = [typed.df().set_axis(["position", "path", "fast", *columns], axis=1)]
    slow_rows, rejected = [], []
    for position, path in parsed.loc[~parsed["fast"], ["position", "path"]].itertuples(index=False):
        result = _parse_one(path)
        if isinstance(result, str):
            rejected.append((path, result))
        else:
            slow_rows.append({"position": position, "path": path, "fast": False, **result})
    if slow_rows:
        frames.append(pd.DataFrame(slow_rows))
    valid = pd.concat(frames, ignore_index=True).sort_values("position", ignore_index=True)
    return valid.drop(columns="position"), rejected


# --- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
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
    parser.add_argument("--memory_limit", default="4GB", help="DuckDB memory limit (4GB)")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    try:
        con = connect(args.db, memory_limit=args.memory_limit, threads=args.threads)
        # Row order inside one INSERT does not matter here, and not keeping it saves memory.
        run(con, "SET preserve_insertion_order = false")
        result = ingest(con, args.source, args.dataset, progress=not args.no_progress)
    except KeyboardInterrupt:
        print("interrupted: the catalog is unchanged", file=sys.stderr)
        return 130
    except (OSError, ValueError, KeyError, duckdb.Error) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(result.summary())
    print(
        "seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in result.stage_seconds.items())
    )
    if result.malformed:
        print(f"{result.malformed:,} malformed names: SELECT * FROM malformed_names")
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

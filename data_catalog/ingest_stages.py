"""The SQL of an ingest's stages, each run inside the transaction that data_catalog.ingest holds.

load_source fills the temporary table _ingest_source(path, reason) with the listed paths,
relative to the dataset root; count_paths leaves out what the catalog holds already;
insert_fast parses, in one streaming statement, the names the fast pattern accepts; and
insert_fallback sends the rest through names.parse_name (by way of name_pattern.judge),
which keeps or rejects each with its reason.
"""

from __future__ import annotations

import duckdb
import pandas as pd
from tqdm import tqdm

from data_catalog.catalog import IMAGE_COLUMNS, run
from data_catalog.dataset_layout import Source
from data_catalog.name_pattern import FAST_NAME_PATTERN, judge, sql_text, typed_fields_sql
from data_catalog.name_source import (
    NameSource,
    line_sql,
    line_tables,
    normalized_path_sql,
    outside_reason,
)

LAYOUT_REASON = "not inside train/, val/<subset>/ or test/<subset>/ of the dataset root"
# The views registered while a stage runs; ingest unregisters them if a stage fails.
VIEWS = ("_ingest_lines", "_ingest_fallback", "_ingest_malformed")

_SUBSET_SQL = (
    "CASE split WHEN 'train' THEN 'train' ELSE split_part(path, '/', 2) END"  # val/<subset>/...
)
_SPLIT_SQL = (
    "CASE WHEN path LIKE 'train/%' THEN 'train' "
    "WHEN path LIKE 'val/%/%' THEN 'val' WHEN path LIKE 'test/%/%' THEN 'test' END"
)
# The rows taken the fast way: a name the pattern accepts, in a known split folder.
_FAST_SQL = (
    "reason IS NULL AND split IS NOT NULL AND "
    f"regexp_full_match(path, {sql_text(FAST_NAME_PATTERN)})"
)


def load_source(con: duckdb.DuckDBPyConnection, src: Source, progress: bool) -> int:
    """Fill _ingest_source(path, reason) with the paths made relative to the dataset root.

    reason is NULL, or why the line is malformed before any parse (an absolute path outside
    the folder, a line break in a walked file's name). Lines come from name_table's reader,
    the one training and evaluation use. Returns the number of lines.
    """
    run(con, "CREATE OR REPLACE TEMP TABLE _ingest_source (path VARCHAR, reason VARCHAR)")
    skip = frozenset(part.folder.relative_to(src.folder).as_posix() for part in src.listed_parts)
    total = 0
    for part in (src, *src.listed_parts):
        walk_skip = skip if part is src else frozenset()
        tables, _, _, odd = line_tables(
            NameSource(part.folder, part.list_file), progress, skip=walk_skip
        )
        prefix = sql_text(part.prefix)
        path = normalized_path_sql("line", part.folder)
        insert = f"""INSERT INTO _ingest_source
            SELECT {prefix} || coalesce(path, line),
                   CASE WHEN path IS NULL THEN {sql_text(outside_reason(part.folder))} END
            FROM (SELECT line, {path} AS path
                  FROM (SELECT {line_sql("raw")} AS line FROM _ingest_lines))"""
        for table in tables:
            total += _insert_from(con, "_ingest_lines", table, insert)
        if odd:
            odd_lines = pd.DataFrame(odd, columns=["path", "reason"])
            insert_odd = (
                f"INSERT INTO _ingest_source SELECT {prefix} || path, reason FROM _ingest_lines"
            )
            total += _insert_from(con, "_ingest_lines", odd_lines, insert_odd)
    return total


def _insert_from(con: duckdb.DuckDBPyConnection, view: str, table, insert: str, params=None) -> int:
    """Run the INSERT `insert`, which reads `table` (a DataFrame or Arrow table) as `view`,
    one of VIEWS; returns the number of rows inserted."""
    con.register(view, table)
    inserted = run(con, insert, params)[0][0]
    con.unregister(view)
    return inserted


def _known_sql(dataset: str) -> str:
    """The paths of a dataset already in the catalog, as images or as malformed names."""
    name = sql_text(dataset)
    return (
        f"SELECT path FROM images WHERE dataset = {name} "
        f"UNION ALL SELECT path FROM malformed_names WHERE dataset = {name}"
    )


def count_paths(con: duckdb.DuckDBPyConnection, dataset: str) -> tuple[int, int, int, str]:
    """(names, distinct names, already catalogued, SQL of the new distinct paths)."""
    names, hashes = run(con, "SELECT count(*), count(DISTINCT hash(path)) FROM _ingest_source")[0]
    unique, new_paths = names, "SELECT path, reason FROM _ingest_source"
    if hashes != names:  # a list naming a file twice, or (rarely) a hash collision
        new_paths = "SELECT DISTINCT path, reason FROM _ingest_source"
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
        new_paths = f"SELECT * FROM ({new_paths}) WHERE path NOT IN ({known_paths})"
    return names, unique, already, new_paths


def insert_fast(con: duckdb.DuckDBPyConnection, dataset: str, new_paths: str) -> int:
    """Insert, in one streaming statement, the new names the pattern accepts."""
    return run(
        con,
        f"""INSERT INTO images ({", ".join(IMAGE_COLUMNS)})
            SELECT $1, path, split, {_SUBSET_SQL}, {typed_fields_sql()}
            FROM (SELECT path, split, string_split(path, '@') AS parts
                  FROM (SELECT path, reason, {_SPLIT_SQL} AS split FROM ({new_paths}))
                  WHERE {_FAST_SQL})""",
        [dataset],
    )[0][0]


def insert_fallback(
    con: duckdb.DuckDBPyConnection, dataset: str, new_paths: str, bar: tqdm
) -> tuple[int, int]:
    """Names the pattern refused: parse_name keeps or rejects each. (added, malformed)."""
    # Fetched whole before inserting: a new statement on the connection ends a pending result.
    odd = con.sql(
        f"""SELECT path, split, {_SUBSET_SQL} AS subset, reason
            FROM (SELECT path, reason, {_SPLIT_SQL} AS split FROM ({new_paths}))
            WHERE NOT ({_FAST_SQL})""",
    ).to_arrow_table()
    added = malformed = 0
    for batch in odd.to_batches(max_chunksize=100_000):
        rows, rejected = [], []
        for path, split, subset, reason in zip(*batch.to_pydict().values(), strict=True):
            parsed = reason or judge(path)
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
    columns = ", ".join(IMAGE_COLUMNS)
    insert = f"INSERT INTO images ({columns}) SELECT {columns} FROM _ingest_fallback"
    table = pd.DataFrame(rows, columns=list(IMAGE_COLUMNS))
    return _insert_from(con, "_ingest_fallback", table, insert)


def _append_malformed(
    con: duckdb.DuckDBPyConnection, dataset: str, rejected: list[tuple[str, str]]
) -> int:
    if not rejected:
        return 0
    insert = (
        "INSERT INTO malformed_names (dataset, path, reason) "
        "SELECT ?, path, reason FROM _ingest_malformed"
    )
    table = pd.DataFrame(rejected, columns=["path", "reason"])
    return _insert_from(con, "_ingest_malformed", table, insert, [dataset])

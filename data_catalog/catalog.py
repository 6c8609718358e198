"""The DuckDB catalog of datasets: its schema and the queries that training and the app need.

One row per image in `images`, with every field of the SF-XL name typed (columns are named
after `names.FIELD_NAMES`), where it lies (`dataset`, `path` relative to the dataset root)
and what it is for (`split`, `subset`). Names that could not be catalogued go to
`malformed_names` with the reason. `data_catalog.ingest` is the only writer.

(dataset, path) is unique. The ingest enforces it inside its transaction (exact comparison
of paths) instead of a PRIMARY KEY: DuckDB's ART index over 41M path strings doubles the
file and costs about a minute per ingest, which the 3-minute budget for the raw set lacks.

The classes and groups of paper Eq. 1-2 are never computed in SQL: arrays are fetched from
DuckDB and handed to `core.partition`, the only place the formulas live.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb
import pandas as pd

from core.errors import UserError
from core.geo import UTMZone, single_zone
from data_catalog.name_pattern import field_kind
from data_catalog.names import FIELD_NAMES, OPTIONAL_NUMERIC_FIELDS

SPLITS = ("train", "val", "test")
# The folder commands and the app keep their work in: datasets, the catalog, runs/.
DEFAULT_WORKSPACE = "data"


def catalog_file(workspace: str | os.PathLike) -> Path:
    """The workspace's catalog, WORKSPACE/catalog.duckdb."""
    return Path(workspace) / "catalog.duckdb"


DEFAULT_DB = str(catalog_file(DEFAULT_WORKSPACE))  # the commands' --db default
DEFAULT_MEMORY_LIMIT = "4GB"  # DuckDB's own memory for the commands that write the catalog


def add_memory_limit_argument(parser) -> None:
    """The --memory_limit flag of the commands that write the catalog."""
    parser.add_argument(
        "--memory_limit",
        default=DEFAULT_MEMORY_LIMIT,
        help=f"DuckDB memory limit ({DEFAULT_MEMORY_LIMIT})",
    )


# Columns filled from the name, in FIELD_NAMES order, then the two derived from the timestamp.
# Only the optional numbers may be NULL (empty in the name: test v1 queries have no heading);
# text fields are kept as written, empty strings stay empty.
NAME_COLUMNS: dict[str, str] = {
    field: field_kind(field) + ("" if field in OPTIONAL_NUMERIC_FIELDS else " NOT NULL")
    for field in FIELD_NAMES
}
DERIVED_COLUMNS: dict[str, str] = {"year": "SMALLINT", "month": "TINYINT"}
IMAGE_COLUMNS: tuple[str, ...] = (
    "dataset",
    "path",
    "split",
    "subset",
    *NAME_COLUMNS,
    *DERIVED_COLUMNS,
)

SCHEMA = [
    "CREATE SEQUENCE IF NOT EXISTS image_id_seq START 1",
    """CREATE TABLE IF NOT EXISTS datasets (
        dataset VARCHAR PRIMARY KEY,
        root VARCHAR NOT NULL,           -- absolute path of the dataset root when ingested
        utm_zone_number INTEGER,
        utm_zone_letter VARCHAR
    )""",
    "CREATE TABLE IF NOT EXISTS images (\n"
    "    image_id BIGINT NOT NULL DEFAULT nextval('image_id_seq'),\n"
    "    dataset VARCHAR NOT NULL,\n"
    "    path VARCHAR NOT NULL,\n"
    "    split VARCHAR NOT NULL,\n"
    "    subset VARCHAR NOT NULL,\n"
    + ",\n".join(f"    {name} {kind}" for name, kind in {**NAME_COLUMNS, **DERIVED_COLUMNS}.items())
    + "\n)",
    """CREATE TABLE IF NOT EXISTS malformed_names (
        dataset VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        reason VARCHAR NOT NULL
    )""",
]


def run(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    """Run one statement to the end and return its rows.

    DuckDB 2 refuses some work on a connection (register, for one) while its last result
    is only partly fetched, and fetchone leaves it so; fetching everything never does.
    """
    return con.execute(sql, params or []).fetchall()


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    for statement in SCHEMA:
        run(con, statement)


# How long connect() waits for another process's lock before giving up. DuckDB allows one
# writing process and no reader in another process while it writes, so a second process
# waits here rather than failing on the first try. COSPLACE_CATALOG_WAIT_S overrides it.
DEFAULT_LOCK_WAIT_S = 30.0
_LOCK_RETRY_INTERVAL_S = 0.2


class CatalogBusyError(UserError, RuntimeError, OSError):
    """The catalog file is locked by another process (an ingest, a training run) for too long.

    Also an OSError (the file cannot be opened now), so a command that reports unusable
    files with one line, as the ingest does, reports this one too.
    """

    def __init__(self, db_path: str | os.PathLike, waited_s: float) -> None:
        self.db_path = Path(db_path)
        self.waited_s = waited_s
        super().__init__(
            f"The catalog {self.db_path} is locked by another process that is writing to it "
            f"(e.g. an ingest or a training run) and stayed busy for {waited_s:.1f} s; "
            "retry later, once that process has finished."
        )


def is_lock_error(error: BaseException) -> bool:
    """True for DuckDB's 'Could not set lock on file' (another process holds the file)."""
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


def lock_wait_seconds() -> float:
    value = os.environ.get("COSPLACE_CATALOG_WAIT_S")
    return float(value) if value else DEFAULT_LOCK_WAIT_S


def connect(
    db_path: str | os.PathLike,
    read_only: bool = False,
    memory_limit: str | None = None,
    threads: int | None = None,
    wait_s: float | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the catalog at `db_path` (created with its schema unless read_only).

    While another process holds the file's lock, retries for `wait_s` seconds (default:
    lock_wait_seconds()) and then raises CatalogBusyError, never DuckDB's raw lock error.

    The app caches the result per path (st.cache_resource) and should run each query on
    `con.cursor()`, since one DuckDB connection must not be used by two threads at once.
    """
    db_path = Path(db_path)
    if read_only and not db_path.exists():
        raise FileNotFoundError(f"{db_path}: no catalog here; run python -m data_catalog.ingest")
    config: dict[str, str | int] = {}
    if memory_limit:
        config["memory_limit"] = memory_limit
    if threads:
        config["threads"] = threads
    if not read_only:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    wait_s = lock_wait_seconds() if wait_s is None else wait_s
    started = time.monotonic()
    while True:
        try:
            con = duckdb.connect(str(db_path), read_only=read_only, config=config)
            break
        except duckdb.IOException as error:
            if not is_lock_error(error):
                raise
            waited = time.monotonic() - started
            if waited >= wait_s:
                raise CatalogBusyError(db_path, waited) from None
            time.sleep(min(_LOCK_RETRY_INTERVAL_S, max(wait_s - waited, 0.01)))
    if not read_only:
        create_schema(con)
    return con


# --- datasets -------------------------------------------------------------------------------


def list_datasets(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Datasets with their root, zone and images per split/subset."""
    return con.execute(
        """SELECT d.dataset, d.root, d.utm_zone_number, d.utm_zone_letter, i.split, i.subset,
                  count(i.path) AS images
           FROM datasets d LEFT JOIN images i USING (dataset)
           GROUP BY ALL ORDER BY d.dataset, i.split, i.subset"""
    ).df()


def dataset_zone(con: duckdb.DuckDBPyConnection, dataset: str) -> UTMZone:
    """The one UTM zone of a dataset; MixedUTMZoneError if its names mix zones."""
    zones = con.execute(
        "SELECT DISTINCT utm_zone_number, utm_zone_letter FROM images WHERE dataset = ?",
        [dataset],
    ).fetchall()
    if not zones:
        raise KeyError(f"dataset {dataset!r} has no images in the catalog")
    return single_zone(zones, f"dataset {dataset!r}")


def malformed_names(con: duckdb.DuckDBPyConnection, dataset: str | None = None) -> pd.DataFrame:
    where, args = equality_filters(dataset=dataset)
    return con.execute(f"SELECT * FROM malformed_names {where} ORDER BY path", args).df()


def equality_filters(**equal: str | None) -> tuple[str, list]:
    """A WHERE clause for the given column = value pairs, skipping the None ones."""
    used = {column: value for column, value in equal.items() if value is not None}
    if not used:
        return "", []
    return "WHERE " + " AND ".join(f"{column} = ?" for column in used), list(used.values())


def images_per_year(con: duckdb.DuckDBPyConnection, dataset: str | None = None) -> pd.DataFrame:
    """Images and panoramas per year (NULL year: no timestamp in the name), split and subset."""
    where, args = equality_filters(dataset=dataset)
    return con.execute(
        f"""SELECT year, split, subset, count(*) AS images,
                   count(DISTINCT nullif(pano_id, '')) AS panoramas
            FROM images {where} GROUP BY ALL ORDER BY year NULLS FIRST, split, subset""",
        args,
    ).df()


def images_in_bbox(
    con: duckdb.DuckDBPyConnection,
    lat_min: float,
    lon_min: float,
    lat_max: float,
    lon_max: float,
    dataset: str | None = None,
    split: str | None = None,
    subset: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Images whose name's lat/lon lies in the box (edges included), in catalog order."""
    if lat_min > lat_max or lon_min > lon_max:
        raise ValueError(f"empty box: lat {lat_min}..{lat_max}, lon {lon_min}..{lon_max}")
    where, args = equality_filters(dataset=dataset, split=split, subset=subset)
    box = "lat BETWEEN ? AND ? AND lon BETWEEN ? AND ?"
    where = f"{where} AND {box}" if where else f"WHERE {box}"
    query = f"SELECT * FROM images {where} ORDER BY image_id"
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    return con.execute(query, [*args, lat_min, lat_max, lon_min, lon_max]).df()

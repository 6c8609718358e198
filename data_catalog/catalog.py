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
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from core.errors import UserError
from core.geo import UTMZone, check_single_zone, utm_to_latlon
from core.partition import Partition, PartitionParams, class_keys, partition
from data_catalog.names import FIELD_NAMES, NUMERIC_FIELDS, OPTIONAL_NUMERIC_FIELDS

SPLITS = ("train", "val", "test")


def _field_type(field: str) -> str:
    if field in NUMERIC_FIELDS:
        return "DOUBLE NOT NULL"
    if field in OPTIONAL_NUMERIC_FIELDS:
        return "DOUBLE"  # empty in the name -> NULL (test v1 queries have no heading)
    if field == "utm_zone_number":
        return "INTEGER NOT NULL"
    return "VARCHAR NOT NULL"  # kept as written: empty strings stay empty


# Columns filled from the name, in FIELD_NAMES order, then the two derived from the timestamp.
NAME_COLUMNS: dict[str, str] = {field: _field_type(field) for field in FIELD_NAMES}
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
    numbers, letters = zip(*zones, strict=True)
    return check_single_zone(numbers, letters)


def malformed_names(con: duckdb.DuckDBPyConnection, dataset: str | None = None) -> pd.DataFrame:
    where, args = _filters(dataset=dataset)
    return con.execute(f"SELECT * FROM malformed_names {where} ORDER BY path", args).df()


def _filters(**equal: str | None) -> tuple[str, list]:
    """A WHERE clause for the given column = value pairs, skipping the None ones."""
    used = {column: value for column, value in equal.items() if value is not None}
    if not used:
        return "", []
    return "WHERE " + " AND ".join(f"{column} = ?" for column in used), list(used.values())


# --- partition ------------------------------------------------------------------------------


@dataclass
class ImagePartition:
    """A Partition together with the catalog ids of its images, in the same order."""

    image_ids: np.ndarray  # [num_images] images.image_id
    partition: Partition


def _fetch(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    split: str,
    subset: str | None,
    extra: tuple[str, ...] = (),
    by_path: bool = False,
) -> pa.Table:
    """image_id, east, north, heading (+ extra columns) of one split, in catalog order
    (by_path: sorted by path, the order in which training walks the folder)."""
    where, args = _filters(dataset=dataset, split=split, subset=subset)
    columns = ", ".join(("image_id", "utm_east", "utm_north", "heading", *extra))
    query = f"SELECT {columns} FROM images {where}" + (" ORDER BY path" if by_path else "")
    table = con.sql(query, params=args).to_arrow_table()  # con.execute would copy the rows
    if table.num_rows == 0:
        raise KeyError(f"no images in dataset {dataset!r}, split {split!r}, subset {subset!r}")
    if table["heading"].null_count:
        raise ValueError(
            f"{table['heading'].null_count} images of dataset {dataset!r}, split {split!r} "
            "have no heading; classes need one (paper Eq. 1)"
        )
    return table


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table[name].to_numpy()


def partition_images(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    params: PartitionParams | None = None,
    split: str = "train",
    subset: str | None = None,
) -> ImagePartition:
    """Classes and groups of a dataset's images, by core.partition on arrays from DuckDB.

    Images come sorted by path, so the reference group order (params.group_order) numbers
    the groups as training does on the walked folder (a training list file may order them
    otherwise: the catalog does not keep list order).
    """
    params = params or PartitionParams()
    table = _fetch(con, dataset, split, subset, by_path=params.group_order == "reference")
    image_ids, east, north, heading = (
        _column(table, name) for name in ("image_id", "utm_east", "utm_north", "heading")
    )
    del table  # numpy copies made: let Arrow's buffers go before the partition's own peak
    return ImagePartition(image_ids, partition(east, north, heading, params))


def class_summary(part: Partition) -> pd.DataFrame:
    """One row per kept class: its Eq. 1 indices, its group and its number of images."""
    keys = part.class_keys
    return pd.DataFrame(
        {
            "class_id": np.arange(part.num_classes),
            "group": part.class_group,
            "cell_e": keys[:, 0],
            "cell_n": keys[:, 1],
            "heading_class": keys[:, 2],
            "east_min": keys[:, 0] * part.params.M,
            "north_min": keys[:, 1] * part.params.M,
            "heading_min": keys[:, 2] * part.params.alpha,
            "images": part.class_sizes,
        }
    )


def group_summary(part: Partition) -> pd.DataFrame:
    """One row per group, in the partition's group order (training takes the first ones)."""
    classes = np.diff(part.group_offsets)
    images = np.bincount(part.class_group, weights=part.class_sizes, minlength=part.num_groups)
    return pd.DataFrame(
        {
            "group": np.arange(part.num_groups),
            "u": part.group_keys[:, 0],
            "v": part.group_keys[:, 1],
            "w": part.group_keys[:, 2],
            "classes": classes,
            "images": images.astype(np.int64),
        }
    )


def cell_summary(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    params: PartitionParams | None = None,
    split: str = "train",
    subset: str | None = None,
) -> pd.DataFrame:
    """One row per M x M cell holding images: images, panoramas, kept classes and images.

    Images of dropped classes (fewer than min_images_per_class) count in `images` but not in
    `kept_images`; `classes` counts the kept heading classes of the cell.
    """
    params = params or PartitionParams()
    table = _fetch(con, dataset, split, subset, extra=("pano_id",))
    east, north = _column(table, "utm_east"), _column(table, "utm_north")
    heading = _column(table, "heading")
    keys = class_keys(east, north, heading, params.M, params.alpha)
    image_class = partition(east, north, heading, params).image_class
    labelled = pa.table(
        {
            "cell_e": keys[:, 0],
            "cell_n": keys[:, 1],
            "image_class": image_class,
            "pano_id": table["pano_id"],
        }
    )
    cells = (
        con.from_arrow(labelled)
        .query(
            "labelled",
            """SELECT cell_e, cell_n,
                  count(*) AS images,
                  count(DISTINCT nullif(pano_id, '')) AS panoramas,
                  count(DISTINCT image_class) FILTER (WHERE image_class >= 0) AS classes,
                  count(*) FILTER (WHERE image_class >= 0) AS kept_images
           FROM labelled GROUP BY cell_e, cell_n ORDER BY cell_e, cell_n""",
        )
        .df()
    )
    cells["east_min"] = cells["cell_e"] * params.M
    cells["north_min"] = cells["cell_n"] * params.M
    return cells


def panoramas_per_cell(cells: pd.DataFrame) -> pd.DataFrame:
    """How many cells hold k panoramas, from cell_summary's table."""
    counts = cells.groupby("panoramas").size()
    return counts.rename("cells").reset_index()


def images_per_year(con: duckdb.DuckDBPyConnection, dataset: str | None = None) -> pd.DataFrame:
    """Images and panoramas per year (NULL year: no timestamp in the name), split and subset."""
    where, args = _filters(dataset=dataset)
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
    where, args = _filters(dataset=dataset, split=split, subset=subset)
    box = "lat BETWEEN ? AND ? AND lon BETWEEN ? AND ?"
    where = f"{where} AND {box}" if where else f"WHERE {box}"
    query = f"SELECT * FROM images {where} ORDER BY image_id"
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    return con.execute(query, [*args, lat_min, lat_max, lon_min, lon_max]).df()


# --- cells as geometry ----------------------------------------------------------------------


def cells_geodataframe(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    params: PartitionParams | None = None,
    split: str = "train",
    subset: str | None = None,
):
    """cell_summary with each cell's square as a lat/lon polygon (EPSG:4326)."""
    import geopandas as gpd
    import shapely

    params = params or PartitionParams()
    zone = dataset_zone(con, dataset)
    cells = cell_summary(con, dataset, params, split, subset)
    # Corners in UTM, counter-clockwise from south-west, closed; then to lat/lon.
    e0 = cells["east_min"].to_numpy(dtype=np.float64)
    n0 = cells["north_min"].to_numpy(dtype=np.float64)
    east = np.stack([e0, e0 + params.M, e0 + params.M, e0, e0], axis=1)
    north = np.stack([n0, n0, n0 + params.M, n0 + params.M, n0], axis=1)
    lat, lon = utm_to_latlon(east.ravel(), north.ravel(), zone)
    rings = np.stack([lon, lat], axis=1).reshape(len(cells), 5, 2)
    geometry = shapely.polygons(rings) if len(cells) else []
    cells["utm_zone"] = str(zone)
    return gpd.GeoDataFrame(cells, geometry=geometry, crs="EPSG:4326")


def export_cells(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    path: str | os.PathLike,
    params: PartitionParams | None = None,
    split: str = "train",
    subset: str | None = None,
) -> Path:
    """Write the cells as GeoJSON (.geojson/.json) or GeoParquet (.parquet)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".geojson", ".json", ".parquet"):
        raise ValueError(f"{path}: cells are exported as .geojson, .json or .parquet")
    cells = cells_geodataframe(con, dataset, params, split, subset)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        cells.to_parquet(path)
    else:
        cells.to_file(path, driver="GeoJSON")
    return path

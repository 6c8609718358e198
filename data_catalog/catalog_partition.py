"""The CosPlace partition of catalogued images: arrays from DuckDB into core.partition (where
the formulas live), then tables of its classes, groups and cells, and the cells as geometry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from core.geo import utm_to_latlon
from core.partition import Partition, PartitionParams, class_keys, partition
from data_catalog.catalog import dataset_zone, equality_filters

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
    where, args = equality_filters(dataset=dataset, split=split, subset=subset)
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


# --- cells as geometry ----------------------------------------------------------------------


def cells_geodataframe(
    con: duckdb.DuckDBPyConnection, dataset: str, params: PartitionParams | None = None, **where
):
    """cell_summary (`where`: its split and subset) with each cell's square as a lat/lon
    polygon (EPSG:4326)."""
    import geopandas as gpd
    import shapely

    params = params or PartitionParams()
    zone = dataset_zone(con, dataset)
    cells = cell_summary(con, dataset, params, **where)
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
    **where,
) -> Path:
    """Write cells_geodataframe's cells as GeoJSON (.geojson/.json) or GeoParquet (.parquet)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".geojson", ".json", ".parquet"):
        raise ValueError(f"{path}: cells are exported as .geojson, .json or .parquet")
    cells = cells_geodataframe(con, dataset, params, **where)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        cells.to_parquet(path)
    else:
        cells.to_file(path, driver="GeoJSON")
    return path

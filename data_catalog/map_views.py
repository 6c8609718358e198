"""What a map draws first, computed once when a dataset is ingested and kept in the catalog.

At city scale the partition of every image takes minutes (41.2M names: about 3.5 minutes
and 5 GB here) and the street squares of the offline base layer tens of seconds, so the
first Map view of a freshly ingested city would wait that long. The ingest therefore ends by
storing, for each split, the cells, classes and groups of the partition at the default
parameters (core.partition's defaults, what the Map page opens with) and the dataset's street
squares. Readers use them when the parameters match and compute otherwise; an ingest that
adds images to a dataset forgets its stored views in the same transaction, so a stored view
never describes other images than the catalog holds.

    python -m data_catalog.map_views --db data/catalog.duckdb [--dataset NAME]

stores them for a catalog ingested before they existed (the ingest does it by itself).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import duckdb
import numpy as np
import pandas as pd
from tqdm import tqdm

from core.errors import UserError, user_errors
from core.geo import UTMZone
from core.partition import PartitionParams
from data_catalog import app_queries, catalog_partition
from data_catalog.catalog import DEFAULT_DB, add_memory_limit_argument, connect, dataset_zone, run

BASE_SIDE_M = 4.0  # finest street square: about one street lane
MAX_BASE_POINTS = 40_000  # ~1.5 MB of JSON: light beside the layers drawn over it

Progress = Callable[[float, str], None]  # (fraction done, what runs now)

# Stored frames: one table per frame, rows tagged with their view and kept in frame order.
FRAME_TABLES = {
    "cells": "map_view_cells",
    "classes": "map_view_classes",
    "groups": "map_view_groups",
}
PARAM_COLUMNS = ("M", "alpha", "N", "L", "min_images_per_class", "group_order")
_VIEW_WHERE = "dataset = ? AND split = ? AND " + " AND ".join(f"{c} = ?" for c in PARAM_COLUMNS)


@dataclass
class PartitionTables:
    """The partition of one split as the Map page draws it (catalog_partition's summaries)."""

    cells: pd.DataFrame
    classes: pd.DataFrame
    groups: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


@dataclass
class StreetSquares:
    """Image positions merged into squares: centres (UTM metres), images per square."""

    east: np.ndarray
    north: np.ndarray
    images: np.ndarray
    side_m: float
    zone: UTMZone

    def __len__(self) -> int:
        return len(self.east)


# --- computing ------------------------------------------------------------------------------


def partition_tables(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    params: PartitionParams,
    split: str = "train",
    progress: Progress | None = None,
) -> PartitionTables:
    """Cells, classes and groups of one split by core.partition, with the warnings raised."""
    progress = progress or (lambda fraction, text: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params = PartitionParams(**asdict(params))  # re-validate, recording its warnings
        progress(0.0, f"partition of {dataset}/{split}: classes and groups")
        part = catalog_partition.partition_images(con, dataset, params, split).partition
        classes = catalog_partition.class_summary(part)
        groups = catalog_partition.group_summary(part)
        del part  # its per-image arrays go before the cells' own peak
        progress(0.5, f"partition of {dataset}/{split}: cells")
        cells = catalog_partition.cell_summary(con, dataset, params, split)
    return PartitionTables(
        cells=cells,
        classes=classes,
        groups=groups,
        warnings=list(dict.fromkeys(str(w.message) for w in caught)),
    )


def street_squares(
    east: np.ndarray,
    north: np.ndarray,
    zone: UTMZone,
    weights: np.ndarray | None = None,
    side_m: float = BASE_SIDE_M,
    limit: int = MAX_BASE_POINTS,
) -> StreetSquares:
    """Points (each `weights` images, 1 by default) merged into squares of side_m metres,
    the side doubled until at most `limit` squares hold images."""
    east = np.asarray(east, dtype=np.float64)
    north = np.asarray(north, dtype=np.float64)
    weights = np.ones(len(east)) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = np.isfinite(east) & np.isfinite(north)
    east, north, weights = east[keep], north[keep], weights[keep]
    side = float(side_m)
    while True:
        keys = np.stack([np.floor(east / side), np.floor(north / side)], axis=1).astype(np.int64)
        squares, inverse = np.unique(keys, axis=0, return_inverse=True)
        if len(squares) <= limit:
            break
        side *= 2
    images = np.bincount(inverse.ravel(), weights=weights, minlength=len(squares))
    return StreetSquares(
        (squares[:, 0] + 0.5) * side, (squares[:, 1] + 0.5) * side, images, side, zone
    )


def dataset_street_squares(
    con: duckdb.DuckDBPyConnection, dataset: str, limit: int = MAX_BASE_POINTS
) -> StreetSquares:
    """A catalogued dataset's images (every split) as street squares: counted per BASE_SIDE_M
    square by the catalog, then merged until at most `limit` remain."""
    zone = dataset_zone(con, dataset)
    fine = app_queries.images_per_square(con, dataset, BASE_SIDE_M)
    east = (fine["sq_e"].to_numpy(np.float64) + 0.5) * BASE_SIDE_M
    north = (fine["sq_n"].to_numpy(np.float64) + 0.5) * BASE_SIDE_M
    return street_squares(east, north, zone, fine["images"].to_numpy(), BASE_SIDE_M, limit)


# --- storing and reading --------------------------------------------------------------------


def _has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(run(con, "SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [table]))


def _param_values(params: PartitionParams) -> list:
    return [float(params.M), float(params.alpha), int(params.N), int(params.L),
            int(params.min_images_per_class), params.group_order]  # fmt: skip


def _create_tables(con: duckdb.DuckDBPyConnection) -> None:
    run(
        con,
        """CREATE TABLE IF NOT EXISTS map_views (
            view_id BIGINT, dataset VARCHAR, split VARCHAR, M DOUBLE, alpha DOUBLE, N BIGINT,
            L BIGINT, min_images_per_class BIGINT, group_order VARCHAR, warnings VARCHAR)""",
    )
    run(
        con,
        """CREATE TABLE IF NOT EXISTS map_street_squares (
            dataset VARCHAR, side_m DOUBLE, sq BIGINT, east DOUBLE, north DOUBLE, images DOUBLE)""",
    )


def has_views(con: duckdb.DuckDBPyConnection, dataset: str) -> bool:
    """Whether the dataset's map views are stored (the default partition and street squares)."""
    return _has_table(con, "map_views") and bool(
        run(con, "SELECT 1 FROM map_street_squares WHERE dataset = ? LIMIT 1", [dataset])
    )


def _delete_views(con: duckdb.DuckDBPyConnection, where: str, args: list) -> None:
    """Delete the rows of map_views matching `where`, and their frames."""
    ids = f"SELECT view_id FROM map_views WHERE {where}"
    for table in FRAME_TABLES.values():
        if _has_table(con, table):
            run(con, f"DELETE FROM {table} WHERE view_id IN ({ids})", args)
    run(con, f"DELETE FROM map_views WHERE {where}", args)


def forget(con: duckdb.DuckDBPyConnection, dataset: str) -> None:
    """Drop the dataset's stored views (its images are about to change)."""
    if not _has_table(con, "map_views"):
        return
    _delete_views(con, "dataset = ?", [dataset])
    run(con, "DELETE FROM map_street_squares WHERE dataset = ?", [dataset])


def _append(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Append the frame's rows to `table`, created from the frame if absent."""
    con.register("_map_frame", frame)
    try:
        if _has_table(con, table):
            run(con, f"INSERT INTO {table} SELECT * FROM _map_frame")
        else:
            run(con, f"CREATE TABLE {table} AS SELECT * FROM _map_frame")
    finally:
        con.unregister("_map_frame")


def store_partition(
    con: duckdb.DuckDBPyConnection, dataset: str, split: str, params: PartitionParams, tables
) -> None:
    """Keep one split's partition tables for these parameters (replacing a stored one)."""
    _create_tables(con)
    values = _param_values(params)
    _delete_views(con, _VIEW_WHERE, [dataset, split, *values])
    view_id = run(con, "SELECT coalesce(max(view_id), 0) + 1 FROM map_views")[0][0]
    run(con, "INSERT INTO map_views VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [view_id, dataset, split, *values, json.dumps(tables.warnings)])  # fmt: skip
    for name, table in FRAME_TABLES.items():
        tagged = getattr(tables, name).reset_index(drop=True)
        tagged.insert(0, "view_id", view_id)
        tagged.insert(1, "frame_row", np.arange(len(tagged), dtype=np.int64))
        _append(con, table, tagged)


def stored_partition(
    con: duckdb.DuckDBPyConnection, dataset: str, split: str, params: PartitionParams
) -> PartitionTables | None:
    """The stored partition tables of one split for exactly these parameters, else None."""
    if not _has_table(con, "map_views"):
        return None  # a catalog from before stored views, or never ingested by the command
    found = run(
        con,
        f"SELECT view_id, warnings FROM map_views WHERE {_VIEW_WHERE}",
        [dataset, split, *_param_values(params)],
    )
    if not found:
        return None
    view_id, stored_warnings = found[0]
    frames = {
        name: con.execute(
            f"SELECT * EXCLUDE (view_id, frame_row) FROM {table} WHERE view_id = ? "
            "ORDER BY frame_row",
            [view_id],
        ).df()
        for name, table in FRAME_TABLES.items()
    }
    return PartitionTables(**frames, warnings=json.loads(stored_warnings))


def store_street_squares(con: duckdb.DuckDBPyConnection, dataset: str, squares) -> None:
    _create_tables(con)
    run(con, "DELETE FROM map_street_squares WHERE dataset = ?", [dataset])
    frame = pd.DataFrame(
        {
            "dataset": dataset,
            "side_m": squares.side_m,
            "sq": np.arange(len(squares), dtype=np.int64),
            "east": squares.east,
            "north": squares.north,
            "images": np.asarray(squares.images, dtype=np.float64),
        }
    )
    _append(con, "map_street_squares", frame)


def stored_street_squares(con: duckdb.DuckDBPyConnection, dataset: str) -> StreetSquares | None:
    if not _has_table(con, "map_street_squares"):
        return None
    frame = con.execute(
        "SELECT side_m, east, north, images FROM map_street_squares WHERE dataset = ? ORDER BY sq",
        [dataset],
    ).df()
    if frame.empty:
        return None
    return StreetSquares(
        frame["east"].to_numpy(),
        frame["north"].to_numpy(),
        frame["images"].to_numpy(),
        float(frame["side_m"].iloc[0]),
        dataset_zone(con, dataset),
    )


def store_map_views(con: duckdb.DuckDBPyConnection, dataset: str, show_progress: bool = True):
    """Compute and keep the default partition of every split with headings and the street
    squares, in one transaction (an interruption keeps none: readers then compute)."""
    splits = app_queries.splits_with_headings(con, dataset)
    params = PartitionParams()
    with tqdm(total=len(splits) + 1, desc=f"map views of {dataset}", unit="step",
              disable=not show_progress) as bar:  # fmt: skip
        computed = {}
        for split in splits:
            bar.set_postfix_str(f"partition of {split}")
            try:
                computed[split] = partition_tables(con, dataset, params, split)
            except (KeyError, ValueError):
                pass  # images without a heading: the Map page says why when it computes
            bar.update()
        bar.set_postfix_str("street squares")
        squares = dataset_street_squares(con, dataset)
        bar.update()
    con.begin()
    try:
        for split, tables in computed.items():
            store_partition(con, dataset, split, params, tables)
        store_street_squares(con, dataset, squares)
        con.commit()
    except BaseException:
        con.rollback()
        raise


# --- command line ---------------------------------------------------------------------------


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m data_catalog.map_views",
        description="Store what the Map page draws first (the default partition of every split "
        "and the street squares) for catalogued datasets; the ingest does it by itself.",
    )
    parser.add_argument("--db", default=DEFAULT_DB, help=f"catalog file (default {DEFAULT_DB})")
    parser.add_argument("--dataset", help="one dataset (default: every catalogued dataset)")
    add_memory_limit_argument(parser)
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    with connect(args.db, memory_limit=args.memory_limit) as con:
        names = app_queries.dataset_names(con)
        if args.dataset is not None and args.dataset not in names:
            raise UserError(
                f"No dataset {args.dataset!r} in {args.db}: give one of {', '.join(names)} "
                "to --dataset, or ingest it first."
            )
        for name in [args.dataset] if args.dataset else names:
            start = time.perf_counter()
            store_map_views(con, name, show_progress=not args.no_progress)
            print(f"map views of {name} stored in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

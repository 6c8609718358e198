"""The catalog queries behind the app's pages: the app calls these and holds no SQL."""

from __future__ import annotations

import duckdb
import pandas as pd

from data_catalog.catalog import SPLITS, run


def dataset_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Datasets with images in the catalog, sorted."""
    return [row[0] for row in run(con, "SELECT DISTINCT dataset FROM images ORDER BY dataset")]


def dataset_root(con: duckdb.DuckDBPyConnection, dataset: str) -> str | None:
    """The folder a dataset was ingested from; None for a dataset not in the catalog."""
    rows = run(con, "SELECT root FROM datasets WHERE dataset = ?", [dataset])
    return rows[0][0] if rows else None


def splits_with_headings(con: duckdb.DuckDBPyConnection, dataset: str) -> list[str]:
    """The splits holding images with a heading (those the partition can use), in SPLITS order."""
    rows = run(
        con,
        "SELECT DISTINCT split FROM images WHERE dataset = ? AND heading IS NOT NULL",
        [dataset],
    )
    order = {split: i for i, split in enumerate(SPLITS)}
    return sorted((row[0] for row in rows), key=lambda s: (order.get(s, 99), s))


def images_per_square(con: duckdb.DuckDBPyConnection, dataset: str, side: float) -> pd.DataFrame:
    """Images per side x side metre square of UTM (sq_e, sq_n, images)."""
    return con.execute(
        """SELECT floor(utm_east / ?)::BIGINT AS sq_e, floor(utm_north / ?)::BIGINT AS sq_n,
                  count(*) AS images
           FROM images WHERE dataset = ? GROUP BY ALL""",
        [side, side, dataset],
    ).df()


def malformed_sample(
    con: duckdb.DuckDBPyConnection, dataset: str, limit: int
) -> tuple[int, pd.DataFrame]:
    """How many malformed names the dataset has, and the first `limit` (path, reason) by path."""
    total = run(con, "SELECT count(*) FROM malformed_names WHERE dataset = ?", [dataset])[0][0]
    sample = con.execute(
        "SELECT path, reason FROM malformed_names WHERE dataset = ? ORDER BY path LIMIT ?",
        [dataset, limit],
    ).df()
    return total, sample


def images_in_square(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    split: str,
    corner: tuple[float, float],
    side: float,
    limit: int,
) -> pd.DataFrame:
    """Images (path, heading, year) of one split in the square [e, e + side) x [n, n + side),
    by heading."""
    east, north = corner
    return con.execute(
        """SELECT path, heading, year FROM images
           WHERE dataset = ? AND split = ? AND utm_east >= ? AND utm_east < ?
             AND utm_north >= ? AND utm_north < ?
           ORDER BY heading, year, path LIMIT ?""",
        [dataset, split, east, east + side, north, north + side, limit],
    ).df()

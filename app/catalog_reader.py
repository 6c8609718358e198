"""Short read-only visits to the catalog, so that ingests and training can write beside the app.

DuckDB lets one process write while no other process holds the file, so the app never keeps
a connection open: each read opens, queries and closes. A missing or busy catalog becomes an
exception whose message is the sentence the page shows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from data_catalog import app_queries, catalog
from data_catalog.results import list_results

# Every page waits this long for a writer's lock before saying the catalog is busy; the
# command lines wait longer (catalog.DEFAULT_LOCK_WAIT_S) since nobody watches them.
APP_LOCK_WAIT_S = 3.0
INGEST_COMMAND = "python -m data_catalog.ingest DATASET_FOLDER --db {db} (or make demo-data)"

CatalogBusyError = catalog.CatalogBusyError


class CatalogMissingError(LookupError):
    """No catalog file (or no dataset in it); the message names the command that makes one."""


def catalog_fingerprint(path: str | os.PathLike) -> tuple[str, float, int]:
    """(path, mtime, size): changes when an ingest writes, so cached reads are refreshed."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return str(path), 0.0, 0
    return str(path), stat.st_mtime, stat.st_size


@contextmanager
def open_catalog(path: str | os.PathLike) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection for one read, closed afterwards."""
    path = Path(path)
    if not path.is_file():
        raise CatalogMissingError(
            f"No catalog at {path}: build one with " + INGEST_COMMAND.format(db=path) + "."
        )
    con = catalog.connect(path, read_only=True, wait_s=APP_LOCK_WAIT_S)
    try:
        yield con
    finally:
        con.close()


def dataset_names(path: str | os.PathLike) -> list[str]:
    """Datasets with images in the catalog; CatalogMissingError when there are none."""
    with open_catalog(path) as con:
        names = app_queries.dataset_names(con)
    if not names:
        raise CatalogMissingError(
            f"The catalog {path} holds no images yet: add a dataset with "
            + INGEST_COMMAND.format(db=path)
            + "."
        )
    return names


def dataset_root(con: duckdb.DuckDBPyConnection, dataset: str) -> Path:
    root = app_queries.dataset_root(con, dataset)
    if root is None:
        raise CatalogMissingError(f"dataset {dataset!r} is not in the catalog")
    return Path(root)


def dataset_splits(path: str | os.PathLike, dataset: str) -> list[str]:
    with open_catalog(path) as con:
        return app_queries.splits_with_headings(con, dataset)


def recorded_results(path: str | os.PathLike) -> pd.DataFrame:
    """The results the catalog records (data_catalog.results.list_results), newest first."""
    with open_catalog(path) as con:
        return list_results(con)

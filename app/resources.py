"""Everything the pages load once and share: catalog reads, partitions, runs, thumbnails.

The cache keys include a fingerprint of the files read (mtime, size), so an ingest or a
rebuilt index shows up on the next rerun without restarting the app.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pandas as pd
import streamlit as st

from app import catalog_reader, dataset_stats, map_layers, retrieval
from app.workspace import catalog_path, runs_dir, workspace_dir
from core.partition import PartitionParams


def catalog_file() -> Path:
    return catalog_path(workspace_dir())


def runs_folder() -> Path:
    return runs_dir(workspace_dir())


@st.cache_data(max_entries=16, show_spinner=False)
def _dataset_names(fingerprint: tuple) -> list[str]:
    return catalog_reader.dataset_names(fingerprint[0])


def dataset_names(path: Path) -> list[str]:
    return _dataset_names(catalog_reader.catalog_fingerprint(path))


def catalogued_datasets_or_stop() -> tuple[Path, list[str]]:
    """The catalog file and its datasets; without them the page names the command and stops."""
    catalog = catalog_file()
    try:
        return catalog, dataset_names(catalog)
    except (catalog_reader.CatalogMissingError, catalog_reader.CatalogBusyError) as error:
        st.info(str(error))
        st.stop()


@st.cache_data(max_entries=16, show_spinner=False)
def _dataset_splits(fingerprint: tuple, dataset: str) -> list[str]:
    return catalog_reader.dataset_splits(fingerprint[0], dataset)


def dataset_splits(path: Path, dataset: str) -> list[str]:
    return _dataset_splits(catalog_reader.catalog_fingerprint(path), dataset)


# A PartitionView of a city holds millions of rows: cache_resource shares it without the
# copy that cache_data makes on every read; the pages never modify it.
@st.cache_resource(max_entries=4, show_spinner="Computing the partition with core.partition…")
def _partition_view(
    fingerprint: tuple, dataset: str, params: tuple, split: str
) -> map_layers.PartitionView:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # compute_partition_view records them for the page
        partition_params = PartitionParams(*params)
    return map_layers.compute_partition_view(fingerprint[0], dataset, partition_params, split)


def partition_view(
    path: Path, dataset: str, params: PartitionParams, split: str
) -> map_layers.PartitionView:
    key = (params.M, params.alpha, params.N, params.L, params.min_images_per_class)
    return _partition_view(catalog_reader.catalog_fingerprint(path), dataset, key, split)


@st.cache_resource(max_entries=8, show_spinner="Reading catalog statistics…")
def _dataset_stats(fingerprint: tuple, dataset: str) -> dataset_stats.DatasetStats:
    return dataset_stats.compute_dataset_stats(fingerprint[0], dataset)


def dataset_statistics(path: Path, dataset: str) -> dataset_stats.DatasetStats:
    return _dataset_stats(catalog_reader.catalog_fingerprint(path), dataset)


@st.cache_data(max_entries=4, show_spinner=False)
def _recorded_results(fingerprint: tuple) -> pd.DataFrame:
    return catalog_reader.recorded_results(fingerprint[0])


def recorded_results(path: Path) -> pd.DataFrame:
    """The catalog's results table; CatalogMissingError or CatalogBusyError (a sentence)
    after the pages' short wait when it cannot be read now."""
    return _recorded_results(catalog_reader.catalog_fingerprint(path))


@st.cache_resource(max_entries=4, show_spinner="Loading the run's model and index…")
def _run_serving(run_dir: str, fingerprint: tuple) -> retrieval.RunServing:
    return retrieval.load_run_serving(run_dir)


def run_serving(run_dir: Path) -> retrieval.RunServing:
    """The run's model and index, loaded once; ServingError (a sentence) when it cannot serve."""
    return _run_serving(str(run_dir), retrieval.index_fingerprint(run_dir))


@st.cache_data(max_entries=4096, show_spinner=False)
def thumbnail_png(file: str, size: int = 160) -> bytes | None:
    """PNG bytes of a small copy of an image file (None when it cannot be read)."""
    image = retrieval.thumbnail(file, size)
    if image is None:
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()

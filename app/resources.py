"""Everything the pages load once and share: catalog reads, partitions, runs, thumbnails.

The cache keys include a fingerprint of the files read (mtime, size), so an ingest or a
rebuilt index shows up on the next rerun without restarting the app.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app import (
    catalog_reader,
    dataset_stats,
    descriptor_space,
    map_layers,
    retrieval,
    street_layer,
    uploads,
    view_state,
)
from app.workspace import catalog_path, runs_dir
from core.partition import PartitionParams
from data_catalog.runs import runs_with_model


def _on_catalog(cached: Callable) -> Callable:
    """cached(fingerprint, ...) called as (catalog path, ...): the fingerprint changes when an
    ingest writes, so the next read is fresh."""
    return lambda path, *args: cached(catalog_reader.catalog_fingerprint(path), *args)


def trained_runs_or_stop() -> tuple[Path, list[str]]:
    """The runs folder and its runs with a model; without any, the page says how to make one
    (a model, then its index) and stops."""
    folder = runs_dir()
    names = runs_with_model(folder)
    if not names:
        st.info(
            f"No trained run in {folder}: train one with python -m training.train "
            "--dataset_folder DATASET --save_dir NAME (or make demo-model), then build its index "
            "with python -m training.build_index --run_dir RUN --database_folder "
            "DATASET/test/database."
        )
        st.stop()
    return folder, names


@st.cache_data(max_entries=16, show_spinner=False)
def _dataset_names(fingerprint: tuple) -> list[str]:
    return catalog_reader.dataset_names(fingerprint[0])


dataset_names = _on_catalog(_dataset_names)


def catalogued_datasets_or_stop() -> tuple[Path, list[str]]:
    """The catalog file and its datasets; without them the page names the command and stops."""
    catalog = catalog_path()
    try:
        return catalog, dataset_names(catalog)
    except (catalog_reader.CatalogMissingError, catalog_reader.CatalogBusyError) as error:
        st.info(str(error))
        st.stop()


@st.cache_data(max_entries=16, show_spinner=False)
def _dataset_splits(fingerprint: tuple, dataset: str) -> list[str]:
    return catalog_reader.dataset_splits(fingerprint[0], dataset)


dataset_splits = _on_catalog(_dataset_splits)


PARTITIONS_KEPT = 4


@st.cache_resource
def _partition_views() -> tuple[dict, threading.Lock]:
    """The partition views computed by this server, newest last (a city's hold millions of
    rows: shared by every session without copies; the pages never modify them)."""
    return {}, threading.Lock()


def partition_view(
    path: Path, dataset: str, params: PartitionParams, split: str
) -> map_layers.PartitionView:
    """The Map page's partition: stored at ingest for the default parameters (drawn at once),
    else computed here under a progress bar and kept for the next reruns and sessions.

    Not st.cache_resource itself: a progress bar updated from inside a cached function
    cannot be replayed by Streamlit, and this one must show while a city computes."""
    key = (catalog_reader.catalog_fingerprint(path), dataset, astuple(params), split)
    views, lock = _partition_views()
    if key in views:
        return views[key]
    bar = None

    def progress(fraction: float, text: str) -> None:
        nonlocal bar
        if bar is None:
            bar = st.progress(0.0)
        bar.progress(fraction, text=f"Computing the {text} with core.partition…")

    view = map_layers.compute_partition_view(path, dataset, params, split, progress)
    if bar is not None:
        bar.empty()
    with lock:
        views[key] = view
        while len(views) > PARTITIONS_KEPT:
            del views[next(iter(views))]
    return view


@st.cache_resource(max_entries=8, show_spinner="Reading catalog statistics…")
def _dataset_stats(fingerprint: tuple, dataset: str) -> dataset_stats.DatasetStats:
    return dataset_stats.compute_dataset_stats(fingerprint[0], dataset)


dataset_statistics = _on_catalog(_dataset_stats)


@st.cache_data(max_entries=4, show_spinner=False)
def _recorded_results(fingerprint: tuple) -> pd.DataFrame:
    """The catalog's results table; CatalogMissingError or CatalogBusyError (a sentence)
    after the pages' short wait when it cannot be read now."""
    return catalog_reader.recorded_results(fingerprint[0])


recorded_results = _on_catalog(_recorded_results)


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


def thumbnail_grid(files, captions, size: int, width: int) -> int:
    """The thumbnails of the readable files in one grid (st.image); returns how many."""
    shown = [(thumbnail_png(str(f), size), str(c)) for f, c in zip(files, captions, strict=True)]
    shown = [(png, caption) for png, caption in shown if png is not None]
    if shown:
        st.image([png for png, _ in shown], caption=[c for _, c in shown], width=width)
    return len(shown)


def thumbnail_columns(columns, root: Path, tiles: list[tuple[str, str]], size: int) -> None:
    """Each (path under root, caption) as a thumbnail in its column, or its caption alone."""
    for column, (path, caption) in zip(columns, tiles, strict=False):
        png = thumbnail_png(str(root / path), size)
        if png is None:
            column.caption(f"{caption} (image not found)")
        else:
            column.image(png, caption=caption)


# --- the descriptor space -------------------------------------------------------------------


@st.cache_resource(max_entries=4, show_spinner="Reading a sample of the run's index…")
def _space_database(run_dir: str, fingerprint: tuple, size: int) -> descriptor_space.SpacePoints:
    serving = run_serving(Path(run_dir))
    rows = descriptor_space.sample_rows(serving.index.ntotal, size)
    return descriptor_space.database_points(serving, rows)


def space_database_points(run_dir: Path, size: int) -> descriptor_space.SpacePoints:
    """`size` database images of the run's index (sampled the same way every time)."""
    return _space_database(str(run_dir), retrieval.index_fingerprint(run_dir), size)


@st.cache_resource
def _extracted_queries() -> dict:
    """Query descriptors the app extracted, shared by every session; memory only, since the
    app never writes into run folders."""
    return {}


def extracted_queries(run_dir: Path, evaluation: str):
    return _extracted_queries().get(
        (str(run_dir), retrieval.index_fingerprint(run_dir), evaluation)
    )


def keep_extracted_queries(run_dir: Path, evaluation: str, descriptors) -> None:
    store = _extracted_queries()
    if len(store) >= 8:  # a few evaluations' worth (5,000 x 2,048 floats is 41 MB)
        store.pop(next(iter(store)))
    store[(str(run_dir), retrieval.index_fingerprint(run_dir), evaluation)] = descriptors


# A decoded upload (within app.uploads.BOUNDS: at most a few MB) is shared, not copied, by the
# reruns and sessions that send the same bytes; nothing modifies it.
@st.cache_resource(max_entries=2 * uploads.MAX_UPLOAD_FILES, show_spinner=False)
def _prepared_upload(name: str, digest: str, _data: bytes) -> uploads.PreparedUpload:
    return uploads.prepare_upload(_data, name)


def prepared_upload(name: str, data: bytes) -> uploads.PreparedUpload:
    """An upload decoded once per (name, bytes); ImageError when it is not a usable image."""
    return _prepared_upload(name, uploads.digest(data), data)


# Keyed by the run, its model and index files (rewritten: a new key) and the bytes' hash, so
# moving a slider reuses the descriptor; a [1, dim] float32 row is small, so many are kept.
@st.cache_data(max_entries=16 * uploads.MAX_UPLOAD_FILES, show_spinner=False)
def _upload_descriptor(
    run_dir: str, fingerprint: tuple, digest: str, _serving: retrieval.RunServing, _image
) -> np.ndarray:
    return retrieval.serving_descriptor(_serving, _image)


def upload_descriptor(
    run_dir: Path, serving: retrieval.RunServing, prepared: uploads.PreparedUpload
) -> np.ndarray:
    """The upload's query descriptor for one run, computed once per (run, file bytes)."""
    fingerprint = retrieval.index_fingerprint(run_dir)
    return _upload_descriptor(str(run_dir), fingerprint, prepared.digest, serving, prepared.image)


# --- the offline street layer (app.street_layer) ---------------------------------------------


@st.cache_resource(max_entries=8, show_spinner="Drawing the streets from the dataset's images…")
def _street_squares(fingerprint: tuple, dataset: str) -> street_layer.StreetSquares:
    return street_layer.catalog_street_squares(fingerprint[0], dataset)


street_squares = _on_catalog(_street_squares)


@st.cache_data(ttl=300, show_spinner=False)
def tiles_reachable() -> bool:
    """Whether the server reaches the map tiles' host; asked again after five minutes."""
    return street_layer.tiles_reachable()


def base_toggle(help_extra: str = "") -> str:
    """The sidebar's choice of when to draw the streets from the dataset's images (`base`)."""
    reachable = tiles_reachable()
    return view_state.choice(
        "Streets from the dataset's images",
        list(street_layer.BASE_MODES),
        "base",
        "auto",
        format_func=street_layer.BASE_MODES.get,
        help="A faint layer of the dataset's own image positions, so that streets show where "
        "no map tile loads. This server "
        + ("reaches" if reachable else "cannot reach")
        + " the map tiles' host, so 'when map tiles cannot load' "
        + ("leaves it off." if reachable else "draws it.")
        + help_extra,
    )


@st.cache_data(max_entries=16, show_spinner=False)
def _catalogued_dataset(fingerprint: tuple, folder: str | Path) -> str | None:
    """The catalogued dataset that holds `folder` (a test set, a run's database), else None."""
    try:
        return street_layer.dataset_of_folder(fingerprint[0], folder)
    except (catalog_reader.CatalogMissingError, catalog_reader.CatalogBusyError):
        return None


catalogued_dataset = _on_catalog(_catalogued_dataset)


def street_base_squares(path: Path, dataset: str | None, mode: str):
    """The street squares of a catalogued dataset when the toggle asks for them, else None."""
    if dataset is None or not street_layer.draw_base(mode, tiles_reachable()):
        return None
    try:
        return street_squares(path, dataset)
    except (catalog_reader.CatalogMissingError, catalog_reader.CatalogBusyError, KeyError):
        return None  # the map still draws, without its streets


def street_base_layer(path: Path, dataset: str | None, mode: str):
    """The faint street layer of a catalogued dataset when the toggle asks for it, else None."""
    squares = street_base_squares(path, dataset, mode)
    return None if squares is None else street_layer.base_layer(squares)

"""The Retrieve page's logic: a run's model and index, queries, top-k results and their map.

Loading (model_from_checkpoint + load_index with the manifest check) happens once per run in
app.resources; everything here is plain Python that tests call without Streamlit.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pydeck as pdk
import torch
from PIL import Image
from torch import nn

from app.map_layers import fit_zoom, light_deck, scatter_layer
from app.uploads import QUERY_MAX_SHORTER_SIDE, PreparedUpload, prepare_upload, upload_position
from core.descriptors import inference_transform
from core.geo import UTMZone, distances_m, utm_to_latlon
from core.images import ImageError, load_image
from core.index import (
    MANIFEST_FILE,
    IndexManifest,
    IndexMismatchError,
    load_index,
    paths_fingerprint,
)
from core.model import CheckpointError, model_from_checkpoint
from core.recall import DEFAULT_POSITIVE_DIST_THRESHOLD
from data_catalog import runs
from data_catalog.name_source import walk_images
from data_catalog.serving import ServingDatabase, ServingFilesError, read_serving_database

BUILD_INDEX_COMMAND = (
    "python -m training.build_index --run_dir {run} --database_folder DATASET/test/database"
)


class ServingError(LookupError):
    """A run that cannot serve queries; the message says why and which command fixes it."""


@dataclass
class RunServing:
    name: str
    model: nn.Module
    index: faiss.Index
    manifest: IndexManifest
    database: ServingDatabase


def index_fingerprint(run_dir: str | os.PathLike) -> tuple:
    """Changes whenever the model or the index is rewritten, so cached loads refresh."""
    files = [
        Path(run_dir) / runs.BEST_MODEL,
        Path(run_dir) / runs.INDEX_DIR / MANIFEST_FILE,
    ]
    return tuple((str(f), f.stat().st_mtime if f.exists() else 0.0) for f in files)


def load_run_serving(run_dir: str | os.PathLike) -> RunServing:
    """The run's model and its index, checked against each other and against the database."""
    run_dir = Path(run_dir)
    command = BUILD_INDEX_COMMAND.format(run=run_dir)
    if not (run_dir / runs.BEST_MODEL).is_file():
        raise ServingError(
            f"Run {run_dir.name} has no {runs.BEST_MODEL}; train it with python -m training.train."
        )
    if not (run_dir / runs.INDEX_DIR / MANIFEST_FILE).is_file():
        raise ServingError(
            f"Run {run_dir.name} has no retrieval index yet; build it with {command}."
        )
    try:
        model = model_from_checkpoint(run_dir / runs.BEST_MODEL).eval()
        database = read_serving_database(run_dir / runs.INDEX_DIR)
        index, manifest = load_index(
            run_dir / runs.INDEX_DIR,
            model=model,
            database_fingerprint=paths_fingerprint(database.paths),
        )
    except (CheckpointError, ServingFilesError) as error:
        raise ServingError(f"Run {run_dir.name} cannot serve queries: {error}.") from error
    except IndexMismatchError as error:
        raise ServingError(
            f"Run {run_dir.name}: the index does not match its model ({error}); rebuild it with "
            f"{command}."
        ) from error
    return RunServing(run_dir.name, model, index, manifest, database)


# --- queries --------------------------------------------------------------------------------


@dataclass
class Query:
    name: str
    image: Image.Image  # within app.uploads.BOUNDS
    position: tuple[float, float] | None  # UTM east, north in the database's zone
    position_source: str | None  # "EXIF GPS" or "SF-XL file name"
    fitted: str | None = None  # what was done to the photo to bring it within bounds
    position_notes: list[str] = field(default_factory=list)  # why a position was not used

    @property
    def notes(self) -> list[str]:
        return ([self.fitted] if self.fitted else []) + self.position_notes


def query_in_zone(prepared: PreparedUpload, zone: UTMZone) -> Query:
    """A decoded upload placed in a database's zone (decoding does not depend on the zone)."""
    where = upload_position(prepared, zone)
    return Query(
        prepared.name, prepared.image, where.position, where.source, prepared.fitted, where.notes
    )


def decode_query(data: bytes, name: str, zone: UTMZone) -> Query:
    """Decode an upload in memory (app.uploads); ImageError names the file and the problem."""
    return query_in_zone(prepare_upload(data, name), zone)


def test_query_files(database: ServingDatabase) -> list[Path]:
    """Queries of the test set the index was built on: the queries* folders beside database/."""
    parent = database.root.parent
    if not parent.is_dir():
        return []
    files: list[Path] = []
    for folder in sorted(parent.glob("queries*")):
        files += [folder / path for path in walk_images(folder)[0]]
    return files


# --- retrieval ------------------------------------------------------------------------------


def query_resize(image: Image.Image, resize: int | None) -> int | None:
    """The query's shorter side: the database's, or capped for speed when it kept native sizes."""
    if resize is None and min(image.size) > QUERY_MAX_SHORTER_SIDE:
        return QUERY_MAX_SHORTER_SIDE
    return resize


def query_descriptor(model: nn.Module, image: Image.Image, resize: int | None) -> np.ndarray:
    """[1, dim] descriptor of one query, resized like the database (or capped for speed)."""
    tensor = inference_transform(query_resize(image, resize))(image).unsqueeze(0)
    with torch.inference_mode():
        return model(tensor).float().numpy()


def serving_descriptor(serving: RunServing, image: Image.Image) -> np.ndarray:
    """The query descriptor of an image for one run (its model, its database's resize)."""
    return query_descriptor(serving.model, image, serving.database.resize_shorter_side)


@dataclass
class Retrieval:
    results: pd.DataFrame  # rank, path, file, similarity, east, north, distance_m, correct
    predicted: tuple[float, float]  # the top-1 database image's position
    top1_error_m: float | None
    seconds: float


def retrieve(
    serving: RunServing,
    query: Query,
    k: int = 10,
    threshold_m: float = DEFAULT_POSITIVE_DIST_THRESHOLD,
    descriptor: np.ndarray | None = None,
) -> Retrieval:
    """Top-k database images for one query; distances and marks when its position is known.
    `descriptor` is the query's (from a cache); computed here when not given."""
    start = time.perf_counter()
    if descriptor is None:
        descriptor = serving_descriptor(serving, query.image)
    distances, rows = serving.index.search(descriptor, min(k, serving.index.ntotal))
    rows, distances = rows[0], distances[0]
    valid = rows >= 0  # approximate indexes pad with -1 when they find fewer than k
    rows, distances = rows[valid], distances[valid]
    utm = serving.database.utm[rows]
    results = pd.DataFrame(
        {
            "rank": np.arange(1, len(rows) + 1),
            "path": [serving.database.paths[r] for r in rows],
            # Descriptors are L2-normalised: squared L2 distance d gives cosine 1 - d / 2.
            "similarity": 1.0 - distances.astype(np.float64) / 2.0,
            "east": utm[:, 0],
            "north": utm[:, 1],
        }
    )
    results["file"] = [str(serving.database.root / p) for p in results["path"]]
    top1_error = None
    if query.position is not None:
        qe, qn = query.position
        results["distance_m"] = distances_m(utm[:, 0], utm[:, 1], qe, qn)
        results["correct"] = results["distance_m"] <= threshold_m
        top1_error = float(results["distance_m"].iloc[0]) if len(results) else None
    predicted = (float(utm[0, 0]), float(utm[0, 1])) if len(utm) else (np.nan, np.nan)
    return Retrieval(results, predicted, top1_error, time.perf_counter() - start)


def thumbnail(file: str | os.PathLike, size: int = 160) -> Image.Image | None:
    """A small copy of a database image, or None when the file is gone or unreadable."""
    try:
        image = load_image(file)
    except ImageError:
        return None
    image.thumbnail((size, size))
    return image


# --- the map of one retrieval ---------------------------------------------------------------


def retrieval_deck(
    query: Query, retrieval: Retrieval, zone: UTMZone, base: pdk.Layer | None = None
) -> pdk.Deck:
    """Query (blue), results (green correct / red wrong / grey unknown), prediction (ring),
    over `base` when given (app.street_layer's faint streets, drawn first so it lies under)."""
    results = retrieval.results
    lat, lon = utm_to_latlon(results["east"].to_numpy(), results["north"].to_numpy(), zone)
    if "correct" in results:
        colours = [[30, 160, 60, 220] if ok else [215, 40, 40, 220] for ok in results["correct"]]
    else:
        colours = [[120, 120, 120, 220]] * len(results)
    points = pd.DataFrame(
        {
            "lon": lon,
            "lat": lat,
            "colour": colours,
            "tip": [
                f"rank {r.rank}: similarity {r.similarity:.3f}"
                + (f", {r.distance_m:.0f} m from the query" if "distance_m" in results else "")
                for r in results.itertuples()
            ],
        }
    )
    layers = [] if base is None else [base]
    layers.append(
        scatter_layer(
            points,
            "results",
            get_fill_color="colour",
            get_radius=4,
            radius_min_pixels=5,
            pickable=True,
        )
    )
    plat, plon = utm_to_latlon([retrieval.predicted[0]], [retrieval.predicted[1]], zone)
    layers.append(
        scatter_layer(
            pd.DataFrame({"lon": plon, "lat": plat, "tip": ["predicted position (top-1)"]}),
            "prediction",
            get_line_color=[255, 140, 0, 255],
            stroked=True,
            filled=False,
            line_width_min_pixels=3,
            get_radius=12,
            radius_min_pixels=12,
            pickable=True,
        )
    )
    centre_lat, centre_lon = float(plat[0]), float(plon[0])
    if query.position is not None:
        qlat, qlon = utm_to_latlon([query.position[0]], [query.position[1]], zone)
        layers.append(
            scatter_layer(
                pd.DataFrame(
                    {"lon": qlon, "lat": qlat, "tip": [f"query ({query.position_source})"]}
                ),
                "query",
                get_fill_color=[30, 90, 220, 240],
                get_radius=6,
                radius_min_pixels=8,
                pickable=True,
            )
        )
        centre_lat, centre_lon = float(qlat[0]), float(qlon[0])
    spread = max(float(np.ptp(lat)) if len(lat) else 0.0, float(np.ptp(lon)) if len(lon) else 0.0)
    extent = 2.2 * max(spread, 5e-4)  # the results around the query (or the prediction)
    zoom = fit_zoom(extent, extent, centre_lat, 460, 300)
    return light_deck(layers, pdk.ViewState(latitude=centre_lat, longitude=centre_lon, zoom=zoom))

"""The Descriptor space page's logic: a run's descriptors sampled, projected to 2-D and coloured.

Database descriptors come from the run's retrieval index (RUN/index, built by
training.build_index): faiss gives back any row of it, so a sample of 20,000 of 2.8M
images needs no image read and no network. Query descriptors come from an evaluation
saved with `training.eval --save_descriptors`, or are extracted here (in memory only: the
app never writes into run folders).

The projection is PCA fitted on the database sample (numpy): two axes of a few hundred
dimensions are a coarse view, but they are linear, so distances along them mean the same
everywhere and queries project with the same fit. t-SNE and UMAP are not offered (their
install and their time at 20,000 points are in the README).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pydeck as pdk

from app.image_places import name_details
from app.map_layers import fit_zoom, light_deck, scatter_layer
from app.space_colours import Colouring, colour_scale
from core.descriptors import ImagePathsDataset, extract_descriptors, inference_transform
from core.geo import UTMZone, utm_to_latlon
from core.partition import PartitionParams
from data_catalog import runs

DEFAULT_POINTS = 20_000
MAX_QUERY_POINTS = 5_000
# Queries the app extracts itself (sampled): at SF-XL's native size a CPU takes ~1-2 s each.
MAX_EXTRACTED_QUERIES = 200
SAVED_QUERIES = ("queries_descriptors.npy", "queries_paths.txt")  # training.eval's names


@dataclass
class SpacePoints:
    """Images drawn in the space: descriptors and what their names say."""

    kind: str  # "database" or "query"
    files: list[str]  # absolute paths, for thumbnails
    descriptors: np.ndarray  # [n, dim] float32
    east: np.ndarray  # UTM metres (NaN when the name has none)
    north: np.ndarray
    heading: np.ndarray  # degrees, NaN when the name has none
    year: np.ndarray  # -1 when the name has none

    def __len__(self) -> int:
        return len(self.files)


def describe(points: SpacePoints, row: int) -> str:
    """A short caption of one image: its kind, year and heading where the name says."""
    parts = [points.kind]
    if points.year[row] >= 0:
        parts.append(str(points.year[row]))
    if np.isfinite(points.heading[row]):
        parts.append(f"{points.heading[row]:.0f}°")
    return " · ".join(parts)


def sample_rows(count: int, size: int = DEFAULT_POINTS, seed: int = 0) -> np.ndarray:
    """`size` distinct rows of `count` (all of them when fewer), sorted; the same every time."""
    if count <= size:
        return np.arange(count, dtype=np.int64)
    rows = np.random.default_rng(seed).choice(count, size, replace=False)
    return np.sort(rows).astype(np.int64)


def index_descriptors(index: faiss.Index, rows: np.ndarray) -> np.ndarray:
    """Rows of a faiss index as descriptors: exact for flat and HNSW, decoded (fp16 or PQ
    codes, so approximate) for the compressed types."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
        ivf.make_direct_map()  # inverted lists keep no row -> list map until asked
    return index.reconstruct_batch(np.ascontiguousarray(rows, dtype=np.int64)).astype(np.float32)


def name_fields(paths: list[str]) -> dict[str, np.ndarray]:
    """east, north, heading, year of each path from its SF-XL name (NaN / -1 if malformed)."""
    details = name_details(paths)
    fields = {key: details[key].to_numpy(np.float64) for key in ("east", "north", "heading")}
    return {**fields, "year": details["year"].to_numpy(np.int64)}


def database_points(serving, rows: np.ndarray) -> SpacePoints:
    """The sampled rows of a run's index (app.retrieval.RunServing) with their names' fields."""
    database = serving.database
    paths = [database.paths[r] for r in rows.tolist()]
    fields = name_fields(paths)
    fields["east"], fields["north"] = database.utm[rows, 0], database.utm[rows, 1]
    files = [str(database.root / p) for p in paths]
    return SpacePoints("database", files, index_descriptors(serving.index, rows), **fields)


# --- queries of an evaluation ---------------------------------------------------------------


def evaluation_queries(evaluation: Path) -> list[str]:
    """The queries of an evaluation (relative to its test set), as its predictions list them."""
    file = runs.predictions_file(evaluation)
    if file is None:
        return []
    table = pd.read_csv(file, usecols=["query"])
    return table["query"].drop_duplicates().tolist()


def evaluations_of(run_dir: Path, test_set_name: str) -> list[str]:
    """Evaluation folders of the run on the test set the index was built from."""
    names = []
    for results_file in runs.results_files(run_dir):
        results = runs.read_results(results_file) or {}
        if Path(str(results.get("test_set", ""))).name == test_set_name:
            if runs.predictions_file(results_file.parent) is not None:
                names.append(results_file.parent.name)
    return names


def saved_query_descriptors(evaluation: Path) -> tuple[list[str], np.ndarray] | None:
    """(paths, descriptors) that `training.eval --save_descriptors` kept, or None."""
    descriptors_file, paths_file = (evaluation / name for name in SAVED_QUERIES)
    if not (descriptors_file.is_file() and paths_file.is_file()):
        return None
    paths = paths_file.read_text().splitlines()
    descriptors = np.load(descriptors_file, mmap_mode="r", allow_pickle=False)
    if descriptors.ndim != 2 or len(descriptors) != len(paths):
        return None
    return paths, descriptors


def extract_query_descriptors(
    model,
    files: list[str],
    resize: int | None,
    on_progress: Callable[[float], None] | None = None,
    chunk: int = 64,
) -> np.ndarray:
    """Descriptors of image files, chunk by chunk so a progress bar can follow; rows of
    unreadable images stay NaN."""
    output = None
    for start in range(0, len(files), chunk):
        dataset = ImagePathsDataset(
            files[start : start + chunk], inference_transform(resize), skip_unreadable=True
        )
        try:
            part = extract_descriptors(model, dataset, progress=False)
        except ValueError:  # no image of this chunk could be read
            part = None
        if part is not None:
            if output is None:
                output = np.full((len(files), part.shape[1]), np.nan, np.float32)
            output[start : start + len(part)] = part
        if on_progress is not None:
            on_progress(min(1.0, (start + chunk) / len(files)))
    if output is None:
        raise ValueError(f"none of the {len(files)} query images could be read")
    return output


def query_points(root: Path, paths: list[str], descriptors: np.ndarray) -> SpacePoints:
    """Queries (paths relative to the test set `root`), leaving out unreadable ones (NaN)."""
    keep = np.flatnonzero(~np.isnan(descriptors).any(axis=1))
    paths = [paths[i] for i in keep.tolist()]
    fields = name_fields(paths)
    files = [str(root / p) for p in paths]
    return SpacePoints("query", files, np.asarray(descriptors[keep], dtype=np.float32), **fields)


# --- projection -----------------------------------------------------------------------------


@dataclass
class Projection:
    mean: np.ndarray  # [dim]
    axes: np.ndarray  # [dim, 2] the two principal directions
    explained: np.ndarray  # [2] share of the variance along each

    def __call__(self, descriptors: np.ndarray) -> np.ndarray:
        return (np.asarray(descriptors, dtype=np.float32) - self.mean) @ self.axes


def fit_pca(descriptors: np.ndarray) -> Projection:
    """The two principal axes of the descriptors (eigenvectors of their covariance)."""
    data = np.asarray(descriptors, dtype=np.float32)
    mean = data.mean(axis=0, dtype=np.float64).astype(np.float32)
    centred = data - mean
    # float32 products (sgemm) are 3-4x faster than float64 here; eigh itself runs in float64.
    covariance = (centred.T @ centred).astype(np.float64) / max(len(data) - 1, 1)
    values, vectors = np.linalg.eigh(covariance)  # ascending
    order = np.argsort(values)[::-1][:2]
    axes = vectors[:, order].astype(np.float32)
    # eigh's signs are arbitrary: point each axis at its largest entry, so refits agree.
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), [0, 1]])
    total = values.sum()
    explained = values[order] / total if total > 0 else np.zeros(2)
    return Projection(mean, axes, explained)


# --- the figure and the selection -----------------------------------------------------------


def space_figure(
    traces: list[tuple[SpacePoints, np.ndarray, Colouring]], projection: Projection
) -> go.Figure:
    """One WebGL scatter per kind (database dots, query crosses). Every per-point array is
    numeric (sent as typed-array bytes): position, colour code, and what the hover shows."""
    figure = go.Figure()
    for points, xy, colouring in traces:
        query = points.kind == "query"
        hover = np.stack(
            [points.east, points.north, points.heading, points.year.astype(float)], axis=1
        )
        figure.add_trace(
            go.Scattergl(
                x=xy[:, 0].astype(np.float32),
                y=xy[:, 1].astype(np.float32),
                mode="markers",
                name=f"{points.kind} ({len(points):,})",
                marker={
                    "color": colouring.codes.astype(np.int16),
                    "colorscale": colour_scale(colouring.palette),
                    "cmin": -1.5,
                    "cmax": len(colouring.palette) - 0.5,
                    "size": 7 if query else 4,
                    "symbol": "x" if query else "circle",
                    "opacity": 0.9 if query else 0.7,
                },
                customdata=hover.astype(np.float32),
                hovertemplate=(
                    "%{customdata[0]:.0f} E, %{customdata[1]:.0f} N<br>heading "
                    "%{customdata[2]:.0f}°, year %{customdata[3]}<extra>" + points.kind + "</extra>"
                ),
            )
        )
    share = projection.explained * 100
    figure.update_layout(
        height=620,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        dragmode="select",  # a box; the lasso is one click away in the mode bar
        xaxis_title=f"PCA 1 ({share[0]:.1f}% of the variance)",
        yaxis_title=f"PCA 2 ({share[1]:.1f}% of the variance)",
        legend={"orientation": "h", "y": 1.06},
    )
    return figure


def selected(event, traces: list[SpacePoints]) -> list[tuple[SpacePoints, int]]:
    """(points, row) of each point a box or lasso selected (st.plotly_chart's event)."""
    chosen = []
    selection = getattr(event, "selection", None) or {}
    for point in selection.get("points", []) if isinstance(selection, dict) else []:
        curve, row = point.get("curve_number"), point.get("point_index")
        if isinstance(curve, int) and isinstance(row, int) and 0 <= curve < len(traces):
            if 0 <= row < len(traces[curve]):
                chosen.append((traces[curve], row))
    return chosen


def selection_deck(chosen: list[tuple[SpacePoints, int]], zone: UTMZone) -> pdk.Deck | None:
    """Where the selected images are: database blue, queries orange."""
    rows = [
        (points.east[row], points.north[row], points.kind)
        for points, row in chosen
        if np.isfinite(points.east[row])
    ]
    if not rows:
        return None
    east, north, kinds = zip(*rows, strict=True)
    lat, lon = utm_to_latlon(np.array(east), np.array(north), zone)
    data = pd.DataFrame(
        {
            "lon": lon,
            "lat": lat,
            "colour": [
                [30, 90, 220, 200] if k == "database" else [240, 130, 0, 230] for k in kinds
            ],
            "tip": list(kinds),
        }
    )
    layer = scatter_layer(
        data, "selection", get_fill_color="colour", get_radius=5, radius_min_pixels=4, pickable=True
    )
    spread = max(float(np.ptp(lat)), float(np.ptp(lon)), 5e-4) * 1.3
    centre_lat, centre_lon = float(np.mean(lat)), float(np.mean(lon))
    zoom = fit_zoom(spread, spread, centre_lat)
    return light_deck([layer], pdk.ViewState(latitude=centre_lat, longitude=centre_lon, zoom=zoom))


def run_partition(run_dir: Path) -> tuple[PartitionParams, str]:
    """The partition the run trained with (args.json, else an evaluation's recorded flags),
    and where it came from; the defaults when neither says."""
    sources = [(runs.read_args(run_dir), runs.ARGS)]
    for results_file in runs.results_files(run_dir):
        recorded = (runs.read_results(results_file) or {}).get("args")
        source = f"{results_file.parent.name}/{runs.RESULTS}"
        sources.append((recorded if isinstance(recorded, dict) else {}, source))
    for args, source in sources:
        if all(key in args for key in ("M", "alpha", "N", "L")):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the Map page reports them
                    params = PartitionParams(args["M"], args["alpha"], args["N"], args["L"])
            except (TypeError, ValueError):
                continue
            return params, f"the run's {source}"
    return PartitionParams(), "the defaults (the run records no partition flags)"

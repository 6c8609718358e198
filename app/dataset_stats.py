"""The Dataset page's logic: catalog statistics as plotly figures and a pydeck coverage map.

Everything is aggregated in DuckDB (or from the cached cell summary), so what reaches the
browser is a few hundred bars and at most MAX_COVERAGE_SQUARES squares, whatever the size of
the catalog.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import pydeck as pdk

from app.catalog_reader import open_catalog
from app.map_layers import fit_zoom, light_deck, polygon_layer, square_rings
from core.geo import UTMZone
from data_catalog import app_queries, catalog, catalog_partition

MAX_COVERAGE_SQUARES = 10_000
COVERAGE_START_M = 50.0  # finest coverage square; doubled until few enough squares remain
MALFORMED_ROWS_SHOWN = 1_000


@dataclass
class DatasetStats:
    dataset: str
    zone: UTMZone
    splits: pd.DataFrame  # split, subset, images
    years: pd.DataFrame  # year, split, subset, images, panoramas
    coverage: pd.DataFrame  # sq_e, sq_n, images (squares of coverage_side_m)
    coverage_side_m: float
    malformed: pd.DataFrame  # path, reason (first MALFORMED_ROWS_SHOWN)
    malformed_total: int


def _coverage(con, dataset: str) -> tuple[pd.DataFrame, float]:
    """Images per square, with the square doubled until at most MAX_COVERAGE_SQUARES."""
    side = COVERAGE_START_M
    while True:
        squares = app_queries.images_per_square(con, dataset, side)
        if len(squares) <= MAX_COVERAGE_SQUARES:
            return squares, side
        side *= 2


def compute_dataset_stats(catalog_path: str | os.PathLike, dataset: str) -> DatasetStats:
    with open_catalog(catalog_path) as con:
        zone = catalog.dataset_zone(con, dataset)
        datasets = catalog.list_datasets(con)
        splits = datasets[datasets["dataset"] == dataset][["split", "subset", "images"]]
        years = catalog.images_per_year(con, dataset)
        coverage, side = _coverage(con, dataset)
        total, malformed = app_queries.malformed_sample(con, dataset, MALFORMED_ROWS_SHOWN)
    return DatasetStats(
        dataset, zone, splits.reset_index(drop=True), years, coverage, side, malformed, total
    )


def splits_figure(stats: DatasetStats) -> go.Figure:
    frame = stats.splits.assign(subset=stats.splits["subset"].replace("", "(all)"))
    return px.bar(
        frame, x="split", y="images", color="subset", barmode="group", text="images",
        title="Images per split and subset", height=380,
    )  # fmt: skip


def panoramas_per_cell_figure(cells: pd.DataFrame, M: float) -> go.Figure:
    """Supplementary Fig. 1: how many cells hold k panoramas, on a log scale."""
    counts = catalog_partition.panoramas_per_cell(cells)
    figure = px.bar(
        counts, x="panoramas", y="cells", log_y=True,
        title=f"Panoramas per {M:g} m cell (log scale)",
        labels={"panoramas": "panoramas in the cell", "cells": "cells"},
    )  # fmt: skip
    figure.update_layout(height=380, bargap=0.05)
    return figure


def panoramas_per_year_figure(stats: DatasetStats) -> go.Figure:
    """Fig. 2: panoramas per year, stacked by split."""
    years = stats.years.dropna(subset=["year"])
    per_year = years.groupby(["year", "split"], as_index=False)["panoramas"].sum()
    per_year["year"] = per_year["year"].astype(int).astype(str)
    return px.bar(
        per_year, x="year", y="panoramas", color="split", title="Panoramas per year", height=380
    )


def coverage_deck(stats: DatasetStats) -> pdk.Deck:
    squares = stats.coverage
    side = stats.coverage_side_m
    rings = square_rings(squares["sq_e"] * side, squares["sq_n"] * side, side, stats.zone)
    weight = np.log1p(squares["images"].to_numpy(np.float64))
    weight = weight / max(float(weight.max()) if len(weight) else 1.0, 1.0)
    colours = [[int(30 + 200 * w), int(120 - 60 * w), int(200 - 150 * w), 170] for w in weight]
    tips = pd.DataFrame(
        {"tip": [f"{n} images in this {side:g} m square" for n in squares["images"]]}
    )
    lon, lat = rings[..., 0], rings[..., 1]
    centre = float(lat.mean()) if lat.size else 0.0
    zoom = fit_zoom(float(np.ptp(lon)), float(np.ptp(lat)), centre, 560, 340) if lon.size else 1.0
    view = pdk.ViewState(
        latitude=centre, longitude=float(lon.mean()) if lon.size else 0.0, zoom=zoom
    )
    layer = polygon_layer(rings, colours, tips, "coverage", stroked=False, pickable=True)
    return light_deck([layer], view)


def figure_payload_bytes(figure: go.Figure) -> int:
    """Bytes of JSON that st.plotly_chart sends for this figure."""
    return len(figure.to_json().encode())

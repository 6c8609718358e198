"""The Map page's logic: the partition of a dataset as pydeck layers, without Streamlit.

Cells are drawn as their true M x M UTM squares (corners converted with core.geo) coloured
by their (u, v) = (e mod N, n mod N), and each kept class as a wedge spanning its alpha
degrees of heading, coloured by its group. A city holds millions of cells, so above
MAX_SHAPES the cells are merged on the server into coarser blocks of factor x factor cells
and only the blocks are sent; clicking a block focuses the map on it at full resolution.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pydeck as pdk
from pydeck.bindings.json_tools import default_serialize

from app.catalog_reader import dataset_root, open_catalog
from core.geo import UTMZone, utm_to_latlon
from core.partition import PartitionParams, group_keys, heading_class
from data_catalog import app_queries, catalog, map_views

# Polygons per layer sent to the browser: ~15k cells and ~15k wedges stay under 20 MB of
# JSON together (benchmarks/app_scale.py measures it).
MAX_SHAPES = 15_000
WEDGE_RADIUS = 0.45  # of the cell side, so wedges of neighbouring cells never touch
WEDGE_ARC_POINTS = 4
COORD_DECIMALS = 6  # 0.1 m of latitude: plenty, and it keeps the JSON short
BASEMAP = "light"  # Carto's Positron through pydeck: no token needed
TOOLTIP = {"text": "{tip}"}  # each object's `tip` column

# Qualitative colours (Tableau 20 without its greys), cycled over (u, v) cells and groups.
PALETTE = np.array(
    [
        [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
        [140, 86, 75], [227, 119, 194], [188, 189, 34], [23, 190, 207], [174, 199, 232],
        [255, 187, 120], [152, 223, 138], [255, 152, 150], [197, 176, 213], [196, 156, 148],
        [247, 182, 210], [219, 219, 141], [158, 218, 229],
    ],
    dtype=np.int64,
)  # fmt: skip


class CompactDeck(pdk.Deck):
    """A Deck whose JSON (what st.pydeck_chart sends) has no indentation: pydeck indents by
    two spaces, which more than doubles the bytes of a map with thousands of polygons."""

    def to_json(self) -> str:
        return json.dumps(self, sort_keys=True, default=default_serialize, separators=(",", ":"))


def scatter_layer(data: pd.DataFrame, layer_id: str, **style) -> pdk.Layer:
    """A ScatterplotLayer of the data's lon and lat columns."""
    return pdk.Layer(
        "ScatterplotLayer", data=data, id=layer_id, get_position=["lon", "lat"], **style
    )


def light_deck(layers: list, view: pdk.ViewState, tooltip=TOOLTIP) -> CompactDeck:
    """A CompactDeck over Carto's light basemap (no token needed)."""
    return CompactDeck(
        layers=layers,
        initial_view_state=view,
        map_provider="carto",
        map_style=BASEMAP,
        tooltip=tooltip,
    )


@dataclass
class PartitionView:
    """Everything the Map page draws, computed once per (catalog, dataset, split, params)."""

    dataset: str
    split: str
    root: Path
    params: PartitionParams
    zone: UTMZone
    cells: pd.DataFrame  # catalog_partition.cell_summary
    classes: pd.DataFrame  # catalog_partition.class_summary
    groups: pd.DataFrame  # catalog_partition.group_summary
    warnings: list[str] = field(default_factory=list)


def compute_partition_view(
    catalog_path: str | os.PathLike,
    dataset: str,
    params: PartitionParams,
    split: str = "train",
    progress: map_views.Progress | None = None,
) -> PartitionView:
    """Cells, classes and groups of one split: those stored at ingest for these parameters
    (data_catalog.map_views), else computed by core.partition through the catalog."""
    with open_catalog(catalog_path) as con:
        zone = catalog.dataset_zone(con, dataset)
        root = dataset_root(con, dataset)
        tables = map_views.stored_partition(con, dataset, split, params)
        if tables is None:
            tables = map_views.partition_tables(con, dataset, params, split, progress)
    return PartitionView(
        dataset=dataset,
        split=split,
        root=root,
        params=params,
        zone=zone,
        cells=tables.cells,
        classes=tables.classes,
        groups=tables.groups,
        warnings=tables.warnings,
    )


def group_label(groups: pd.DataFrame, rank: int) -> str:
    row = groups.iloc[rank]
    return f"G{row.u}{row.v}{row.w} (rank {rank}: {row.classes} classes, {row.images} images)"


# --- geometry -------------------------------------------------------------------------------


def _to_lonlat(east: np.ndarray, north: np.ndarray, zone: UTMZone) -> np.ndarray:
    """[..., 2] lon/lat of UTM points of any shape, rounded for the browser."""
    shape = east.shape
    lat, lon = utm_to_latlon(east.ravel(), north.ravel(), zone)
    points = np.stack([lon, lat], axis=-1).reshape(*shape, 2)
    return np.round(points, COORD_DECIMALS)


def square_rings(e0: np.ndarray, n0: np.ndarray, side: float, zone: UTMZone) -> np.ndarray:
    """[count, 5, 2] closed lon/lat rings of the UTM squares with south-west corners e0, n0."""
    e0 = np.asarray(e0, dtype=np.float64)[:, None]
    n0 = np.asarray(n0, dtype=np.float64)[:, None]
    east = e0 + np.array([0.0, side, side, 0.0, 0.0])
    north = n0 + np.array([0.0, 0.0, side, side, 0.0])
    return _to_lonlat(east, north, zone)


def wedge_rings(classes: pd.DataFrame, params: PartitionParams, zone: UTMZone) -> np.ndarray:
    """[count, WEDGE_ARC_POINTS + 2, 2] wedges from each class's cell centre over its headings.

    Headings are degrees clockwise from north, so a direction is (sin, cos) in (east, north).
    """
    centre_e = (classes["cell_e"].to_numpy(np.float64) + 0.5) * params.M
    centre_n = (classes["cell_n"].to_numpy(np.float64) + 0.5) * params.M
    start = classes["heading_class"].to_numpy(np.float64) * params.alpha
    steps = np.linspace(0.0, 1.0, WEDGE_ARC_POINTS)
    angles = np.radians(start[:, None] + steps[None, :] * min(params.alpha, 360.0))
    radius = WEDGE_RADIUS * params.M

    def ring(centre: np.ndarray, arc: np.ndarray) -> np.ndarray:  # centre, arc, centre
        return np.concatenate([centre[:, None], centre[:, None] + arc, centre[:, None]], axis=1)

    return _to_lonlat(
        ring(centre_e, radius * np.sin(angles)), ring(centre_n, radius * np.cos(angles)), zone
    )


# --- what to draw ---------------------------------------------------------------------------


def aggregation_factor(cells: pd.DataFrame, limit: int = MAX_SHAPES) -> int:
    """Smallest power of two f such that f x f blocks of cells number at most `limit`."""
    factor = 1
    while True:
        blocks = (cells["cell_e"] // factor).astype(np.int64) * 2**31 + (cells["cell_n"] // factor)
        if blocks.nunique() <= limit:
            return factor
        factor *= 2


def aggregate_cells(cells: pd.DataFrame, factor: int) -> pd.DataFrame:
    """Blocks of factor x factor cells with summed counts (block_e/n are in block units)."""
    blocks = cells.assign(block_e=cells["cell_e"] // factor, block_n=cells["cell_n"] // factor)
    return (
        blocks.groupby(["block_e", "block_n"], sort=True)
        .agg(
            cells=("cell_e", "size"),
            images=("images", "sum"),
            panoramas=("panoramas", "sum"),
            classes=("classes", "sum"),
            kept_images=("kept_images", "sum"),
        )
        .reset_index()
    )


@dataclass
class MapSelection:
    """What the Map page is asked to draw."""

    group: int | None = None  # group rank, None = all groups
    focus: tuple[int, int, int] | None = None  # (block_e, block_n, factor): one block only
    selected_cell: tuple[int, int] | None = None


@dataclass
class MapLayers:
    deck: pdk.Deck
    factor: int  # 1 = true cells; >1 = blocks of factor x factor cells
    cells_drawn: int
    wedges_drawn: int
    notes: list[str] = field(default_factory=list)


def _in_focus(frame: pd.DataFrame, focus: tuple[int, int, int] | None) -> pd.DataFrame:
    """The rows (cells or classes) whose cell lies in the focused block, or all of them."""
    if focus is None:
        return frame
    block_e, block_n, factor = focus
    return frame[(frame["cell_e"] // factor == block_e) & (frame["cell_n"] // factor == block_n)]


def _cell_colours(cells: pd.DataFrame, params: PartitionParams, alpha: int) -> np.ndarray:
    cell_e, cell_n = cells["cell_e"].to_numpy(np.int64), cells["cell_n"].to_numpy(np.int64)
    uvw = group_keys(np.stack([cell_e, cell_n, np.zeros_like(cell_e)], axis=1), params.N, params.L)
    uv = uvw[:, 0] * params.N + uvw[:, 1]
    rgb = PALETTE[uv % len(PALETTE)]
    return np.concatenate([rgb, np.full((len(cells), 1), alpha)], axis=1)


def polygon_layer(rings: np.ndarray, colours, extra: pd.DataFrame, layer_id: str, **style):
    """A PolygonLayer of lon/lat rings filled with their [r, g, b, a] colours; `extra`'s
    columns (the tip, the keys a click reads) go with each polygon."""
    data = extra.reset_index(drop=True)
    data = data.assign(polygon=rings.tolist(), colour=np.asarray(colours).tolist())
    return pdk.Layer(
        "PolygonLayer", data, id=layer_id, get_polygon="polygon", get_fill_color="colour", **style
    )


def fit_zoom(
    lon_span: float,
    lat_span: float = 0.0,
    lat: float = 0.0,
    width_px: int = 760,
    height_px: int = 460,
) -> float:
    """Web Mercator zoom at which a lon/lat extent fits in width_px x height_px.

    At zoom z the world's 360 degrees of longitude span 512 * 2^z pixels (deck.gl); a degree of
    latitude is 1 / cos(lat) times longer on the map. Capped at 18: deck.gl draws nothing
    in st.pydeck_chart above about 19.
    """
    lat_as_lon = max(float(lat_span), 0.0) / max(math.cos(math.radians(lat)), 1e-3)
    zoom_x = math.log2(360.0 * width_px / 512.0 / max(float(lon_span), 1e-6))
    zoom_y = math.log2(360.0 * height_px / 512.0 / max(lat_as_lon, 1e-6))
    return float(np.clip(min(zoom_x, zoom_y), 1.0, 18.0))


def fitted_view(
    lon: np.ndarray, lat: np.ndarray, pad: float = 1.0, width_px: int = 760, height_px: int = 460
) -> pdk.ViewState:
    """Centre and zoom that frame the points (with `pad` times their extent); the whole world
    when there are none."""
    if not len(lon):
        return pdk.ViewState(latitude=0, longitude=0, zoom=1)
    centre_lat = float((np.nanmin(lat) + np.nanmax(lat)) / 2)
    span_lon, span_lat = pad * float(np.ptp(lon)), pad * float(np.ptp(lat))
    zoom = fit_zoom(span_lon, span_lat, centre_lat, width_px, height_px)
    return pdk.ViewState(
        latitude=centre_lat, longitude=float((np.nanmin(lon) + np.nanmax(lon)) / 2), zoom=zoom
    )


def build_map_layers(
    view: PartitionView, selection: MapSelection, base: pdk.Layer | None = None
) -> MapLayers:
    """The pydeck Deck of the partition, aggregated on the server when it is too big; `base`
    (the offline street layer, app.street_layer) is drawn under it."""
    params, notes = view.params, []
    classes = view.classes
    cells = view.cells
    if selection.group is not None:
        classes = classes[classes["group"] == selection.group]
        keys = classes[["cell_e", "cell_n"]].drop_duplicates()
        cells = cells.merge(keys, on=["cell_e", "cell_n"])
    cells, classes = _in_focus(cells, selection.focus), _in_focus(classes, selection.focus)
    factor = aggregation_factor(cells)
    layers = [] if base is None else [base]
    if factor == 1:
        rings = square_rings(cells["east_min"], cells["north_min"], params.M, view.zone)
        tips = (
            "cell (" + cells["cell_e"].astype(str) + ", " + cells["cell_n"].astype(str) + "): "
            + cells["images"].astype(str) + " images, " + cells["panoramas"].astype(str)
            + " panoramas, " + cells["classes"].astype(str) + " classes kept ("
            + cells["kept_images"].astype(str) + " images)"
        )  # fmt: skip
        extra = cells[["cell_e", "cell_n"]].assign(level=1, tip=tips.to_numpy())
        colours = _cell_colours(cells, params, 110)
        if selection.selected_cell is not None:
            chosen = (cells["cell_e"] == selection.selected_cell[0]) & (
                cells["cell_n"] == selection.selected_cell[1]
            )
            colours[chosen.to_numpy(), 3] = 230
    else:
        blocks = aggregate_cells(cells, factor)
        side = params.M * factor
        rings = square_rings(blocks["block_e"] * side, blocks["block_n"] * side, side, view.zone)
        tips = (
            blocks["cells"].astype(str) + " cells, " + blocks["images"].astype(str) + " images, "
            + blocks["classes"].astype(str) + " classes: click to show this block's cells"
        )  # fmt: skip
        extra = blocks[["block_e", "block_n"]].rename(
            columns={"block_e": "cell_e", "block_n": "cell_n"}
        )
        extra = extra.assign(level=factor, tip=tips.to_numpy())
        # Shade blocks by images (log scale): at this level the (u, v) colours would be noise.
        weight = np.log1p(blocks["images"].to_numpy(np.float64))
        weight = weight / max(float(weight.max()), 1.0)
        colours = np.stack(
            [
                (255 - 200 * weight).astype(int),
                (220 - 120 * weight).astype(int),
                np.full(len(blocks), 90),
                np.full(len(blocks), 170),
            ],
            axis=1,
        )
        notes.append(
            f"{len(cells):,} cells are too many to draw: shown as {len(blocks):,} blocks of "
            f"{factor} x {factor} cells ({side:g} m); click a block to see its cells and headings."
        )
    layers.append(
        polygon_layer(
            rings, colours, extra, "cells", get_line_color=[60, 60, 60, 160],
            line_width_min_pixels=1, stroked=True, filled=True, pickable=True, auto_highlight=True,
        )
    )  # fmt: skip
    wedges_drawn = 0
    if factor == 1 and 0 < len(classes) <= MAX_SHAPES:
        wedges = wedge_rings(classes, params, view.zone)
        group_colours = PALETTE[classes["group"].to_numpy() % len(PALETTE)]
        colours = np.concatenate([group_colours, np.full((len(classes), 1), 235)], axis=1)
        tips = (
            "class " + classes["class_id"].astype(str) + ", group rank "
            + classes["group"].astype(str) + ", heading "
            + classes["heading_min"].map(lambda h: f"{h:g}") + "-"
            + (classes["heading_min"] + params.alpha).map(lambda h: f"{h:g}") + " deg: "
            + classes["images"].astype(str) + " images"
        )  # fmt: skip
        extra = classes[["cell_e", "cell_n", "class_id"]].assign(level=0, tip=tips.to_numpy())
        layers.append(
            polygon_layer(
                wedges, colours, extra, "headings", stroked=False, filled=True, pickable=True
            )
        )
        wedges_drawn = len(classes)
    elif factor == 1 and len(classes) > MAX_SHAPES:
        notes.append(
            f"{len(classes):,} class wedges are too many to draw; pick a group or a block."
        )
    deck = light_deck(layers, fitted_view(rings[..., 0], rings[..., 1]))
    return MapLayers(deck, factor, len(rings), wedges_drawn, notes)


def deck_payload_bytes(deck: pdk.Deck) -> int:
    """Bytes of JSON that st.pydeck_chart sends to the browser for this deck."""
    return len(deck.to_json().encode())


# --- one cell's images ----------------------------------------------------------------------


def cell_images(
    catalog_path: str | os.PathLike,
    view: PartitionView,
    cell: tuple[int, int],
    limit: int = 200,
) -> pd.DataFrame:
    """Images of one cell (path, full path, heading, heading class, year), by heading."""
    corner = (cell[0] * view.params.M, cell[1] * view.params.M)
    with open_catalog(catalog_path) as con:
        images = app_queries.images_in_square(
            con, view.dataset, view.split, corner, view.params.M, limit
        )
    images["heading_class"] = heading_class(images["heading"], view.params.alpha)
    images["file"] = [str(view.root / p) for p in images["path"]]
    return images

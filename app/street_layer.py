"""Maps that read offline: the dataset's own image positions as a faint base layer.

Street View images lie along streets, so their positions drawn faintly show the streets when
no map tile can load (a machine without the internet draws dots on white otherwise). At city
scale the positions are merged on the server into squares (a few metres each, doubled until
few enough remain), one faint dot per square, so the layer stays light.

Whether tiles can load is known only to the browser; the server asks whether it can reach
Carto's tile host itself (a second at most, remembered by the page for a few minutes), which
answers for the usual case of an app and its browser on one machine. The toggle overrides it.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import replace

import numpy as np
import pandas as pd
import pydeck as pdk

from app.catalog_reader import open_catalog
from app.map_layers import scatter_layer
from core.geo import utm_to_latlon
from data_catalog import app_queries, map_views
from data_catalog.map_views import StreetSquares

BASE_DECIMALS = 5  # 1 m of latitude: enough for a faint dot
BASE_COLOUR = [70, 70, 80, 80]
AROUND_M = 300.0  # streets kept around a small map's points (Retrieve's result maps)
TILE_HOST = ("basemaps.cartocdn.com", 443)
TILE_PROBE_S = 1.0

BASE_CAPTION = "Faint grey dots: the dataset's own images, so that its streets show without tiles."
# The toggle's values (in the URL as `base`) and what the page says for each.
BASE_MODES = {
    "auto": "when map tiles cannot load",
    "always": "always",
    "never": "never",
}


def catalog_street_squares(catalog_path: str | os.PathLike, dataset: str) -> StreetSquares:
    """A catalogued dataset's images (every split) as street squares: those stored at ingest
    (data_catalog.map_views), else counted by the catalog now."""
    with open_catalog(catalog_path) as con:
        stored = map_views.stored_street_squares(con, dataset)
        return stored if stored is not None else map_views.dataset_street_squares(con, dataset)


def dataset_of_folder(catalog_path: str | os.PathLike, folder: str | os.PathLike) -> str | None:
    """The catalogued dataset whose root is `folder` or holds it (its test set); else None."""
    target = os.path.realpath(folder)
    with open_catalog(catalog_path) as con:
        for name in app_queries.dataset_names(con):
            root = app_queries.dataset_root(con, name)
            if root is None:
                continue
            root = os.path.realpath(root)
            if target == root or target.startswith(root.rstrip(os.sep) + os.sep):
                return name
    return None


def base_layer(squares: StreetSquares) -> pdk.Layer:
    """One faint, unpickable dot per square, as wide as the square."""
    lat, lon = (
        utm_to_latlon(squares.east, squares.north, squares.zone) if len(squares) else ([], [])
    )
    data = pd.DataFrame({"lon": np.round(lon, BASE_DECIMALS), "lat": np.round(lat, BASE_DECIMALS)})
    return scatter_layer(
        data,
        "streets",
        get_fill_color=BASE_COLOUR,
        get_radius=squares.side_m / 2,
        radius_min_pixels=1,
        radius_max_pixels=6,
        pickable=False,
    )


def squares_around(
    squares: StreetSquares, east: np.ndarray, north: np.ndarray, margin_m: float = AROUND_M
) -> StreetSquares:
    """The squares within margin_m of the box around the points (a small map's extent): a
    map of ten results needs the streets near them, not a whole city's squares."""
    east = np.asarray(east, dtype=np.float64)
    north = np.asarray(north, dtype=np.float64)
    east, north = east[np.isfinite(east)], north[np.isfinite(north)]
    keep = np.zeros(len(squares.east), bool)
    if len(east):
        keep = (
            (squares.east >= east.min() - margin_m)
            & (squares.east <= east.max() + margin_m)
            & (squares.north >= north.min() - margin_m)
            & (squares.north <= north.max() + margin_m)
        )
    return replace(
        squares, east=squares.east[keep], north=squares.north[keep], images=squares.images[keep]
    )


def tiles_reachable(host: tuple[str, int] = TILE_HOST, timeout_s: float = TILE_PROBE_S) -> bool:
    """Whether this server can open a connection to the tile host within timeout_s (the name
    lookup included: it runs in a thread, since a lookup cannot be given a timeout)."""
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection(host, timeout=timeout_s):
                answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(answer and answer[0])


def draw_base(mode: str, reachable: bool) -> bool:
    """Whether to draw the base layer for a toggle value (an unknown one counts as auto)."""
    return mode == "always" or (mode != "never" and not reachable)

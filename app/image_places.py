"""Images described by where, which way and when they were taken, not by their file names.

An SF-XL name is 80-odd characters of '@'-separated fields; what a reader wants from it is
the position (latitude/longitude, or metres from the query), the heading and the year. The
names are parsed by the one bulk parser (data_catalog.name_table).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.geo import UTMZone, utm_to_latlon
from data_catalog.name_table import parse_paths

LATLON_DECIMALS = 5  # about a metre


def name_details(paths: Sequence[str]) -> pd.DataFrame:
    """Per path (same order): UTM east/north, zone number and letter, heading (NaN where the
    name has none) and year (-1 where it has none); NaN positions for malformed names."""
    paths = [str(p) for p in paths]
    names, rows = parse_paths(paths)
    frame = pd.DataFrame(
        {
            "east": np.full(len(paths), np.nan),
            "north": np.full(len(paths), np.nan),
            "zone_number": np.zeros(len(paths), np.int16),
            "zone_letter": np.full(len(paths), "", dtype=object),
            "heading": np.full(len(paths), np.nan),
            "year": np.full(len(paths), -1, np.int16),
        }
    )
    for key in ("east", "north", "zone_number", "heading", "year"):
        frame.loc[rows, key] = getattr(names, key)
    frame.loc[rows, "zone_letter"] = [chr(c) for c in names.zone_letter]
    return frame


def latlon_columns(east, north, zone: UTMZone) -> tuple[np.ndarray, np.ndarray]:
    """Rounded latitude and longitude of UTM points (NaN where a position is unknown)."""
    east = np.asarray(east, dtype=np.float64)
    north = np.asarray(north, dtype=np.float64)
    lat, lon = np.full(len(east), np.nan), np.full(len(east), np.nan)
    known = np.isfinite(east) & np.isfinite(north)
    if known.any():
        lat[known], lon[known] = utm_to_latlon(east[known], north[known], zone)
    return np.round(lat, LATLON_DECIMALS), np.round(lon, LATLON_DECIMALS)


def place_text(
    lat: float, lon: float, heading: float, year: int, metres: float | None = None
) -> str:
    """ "12 m away · heading 80° · 2013", or the latitude/longitude when no query position is
    known; the parts a name lacks are left out."""
    parts = []
    if metres is not None and np.isfinite(metres):
        parts.append(f"{metres:,.0f} m away")
    elif np.isfinite(lat) and np.isfinite(lon):
        parts.append(f"{lat:.{LATLON_DECIMALS}f}, {lon:.{LATLON_DECIMALS}f}")
    else:
        parts.append("position unknown")
    if np.isfinite(heading):
        parts.append(f"heading {heading:.0f}°")
    if year >= 0:
        parts.append(str(int(year)))
    return " · ".join(parts)


def describe_results(results: pd.DataFrame, zone: UTMZone) -> pd.DataFrame:
    """A retrieval's results (rank, path, east, north, similarity, [distance_m, correct]) with
    lat, lon, heading, year and a `place` caption, and without the file names."""
    details = name_details(results["path"])
    lat, lon = latlon_columns(results["east"], results["north"], zone)
    distances = results["distance_m"] if "distance_m" in results else [None] * len(results)
    described = results.drop(columns=["path", "file", "east", "north"], errors="ignore").copy()
    described["lat"], described["lon"] = lat, lon
    described["heading"] = details["heading"].to_numpy()
    described["year"] = details["year"].to_numpy()
    described["place"] = [
        place_text(a, o, h, y, d)
        for a, o, h, y, d in zip(
            lat, lon, details["heading"], details["year"], distances, strict=True
        )
    ]
    return described.reset_index(drop=True)

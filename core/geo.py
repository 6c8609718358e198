"""Latitude/longitude <-> UTM for arrays, and distances in metres.

A dataset lives in one UTM zone: eastings of two zones are not comparable, so mixing zones is
an error here rather than a silently wrong distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import utm

from core.errors import UserError


class MixedUTMZoneError(UserError, ValueError):
    """Raised when coordinates that must share one UTM zone do not (a user's data mistake)."""


# UTM covers 80 S to 84 N; the poles belong to another projection (UPS).
UTM_LATITUDES = (-80.0, 84.0)


class OutsideUTMError(UserError, ValueError):
    """A latitude that UTM does not cover; the message gives it and UTM's range."""


@dataclass(frozen=True)
class UTMZone:
    number: int
    letter: str

    @property
    def northern(self) -> bool:
        return self.letter.upper() >= "N"

    def __str__(self) -> str:
        return f"{self.number} {self.letter}"


def _as_float_array(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return np.atleast_1d(array)


def zone_of(lat, lon) -> UTMZone:
    """The single UTM zone of a set of points; MixedUTMZoneError if they span several."""
    lat = _as_float_array(lat, "lat")
    lon = _as_float_array(lon, "lon")
    # Zone numbers depend on longitude (plus the Norway/Svalbard exceptions that utm knows),
    # so evaluate them once per distinct point rather than per image.
    points = np.unique(np.stack([lat, lon], axis=1), axis=0)
    numbers = {utm.latlon_to_zone_number(a, o) for a, o in points}
    hemispheres = {bool(a >= 0) for a, _ in points}
    if len(numbers) > 1 or len(hemispheres) > 1:
        found = sorted(f"{n}{'N' if h else 'S'}" for n in numbers for h in hemispheres)
        raise MixedUTMZoneError(
            f"points span several UTM zones/hemispheres ({', '.join(found)}); "
            "a dataset must lie in one zone, or pass force_zone to project into one"
        )
    number = numbers.pop()
    letter = utm.latitude_to_zone_letter(float(np.median(lat)))
    return UTMZone(number, letter)


def latlon_to_utm(lat, lon, force_zone: UTMZone | None = None):
    """Project arrays of lat/lon to (east, north, zone), all points in one zone."""
    lat = _as_float_array(lat, "lat")
    lon = _as_float_array(lon, "lon")
    if lat.shape != lon.shape:
        raise ValueError(f"lat and lon differ in shape: {lat.shape} vs {lon.shape}")
    low, high = UTM_LATITUDES
    outside = (lat < low) | (lat > high)
    if outside.any():
        raise OutsideUTMError(
            f"latitude {float(lat[outside][0]):g} lies outside UTM's range ({low:g} to "
            f"{high:g} degrees), so it has no easting and northing to compare with"
        )
    zone = force_zone or zone_of(lat, lon)
    east, north, _, _ = utm.from_latlon(
        lat,
        lon,
        force_zone_number=zone.number,
        force_zone_letter=zone.letter,
    )
    return np.asarray(east, dtype=np.float64), np.asarray(north, dtype=np.float64), zone


def utm_to_latlon(east, north, zone: UTMZone):
    """Arrays of UTM east/north in one zone back to (lat, lon) in degrees."""
    east = _as_float_array(east, "east")
    north = _as_float_array(north, "north")
    lat, lon = utm.to_latlon(east, north, zone.number, northern=zone.northern, strict=False)
    return np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)


def single_zone(zones, where: object = "dataset") -> UTMZone:
    """The one UTM zone among the (number, letter) zones of a dataset's file names;
    MixedUTMZoneError, a sentence naming `where` and the zones, if they are not one."""
    zones = sorted({(int(number), str(letter)) for number, letter in zones})
    hemispheres = {letter.upper() >= "N" for _, letter in zones}
    if len({number for number, _ in zones}) != 1 or len(hemispheres) != 1:
        found = ", ".join(f"{number}{letter}" for number, letter in zones)
        raise MixedUTMZoneError(
            f"{where} mixes UTM zones {found}: eastings of different zones are not "
            "comparable, so give a folder or list of one zone only"
        )
    return UTMZone(*zones[0])


def distances_m(east_a, north_a, east_b, north_b) -> np.ndarray:
    """Euclidean distance in metres between UTM points of one zone (broadcasting)."""
    return np.hypot(np.asarray(east_a) - np.asarray(east_b), np.asarray(north_a) - north_b)

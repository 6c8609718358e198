"""The SF-XL file name: `@`-separated labels, parsed and formatted with an exact round trip.

`@ east @ north @ zone_number @ zone_letter @ lat @ lon @ pano_id @ tile_num @ heading @ pitch
 @ roll @ height @ timestamp @ note @ extension`

Only the base name is parsed, so folders with `@` in their names do not matter. Fields are
kept as the exact strings found, so formatting a parsed name gives back the same name.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import astuple, dataclass

FIELD_NAMES: tuple[str, ...] = (
    "utm_east",
    "utm_north",
    "utm_zone_number",
    "utm_zone_letter",
    "lat",
    "lon",
    "pano_id",
    "tile_num",
    "heading",
    "pitch",
    "roll",
    "height",
    "timestamp",
    "note",
    "extension",
)
NUMERIC_FIELDS = ("utm_east", "utm_north", "lat", "lon")
OPTIONAL_NUMERIC_FIELDS = ("heading", "pitch", "roll", "height")
ZONE_LETTERS = "CDEFGHJKLMNPQRSTUVWX"
TIMESTAMP_PATTERN = re.compile(r"^\d{6}(\d{2}(_\d{6})?)?$")


class MalformedNameError(ValueError):
    """A file name that is not a valid SF-XL name; says which file and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class SFXLName:
    utm_east: str
    utm_north: str
    utm_zone_number: str
    utm_zone_letter: str
    lat: str
    lon: str
    pano_id: str = ""
    tile_num: str = ""
    heading: str = ""
    pitch: str = ""
    roll: str = ""
    height: str = ""
    timestamp: str = ""
    note: str = ""
    extension: str = ".jpg"

    @property
    def east(self) -> float:
        return float(self.utm_east)

    @property
    def north(self) -> float:
        return float(self.utm_north)

    @property
    def zone_number(self) -> int:
        return int(self.utm_zone_number)

    @property
    def latitude(self) -> float:
        return float(self.lat)

    @property
    def longitude(self) -> float:
        return float(self.lon)

    @property
    def heading_deg(self) -> float | None:
        return float(self.heading) if self.heading else None

    @property
    def year(self) -> int | None:
        return int(self.timestamp[:4]) if self.timestamp else None

    @property
    def month(self) -> int | None:
        return int(self.timestamp[4:6]) if self.timestamp else None


def format_name(name: SFXLName) -> str:
    """The base file name of a parsed or built record."""
    return "@" + "@".join(astuple(name))


def _check_fields(values: dict[str, str]) -> str | None:
    """The reason a set of field strings is not a valid name, or None."""
    for key in NUMERIC_FIELDS + OPTIONAL_NUMERIC_FIELDS:
        if key in OPTIONAL_NUMERIC_FIELDS and not values[key]:
            continue  # "no heading" is written as empty; nan/inf are refused like non-numbers
        try:
            if not math.isfinite(float(values[key])):
                return f"{key} is not finite: {values[key]!r}"
        except ValueError:
            return f"{key} is not a number: {values[key]!r}"
    if not values["utm_zone_number"].isdigit() or not 1 <= int(values["utm_zone_number"]) <= 60:
        return f"utm_zone_number must be 1..60: {values['utm_zone_number']!r}"
    if len(values["utm_zone_letter"]) != 1 or values["utm_zone_letter"] not in ZONE_LETTERS:
        return f"utm_zone_letter must be one of {ZONE_LETTERS}: {values['utm_zone_letter']!r}"
    if not -90 <= float(values["lat"]) <= 90 or not -180 <= float(values["lon"]) <= 180:
        return f"lat/lon out of range: {values['lat']}, {values['lon']}"
    stamp = values["timestamp"]
    if stamp and not TIMESTAMP_PATTERN.match(stamp):
        return f"timestamp must be YYYYMM, YYYYMMDD or YYYYMMDD_hhmmss: {stamp!r}"
    if stamp and not 1 <= int(stamp[4:6]) <= 12:
        return f"timestamp month out of range: {stamp!r}"
    if not values["extension"].startswith("."):
        return f"extension must start with '.': {values['extension']!r}"
    return None


def parse_name(path: str | os.PathLike) -> SFXLName:
    """Parse the base name of `path`; MalformedNameError names the file and the reason."""
    path = os.fspath(path)
    base = os.path.basename(path)
    parts = base.split("@")
    if len(parts) != len(FIELD_NAMES) + 1 or parts[0] != "":
        raise MalformedNameError(
            path, f"expected {len(FIELD_NAMES)} '@'-separated fields, found {len(parts) - 1}"
        )
    values = dict(zip(FIELD_NAMES, parts[1:], strict=True))
    reason = _check_fields(values)
    if reason:
        raise MalformedNameError(path, reason)
    return SFXLName(**values)


def _format_optional(value: float | int | str | None, spec: str = "") -> str:
    if value is None or value == "":
        return ""
    return value if isinstance(value, str) else format(value, spec)


def make_name(
    east: float,
    north: float,
    zone_number: int,
    zone_letter: str,
    lat: float,
    lon: float,
    *,
    pano_id: str = "",
    tile_num: int | str | None = None,
    heading: float | int | None = None,
    pitch: float | int | None = None,
    roll: float | int | None = None,
    height: float | int | None = None,
    timestamp: str = "",
    note: str = "",
    extension: str = ".jpg",
) -> str:
    """A base file name written the way SF-XL writes them (zero-padded coordinates)."""
    heading_text = ""
    if heading is not None:
        # Heading is not zero-padded; whole degrees are written without decimals.
        heading_text = str(int(heading)) if float(heading).is_integer() else f"{heading:g}"
    name = SFXLName(
        utm_east=f"{east:010.2f}",
        utm_north=f"{north:010.2f}",
        utm_zone_number=str(int(zone_number)),
        utm_zone_letter=zone_letter,
        lat=f"{lat:09.5f}",
        lon=f"{lon:010.5f}",
        pano_id=pano_id,
        tile_num=_format_optional(tile_num),
        heading=heading_text,
        pitch=_format_optional(pitch, "g"),
        roll=_format_optional(roll, "g"),
        height=_format_optional(height, "g"),
        timestamp=timestamp,
        note=note,
        extension=extension,
    )
    reason = _check_fields(dict(zip(FIELD_NAMES, astuple(name), strict=True)))
    if reason or any("@" in value for value in astuple(name)):
        raise ValueError(f"cannot write an SF-XL name: {reason or 'a field contains @'}")
    return format_name(name)

"""Colours of the Descriptor space: each point's colour as a code into a small palette.

Plotly then receives one small integer per point (sent as typed-array bytes) and a stepped
colour scale, instead of 20,000 colour strings it would validate one by one.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core.partition import PartitionParams, class_keys, group_keys

if TYPE_CHECKING:
    from app.descriptor_space import SpacePoints

COLOUR_BY = ("group", "class", "position", "heading", "year")
NO_LABEL = "#c8c8c8"
# Twelve distinguishable colours (groups and classes are hashed onto them).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#e7ba52",
)  # fmt: skip


WHEEL_HUES = 12  # directions (and headings) in steps of 30 degrees
WHEEL_RINGS = 3  # distances from the centre: pale, medium, full


def _hsv_hex(hue: float, saturation: float, value: float) -> str:
    return "#{:02x}{:02x}{:02x}".format(
        *(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, saturation, value))
    )


@dataclass
class Colouring:
    """Each point's colour as an index into a palette (-1: unknown, drawn grey): plotly
    sends one small number per point instead of a colour string."""

    codes: np.ndarray  # [n] int, -1 where the name does not say
    palette: list[str]
    legend: str  # how to read the colours


def colour_points(
    points: SpacePoints, colour_by: str, params: PartitionParams, centre: tuple[float, float]
) -> Colouring:
    """Colour by group (u, v, w) or class (e, n, h) of the run's partition (Eq. 1-2, hashed
    onto 12 colours), by position on a colour wheel around `centre` (hue: direction, paler
    nearer the centre), by heading on a colour wheel, or by year (blue oldest to red newest)."""
    codes = np.full(len(points), -1, dtype=np.int64)
    if colour_by in ("group", "class"):
        known = np.isfinite(points.heading) & np.isfinite(points.east)
        keys = class_keys(
            points.east[known], points.north[known], points.heading[known], params.M, params.alpha
        )
        if colour_by == "group":
            keys = group_keys(keys, params.N, params.L)
        # A fixed mix of the three integers: the same key is the same colour everywhere.
        mixed = keys[:, 0] * 73_856_093 ^ keys[:, 1] * 19_349_663 ^ keys[:, 2] * 83_492_791
        codes[known] = np.abs(mixed) % len(PALETTE)
        legend = f"{colour_by}es hashed onto {len(PALETTE)} colours (equal colour may be two)"
        return Colouring(codes, list(PALETTE), legend.replace("groupes", "groups"))
    if colour_by == "position":
        de, dn = points.east - centre[0], points.north - centre[1]
        radius = np.hypot(de, dn)
        known = np.isfinite(radius)
        scale = float(radius[known].max()) if known.any() and radius[known].max() > 0 else 1.0
        hue = np.floor((np.degrees(np.arctan2(dn[known], de[known])) % 360) / 360 * WHEEL_HUES)
        ring = np.minimum(radius[known] / scale * WHEEL_RINGS, WHEEL_RINGS - 1).astype(np.int64)
        codes[known] = ring * WHEEL_HUES + hue.astype(np.int64) % WHEEL_HUES
        palette = [
            _hsv_hex((h + 0.5) / WHEEL_HUES, 0.25 + 0.75 * (r + 1) / WHEEL_RINGS, 0.9)
            for r in range(WHEEL_RINGS)
            for h in range(WHEEL_HUES)
        ]
        legend = (
            "direction from the centre of the sample as hue (east red, north green-yellow"
            ", west cyan, south blue-violet), paler nearer the centre"
        )
        return Colouring(codes, palette, legend)
    if colour_by == "heading":
        known = np.isfinite(points.heading)
        codes[known] = np.floor(points.heading[known] % 360 / 360 * WHEEL_HUES).astype(np.int64)
        palette = [_hsv_hex((h + 0.5) / WHEEL_HUES, 0.8, 0.85) for h in range(WHEEL_HUES)]
        return Colouring(codes, palette, "heading as hue in steps of 30° (north red)")
    if colour_by == "year":
        years = np.unique(points.year[points.year >= 0])
        known = points.year >= 0
        codes[known] = np.searchsorted(years, points.year[known])
        steps = max(len(years) - 1, 1)
        palette = [_hsv_hex(0.66 - 0.66 * i / steps, 0.75, 0.85) for i in range(len(years))]
        span = f"{years[0]} (blue) to {years[-1]} (red)" if len(years) else "no year"
        return Colouring(codes, palette, f"year, {span}")
    raise ValueError(f"colour_by must be one of {COLOUR_BY}, got {colour_by!r}")


def colour_scale(palette: list[str]) -> list:
    """A stepped plotly colour scale: code i (0..k-1) is palette[i], -1 is grey."""
    colours = [NO_LABEL, *palette]
    steps = []
    for i, colour in enumerate(colours):
        steps += [[i / len(colours), colour], [(i + 1) / len(colours), colour]]
    return steps

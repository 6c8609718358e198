"""What stands along the curbs: street trees (planted and removed over the years) and the
cars parked there, a different set every year.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .scene import CABIN, CAR, CROWN, NEVER, SIDEWALK_M, TRUNK, Boxes, hsv, rng_for

if TYPE_CHECKING:
    from .city import City


def _curb_runs(city_xs, city_ys, half_x, half_y):
    """Each street side as (axis, fixed coordinate of the curb line, side sign, runs).

    Runs are the along-street intervals between intersections, where cars and trees go.
    """
    sides = []
    for axis, pos, half, cross, cross_half in (
        ("ns", city_xs, half_x, city_ys, half_y),
        ("ew", city_ys, half_y, city_xs, half_x),
    ):
        for k in range(len(pos)):
            runs = [
                (cross[m] + cross_half[m] + 3.0, cross[m + 1] - cross_half[m + 1] - 3.0)
                for m in range(len(cross) - 1)
            ]
            for sign in (-1.0, 1.0):
                sides.append((axis, k, pos[k], half[k], sign, runs))
    return sides


def street_trees(seed: int, xs, ys, half_x, half_y) -> tuple[Boxes, np.ndarray]:
    rows, years = [], []
    for axis, k, centre, half, sign, runs in _curb_runs(xs, ys, half_x, half_y):
        rng = rng_for(seed, "trees", axis, k, int(sign > 0))
        if rng.random() < 0.45:
            continue  # this side of the street has no trees
        lateral = centre + sign * (half - 1.3)
        hue = rng.uniform(0.2, 0.36)
        for a, b in runs:
            pos = a + rng.uniform(0, 5)
            while pos < b:
                size, z0 = rng.uniform(2.2, 4.0), rng.uniform(2.2, 3.2)
                z1 = z0 + rng.uniform(2.5, 5.5)
                green = hsv(
                    hue + rng.uniform(-0.03, 0.03), rng.uniform(0.4, 0.7), rng.uniform(0.28, 0.5)
                )
                uid = 1_000_000 + len(rows)
                planted = 0 if rng.random() < 0.9 else int(rng.integers(2010, 2021))
                removed = NEVER if rng.random() < 0.92 else int(rng.integers(2010, 2022))
                crown = _footprint(axis, lateral, pos, size / 2, size / 2)
                trunk = _footprint(axis, lateral, pos, 0.18, 0.18)
                rows.append((*crown, z0, z1, CROWN, -1, green, uid))
                rows.append((*trunk, 0.0, z0 + 0.5, TRUNK, -1, (0.32, 0.24, 0.17), uid))
                years += [(planted, removed)] * 2
                pos += rng.uniform(6.0, 12.0)
    return Boxes.from_rows(rows), np.asarray(years, dtype=np.int64).reshape(-1, 2)


def _footprint(axis: str, lateral: float, along: float, half_across: float, half_along: float):
    if axis == "ns":
        return lateral - half_across, lateral + half_across, along - half_along, along + half_along
    return along - half_along, along + half_along, lateral - half_across, lateral + half_across


CAR_COLOURS = [
    (0.92, 0.92, 0.9),
    (0.08, 0.08, 0.09),
    (0.6, 0.61, 0.63),
    (0.35, 0.36, 0.38),
    (0.55, 0.08, 0.07),
    (0.1, 0.18, 0.45),
    (0.75, 0.72, 0.62),
    (0.2, 0.35, 0.22),
]


def parked_cars(city: City, year: int) -> Boxes:
    """The cars parked along the curbs in `year`: a different set every year."""
    rows = []
    for axis, k, centre, half, sign, runs in _curb_runs(city.xs, city.ys, city.half_x, city.half_y):
        rng = rng_for(city.seed, "cars", year, axis, k, int(sign > 0))
        lateral = centre + sign * (half - SIDEWALK_M - 1.1)
        occupancy = rng.uniform(0.3, 0.8)
        for a, b in runs:
            pos = a + rng.uniform(0, 4)
            while pos < b - 2.5:
                length = rng.uniform(4.0, 5.0)
                if rng.random() < occupancy:
                    rgb = CAR_COLOURS[rng.integers(len(CAR_COLOURS))]
                    if rng.random() < 0.25:
                        rgb = hsv(rng.random(), rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.9))
                    rows += _car(axis, lateral, pos + length / 2, length, rgb, rng, len(rows))
                pos += length + rng.uniform(0.8, 3.0)
    return Boxes.from_rows(rows)


def _car(axis, lateral, centre, length, rgb, rng, uid) -> list[tuple]:
    """A van (one tall box) or a car: a body box and a cabin box over its middle."""
    uid += 2_000_000
    footprint = _footprint(axis, lateral, centre, 0.9, length / 2)
    if rng.random() < 0.12:
        return [(*footprint, 0.0, rng.uniform(1.9, 2.3), CAR, -1, rgb, uid)]
    body = rng.uniform(0.85, 1.0)
    cabin_len = length * rng.uniform(0.45, 0.6)
    shift = rng.uniform(-0.1, 0.25) * length / 2  # the cabin sits a little back
    cabin = _footprint(axis, lateral, centre + shift, 0.8, cabin_len / 2)
    return [
        (*footprint, 0.0, body, CAR, -1, rgb, uid),
        (*cabin, body, body + rng.uniform(0.45, 0.6), CABIN, -1, rgb, uid + 1),
    ]

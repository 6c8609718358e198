"""Procedural layout of the synthetic city: a street grid with its buildings (`buildings`),
street trees and parked cars (`props`), and the camera tracks along its streets.

Coordinates, randomness and boxes are those of `scene`: the city depends only on the seed and
the preset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .buildings import Buildings, build_buildings, building_boxes
from .presets import Preset
from .props import parked_cars, street_trees
from .scene import DISTRICTS, Boxes, rng_for


@dataclass
class Track:
    """A street centreline a capture car drives along, cut to a district."""

    track_id: int
    district: str
    axis: str  # "ns" (x fixed, runs north) or "ew" (y fixed, runs east)
    fixed: float  # x of an "ns" track, y of an "ew" track
    start: float  # along-track coordinate (y or x) where it starts, on a 10 m cell border
    length: float  # a multiple of 10 m

    def point(self, along: float, lateral: float) -> tuple[float, float]:
        """Local (x, y) of a point `along` the track and `lateral` to its east/north side."""
        if self.axis == "ns":
            return self.fixed + lateral, self.start + along
        return self.start + along, self.fixed + lateral


@dataclass
class City:
    seed: int
    preset: Preset
    xs: np.ndarray  # x of north-south street centrelines, west to east
    ys: np.ndarray  # y of east-west street centrelines, south to north
    half_x: np.ndarray  # half widths of those streets (sidewalks included)
    half_y: np.ndarray
    district_streets: dict[str, tuple[int, int]]  # first and last N-S street of a district
    camera_rows: tuple[int, int]  # first and last E-W street with cameras
    buildings: Buildings
    trees: Boxes  # crowns and trunks, with planting/removal years in `tree_years`
    tree_years: np.ndarray  # [n, 2] planted, removed
    tracks: list[Track]
    _scenes: dict[int, Boxes] = field(default_factory=dict, repr=False)

    def district_bounds(self, district: str) -> tuple[float, float, float, float]:
        """Local (x_min, y_min, x_max, y_max) covered by a district's camera tracks."""
        first, last = self.district_streets[district]
        r0, r1 = self.camera_rows
        return (self.xs[first] - 5, self.ys[r0] - 5, self.xs[last] + 5, self.ys[r1] + 5)

    def scene(self, year: int) -> Boxes:
        """Buildings, the trees standing that year and that year's parked cars."""
        if year not in self._scenes:
            alive = (self.tree_years[:, 0] <= year) & (year < self.tree_years[:, 1])
            self._scenes[year] = Boxes.concat(
                [building_boxes(self.buildings), self.trees.select(alive), parked_cars(self, year)]
            )
        return self._scenes[year]


# ----------------------------------------------------------------------------- street grid


def _street_grid(preset: Preset, rng: np.random.Generator):
    """Street positions, widths and which streets each district owns."""
    counts = {"train": preset.train_blocks, "val": preset.val_blocks, "test": preset.test_blocks}
    district_streets: dict[str, tuple[int, int]] = {}
    block = 1  # block 0 is the western fringe
    for i, name in enumerate(DISTRICTS):
        if i:
            block += preset.gap_blocks
        district_streets[name] = (block, block + counts[name])
        block += counts[name]
    cols = block + 1  # eastern fringe
    rows = preset.blocks_north + 2
    sizes = np.asarray(preset.block_sizes_m)
    xs = 5.0 + np.concatenate([[0], np.cumsum(rng.choice(sizes, cols))])
    ys = 5.0 + np.concatenate([[0], np.cumsum(rng.choice(sizes, rows))])
    widths = np.asarray([8.0, 10.0, 10.0, 12.0])  # half widths: 16 to 24 m wide streets
    half_x = rng.choice(widths, len(xs))
    half_y = rng.choice(widths, len(ys))
    return xs, ys, half_x, half_y, district_streets, (1, rows - 1)


def _tracks(xs, ys, district_streets, camera_rows) -> list[Track]:
    """Each district's streets, each cut to the district and padded to 10 m cell borders."""
    tracks: list[Track] = []
    r0, r1 = camera_rows
    for name in DISTRICTS:
        c0, c1 = district_streets[name]
        for i in range(c0, c1 + 1):
            start, end = ys[r0] - 5, ys[r1] + 5
            tracks.append(Track(len(tracks), name, "ns", float(xs[i]), start, end - start))
        for j in range(r0, r1 + 1):
            start, end = xs[c0] - 5, xs[c1] + 5
            tracks.append(Track(len(tracks), name, "ew", float(ys[j]), start, end - start))
    return tracks


# ----------------------------------------------------------------------------- the city


def build_city(preset: Preset, seed: int) -> City:
    grid = _street_grid(preset, rng_for(seed, "grid"))
    xs, ys, half_x, half_y, district_streets, camera_rows = grid
    trees, tree_years = street_trees(seed, xs, ys, half_x, half_y)
    buildings = build_buildings(seed, xs, ys, half_x, half_y)
    tracks = _tracks(xs, ys, district_streets, camera_rows)
    return City(seed, preset, *grid, buildings, trees, tree_years, tracks)

"""Procedural layout of the synthetic city: a street grid, buildings, street trees, parked cars.

Coordinates are local metres (x east, y north) from `ORIGIN`, a point in San Francisco in UTM
zone 10 S; `to_utm` adds the origin. Everything is an axis-aligned box, which is what the
column ray caster in `render` needs. All randomness comes from numpy Generators seeded with
(seed, purpose, ...), so the city only depends on the seed and the preset.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from core.geo import UTMZone

from .presets import Preset

ZONE = UTMZone(10, "S")
# A corner of the city near Alamo Square; a multiple of 10 m so that streets placed at
# 10 m cell centres in local coordinates are also at cell centres in UTM.
ORIGIN = (549_000.0, 4_180_000.0)
SIDEWALK_M = 3.0
CAMERA_HEIGHT_M = 2.5
DISTRICTS = ("train", "val", "test")
NEVER = 9999  # a year that never comes (repaints, removals)

# Box kinds; buildings index the building table through `Boxes.ref`. A car is a body box
# and a narrower, shorter cabin box on top.
BUILDING, CROWN, TRUNK, CAR, PERSON, POLE, CABIN = range(7)


def rng_for(seed: int, *keys: int | str) -> np.random.Generator:
    """A generator that depends only on the seed and the keys (never on call order)."""
    words = [seed] + [k if isinstance(k, int) else _word(k) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def _word(text: str) -> int:
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little")


def hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))


@dataclass
class Boxes:
    """Axis-aligned boxes [x0, x1] x [y0, y1] x [z0, z1] with a kind and a colour."""

    x0: np.ndarray
    x1: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    z0: np.ndarray
    z1: np.ndarray
    kind: np.ndarray  # int8, one of BUILDING..POLE
    ref: np.ndarray  # building index for BUILDING, else -1
    rgb: np.ndarray  # [n, 3] float32 base colour of props
    uid: np.ndarray  # int64, stable id used to hash per-object texture detail

    def __len__(self) -> int:
        return len(self.x0)

    @staticmethod
    def from_rows(rows: list[tuple]) -> Boxes:
        """Rows of (x0, x1, y0, y1, z0, z1, kind, ref, (r, g, b), uid)."""
        if not rows:
            return Boxes.empty()
        cols = list(zip(*rows, strict=True))
        return Boxes(
            *(np.asarray(c, dtype=np.float64) for c in cols[:6]),
            kind=np.asarray(cols[6], dtype=np.int8),
            ref=np.asarray(cols[7], dtype=np.int32),
            rgb=np.asarray(cols[8], dtype=np.float32).reshape(-1, 3),
            uid=np.asarray(cols[9], dtype=np.int64),
        )

    @staticmethod
    def empty() -> Boxes:
        z = np.zeros(0)
        return Boxes(
            z,
            z,
            z,
            z,
            z,
            z,
            z.astype(np.int8),
            z.astype(np.int32),
            np.zeros((0, 3), np.float32),
            z.astype(np.int64),
        )

    @staticmethod
    def concat(parts: list[Boxes]) -> Boxes:
        names = ("x0", "x1", "y0", "y1", "z0", "z1", "kind", "ref", "rgb", "uid")
        return Boxes(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))


@dataclass
class Buildings:
    """One row per building: footprint, height and the facade parameters `facade` reads."""

    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["columns"][name]
        except KeyError as error:
            raise AttributeError(name) from error

    def __len__(self) -> int:
        return len(self.columns["x0"])


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
            trees = _select(self.trees, alive)
            self._scenes[year] = Boxes.concat(
                [building_boxes(self.buildings), trees, parked_cars(self, year)]
            )
        return self._scenes[year]


def to_utm(x, y) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(x) + ORIGIN[0], np.asarray(y) + ORIGIN[1]


def _select(boxes: Boxes, mask: np.ndarray) -> Boxes:
    names = ("x0", "x1", "y0", "y1", "z0", "z1", "kind", "ref", "rgb", "uid")
    return Boxes(*(getattr(boxes, n)[mask] for n in names))


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


# ----------------------------------------------------------------------------- buildings

CHARACTERS = ("residential", "commercial", "tower")
LOT_WIDTH = {"residential": (6.0, 10.0), "commercial": (8.0, 18.0), "tower": (18.0, 32.0)}
LOT_DEPTH = {"residential": (10.0, 18.0), "commercial": (12.0, 22.0), "tower": (16.0, 28.0)}


def _lots(rng, a: float, b: float, character: str) -> list[tuple[float, float]]:
    """Split the side [a, b] of a block into lot intervals."""
    lots, pos = [], a
    lo, hi = LOT_WIDTH[character]
    while pos < b - 1e-6:
        width = rng.uniform(lo, hi)
        if b - pos - width < 4.0:  # no slivers: the last lot takes the rest
            width = b - pos
        lots.append((pos, pos + width))
        pos += width
    return lots


def _block_footprints(rng, xa, xb, ya, yb, character) -> list[tuple[float, float, float, float]]:
    """Building footprints around the perimeter of the block interior [xa,xb] x [ya,yb]."""
    max_depth = min(xb - xa, yb - ya) / 2 - 0.5
    lo, hi = LOT_DEPTH[character]

    def depth() -> float:
        return min(rng.uniform(lo, hi), max_depth)

    def setback() -> float:
        return 0.0 if rng.random() < 0.7 else rng.uniform(0.4, 2.0)

    boxes = []
    north = [(p, q, depth()) for p, q in _lots(rng, xa, xb, character)]
    south = [(p, q, depth()) for p, q in _lots(rng, xa, xb, character)]
    for p, q, d in north:
        boxes.append((p, q, yb - d, yb - setback()))
    for p, q, d in south:
        boxes.append((p, q, ya + setback(), ya + d))
    # East and west sides run between the corner lots of the north and south sides.
    west = _lots(rng, ya + south[0][2], yb - north[0][2], character)
    east = _lots(rng, ya + south[-1][2], yb - north[-1][2], character)
    for p, q in west:
        boxes.append((xa + setback(), xa + depth(), p, q))
    for p, q in east:
        boxes.append((xb - depth(), xb - setback(), p, q))
    # Drop a few lots: vacant lots and alleys let the camera see into the block.
    return [b for b in boxes if rng.random() > 0.06 and b[1] - b[0] > 1 and b[3] - b[2] > 1]


def _wall_colour(rng, character: str) -> tuple[float, float, float]:
    if character == "residential":  # San Francisco pastels
        return hsv(rng.random(), rng.uniform(0.12, 0.55), rng.uniform(0.55, 0.95))
    kind = rng.choice(["brick", "sand", "grey", "paint"]) if character == "commercial" else None
    if character == "tower":
        kind = rng.choice(["grey", "sand", "blue"])
    if kind == "brick":
        return hsv(rng.uniform(0.0, 0.06), rng.uniform(0.4, 0.65), rng.uniform(0.4, 0.7))
    if kind == "sand":
        return hsv(rng.uniform(0.08, 0.14), rng.uniform(0.15, 0.4), rng.uniform(0.6, 0.9))
    if kind == "blue":
        return hsv(rng.uniform(0.5, 0.62), rng.uniform(0.15, 0.35), rng.uniform(0.45, 0.75))
    if kind == "grey":
        return hsv(rng.random(), rng.uniform(0.0, 0.08), rng.uniform(0.4, 0.85))
    return hsv(rng.random(), rng.uniform(0.2, 0.6), rng.uniform(0.5, 0.9))


def _building_style(rng, character: str) -> dict:
    """Facade parameters of one building (see `facade.shade_facade` for their meaning)."""
    wall = _wall_colour(rng, character)
    if character == "residential":
        floors, floor_h, ground_h = rng.integers(1, 4), rng.uniform(2.9, 3.4), rng.uniform(3, 3.8)
        ground_type = 0 if rng.random() < 0.85 else 1
        win = (rng.uniform(1.8, 3.2), rng.uniform(0.35, 0.65), rng.uniform(0.45, 0.7))
    elif character == "commercial":
        floors, floor_h, ground_h = rng.integers(1, 6), rng.uniform(3.2, 3.9), rng.uniform(4, 5)
        ground_type = 1 if rng.random() < 0.8 else 0
        win = (rng.uniform(2.0, 4.0), rng.uniform(0.3, 0.7), rng.uniform(0.4, 0.7))
    else:
        floors, floor_h, ground_h = rng.integers(6, 20), rng.uniform(3.3, 3.8), rng.uniform(4.5, 6)
        ground_type = 2 if rng.random() < 0.7 else 1
        win = (rng.uniform(1.5, 3.0), rng.uniform(0.55, 0.9), rng.uniform(0.5, 0.8))
    cornice_h = rng.uniform(0.3, 1.2)
    trim_light = rng.random() < 0.6
    trim = hsv(rng.random(), rng.uniform(0, 0.15), rng.uniform(0.85, 1.0) if trim_light else 0.25)
    glass_hue = rng.uniform(0.5, 0.65) if character == "tower" else rng.uniform(0.55, 0.7)
    glass_v = rng.uniform(0.25, 0.5) if character == "tower" else rng.uniform(0.08, 0.28)
    repaint = rng.random() < 0.35
    sign_change = rng.random() < 0.4
    sign_u0 = rng.uniform(0.05, 0.4)
    return {
        "height": ground_h + floors * floor_h + cornice_h,
        "floor_h": floor_h,
        "ground_h": ground_h,
        "cornice_h": cornice_h,
        "win_period": win[0],
        "win_w": win[1],
        "win_h": win[2],
        "frame_w": rng.uniform(0.05, 0.25),
        "belt": float(rng.random() < 0.4),
        "pattern": rng.choice([0, 0, 1, 2, 3]) if character != "tower" else rng.choice([0, 2]),
        "pattern_period": rng.uniform(0.2, 0.5) if character == "residential" else 1.2,
        "pattern_contrast": rng.uniform(0.08, 0.25),
        "ground_type": ground_type,
        "door_frac": rng.uniform(0.1, 0.9),
        "garage_frac": rng.uniform(0.2, 0.8) if rng.random() < 0.4 else -1.0,
        "sign_u0": sign_u0,
        "sign_u1": rng.uniform(sign_u0 + 0.3, 0.98),
        "repaint_year": int(rng.integers(2010, 2022)) if repaint else NEVER,
        "sign_year": int(rng.integers(2010, 2022)) if sign_change else NEVER,
        "wall": wall,
        "wall2": _wall_colour(rng, character),
        "trim": trim,
        "glass": hsv(glass_hue, rng.uniform(0.2, 0.5), glass_v),
        "door": hsv(rng.random(), rng.uniform(0.2, 0.7), rng.uniform(0.15, 0.6)),
        "garage": hsv(rng.random(), rng.uniform(0.0, 0.2), rng.uniform(0.55, 0.95)),
        "sign": hsv(rng.random(), rng.uniform(0.55, 0.95), rng.uniform(0.45, 0.95)),
        "sign2": hsv(rng.random(), rng.uniform(0.55, 0.95), rng.uniform(0.45, 0.95)),
        "letter": (0.95, 0.95, 0.92) if rng.random() < 0.6 else (0.08, 0.08, 0.1),
    }


def _buildings(seed: int, xs, ys, half_x, half_y) -> Buildings:
    rows: list[dict] = []
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            rng = rng_for(seed, "block", i, j)
            character = rng.choice(CHARACTERS, p=[0.55, 0.33, 0.12])
            xa, xb = xs[i] + half_x[i], xs[i + 1] - half_x[i + 1]
            ya, yb = ys[j] + half_y[j], ys[j + 1] - half_y[j + 1]
            for x0, x1, y0, y1 in _block_footprints(rng, xa, xb, ya, yb, character):
                style = _building_style(rng, character)
                rows.append({"x0": x0, "x1": x1, "y0": y0, "y1": y1, **style})
    columns = {key: np.asarray([r[key] for r in rows]) for key in rows[0]}
    for key, value in columns.items():
        if value.dtype.kind == "f":
            columns[key] = value.astype(np.float32)
    for key in ("x0", "x1", "y0", "y1", "height"):  # geometry stays exact
        columns[key] = columns[key].astype(np.float64)
    return Buildings(columns)


def building_boxes(b: Buildings) -> Boxes:
    n = len(b)
    index = np.arange(n)
    return Boxes(
        b.x0,
        b.x1,
        b.y0,
        b.y1,
        np.zeros(n),
        b.height,
        kind=np.full(n, BUILDING, np.int8),
        ref=index.astype(np.int32),
        rgb=b.wall.astype(np.float32),
        uid=index.astype(np.int64),
    )


# ----------------------------------------------------------------------------- props


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


def _trees(seed: int, xs, ys, half_x, half_y) -> tuple[Boxes, np.ndarray]:
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
                uid = len(rows)
                planted = 0 if rng.random() < 0.9 else int(rng.integers(2010, 2021))
                removed = NEVER if rng.random() < 0.92 else int(rng.integers(2010, 2022))
                for s, zz0, zz1, kind, rgb in (
                    (size / 2, z0, z1, CROWN, green),
                    (0.18, 0.0, z0 + 0.5, TRUNK, (0.32, 0.24, 0.17)),
                ):
                    x0, x1, y0, y1 = _footprint(axis, lateral, pos, s, s)
                    rows.append((x0, x1, y0, y1, zz0, zz1, kind, -1, rgb, 1_000_000 + uid))
                    years.append((planted, removed))
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
    x0, x1, y0, y1 = _footprint(axis, lateral, centre, 0.9, length / 2)
    if rng.random() < 0.12:
        return [(x0, x1, y0, y1, 0.0, rng.uniform(1.9, 2.3), CAR, -1, rgb, uid)]
    body = rng.uniform(0.85, 1.0)
    cabin_len = length * rng.uniform(0.45, 0.6)
    shift = rng.uniform(-0.1, 0.25) * length / 2  # the cabin sits a little back
    cx0, cx1, cy0, cy1 = _footprint(axis, lateral, centre + shift, 0.8, cabin_len / 2)
    return [
        (x0, x1, y0, y1, 0.0, body, CAR, -1, rgb, uid),
        (cx0, cx1, cy0, cy1, body, body + rng.uniform(0.45, 0.6), CABIN, -1, rgb, uid + 1),
    ]


# ----------------------------------------------------------------------------- the city


def build_city(preset: Preset, seed: int) -> City:
    rng = rng_for(seed, "grid")
    xs, ys, half_x, half_y, district_streets, camera_rows = _street_grid(preset, rng)
    trees, tree_years = _trees(seed, xs, ys, half_x, half_y)
    return City(
        seed=seed,
        preset=preset,
        xs=xs,
        ys=ys,
        half_x=half_x,
        half_y=half_y,
        district_streets=district_streets,
        camera_rows=camera_rows,
        buildings=_buildings(seed, xs, ys, half_x, half_y),
        trees=trees,
        tree_years=tree_years,
        tracks=_tracks(xs, ys, district_streets, camera_rows),
    )

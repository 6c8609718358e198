"""The city's buildings: lots around each block, their footprints and facade styles.

Each block draws its character (residential, commercial, tower) and its lots from its own
generator, keyed by the block, so a building depends only on the seed and where it stands.
"""

from __future__ import annotations

import numpy as np

from .scene import BUILDING, NEVER, Boxes, hsv, rng_for

CHARACTERS = ("residential", "commercial", "tower")
LOT_WIDTH = {"residential": (6.0, 10.0), "commercial": (8.0, 18.0), "tower": (18.0, 32.0)}
LOT_DEPTH = {"residential": (10.0, 18.0), "commercial": (12.0, 22.0), "tower": (16.0, 28.0)}


# One row per building: footprint, height and the facade parameters `facade` reads, by column.
Buildings = dict[str, np.ndarray]


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

    north = [(p, q, depth()) for p, q in _lots(rng, xa, xb, character)]
    south = [(p, q, depth()) for p, q in _lots(rng, xa, xb, character)]
    boxes = [(p, q, yb - d, yb - setback()) for p, q, d in north]
    boxes += [(p, q, ya + setback(), ya + d) for p, q, d in south]
    # East and west sides run between the corner lots of the north and south sides.
    west = _lots(rng, ya + south[0][2], yb - north[0][2], character)
    east = _lots(rng, ya + south[-1][2], yb - north[-1][2], character)
    boxes += [(xa + setback(), xa + depth(), p, q) for p, q in west]
    boxes += [(xb - depth(), xb - setback(), p, q) for p, q in east]
    # Drop a few lots: vacant lots and alleys let the camera see into the block.
    return [b for b in boxes if rng.random() > 0.06 and b[1] - b[0] > 1 and b[3] - b[2] > 1]


# Ranges of hue, saturation and value of wall colours; residential: San Francisco pastels.
WALL_HSV = {
    "residential": ((0.0, 1.0), (0.12, 0.55), (0.55, 0.95)),
    "brick": ((0.0, 0.06), (0.4, 0.65), (0.4, 0.7)),
    "sand": ((0.08, 0.14), (0.15, 0.4), (0.6, 0.9)),
    "blue": ((0.5, 0.62), (0.15, 0.35), (0.45, 0.75)),
    "grey": ((0.0, 1.0), (0.0, 0.08), (0.4, 0.85)),
    "paint": ((0.0, 1.0), (0.2, 0.6), (0.5, 0.9)),
}
WALL_KINDS = {"commercial": ["brick", "sand", "grey", "paint"], "tower": ["grey", "sand", "blue"]}


def _wall_colour(rng, character: str) -> tuple[float, float, float]:
    kind = rng.choice(WALL_KINDS[character]) if character in WALL_KINDS else character
    return hsv(*(rng.uniform(lo, hi) for lo, hi in WALL_HSV[kind]))


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


GEOMETRY = ("x0", "x1", "y0", "y1", "height")


def build_buildings(seed: int, xs, ys, half_x, half_y) -> Buildings:
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
    columns = {}
    for key in rows[0]:
        value = np.asarray([r[key] for r in rows])
        if value.dtype.kind == "f":
            value = value.astype(np.float32)
        # float32 values, but geometry in float64 for the ray caster
        columns[key] = value.astype(np.float64) if key in GEOMETRY else value
    return columns


def building_boxes(b: Buildings) -> Boxes:
    n = len(b["x0"])
    index = np.arange(n)
    return Boxes(
        *(b[key] for key in ("x0", "x1", "y0", "y1")),
        np.zeros(n),
        b["height"],
        kind=np.full(n, BUILDING, np.int8),
        ref=index.astype(np.int32),
        rgb=b["wall"].astype(np.float32),
        uid=index.astype(np.int64),
    )

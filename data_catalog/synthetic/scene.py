"""The synthetic city's primitives: local coordinates, seeded randomness and boxes.

Coordinates are local metres (x east, y north) from `ORIGIN`, a point in San Francisco in UTM
zone 10 S; `to_utm` adds the origin. Everything in the city is an axis-aligned box, which is
what the column ray caster in `render` needs. All randomness comes from numpy Generators
seeded with (seed, purpose, ...), so the city only depends on the seed and the preset.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from core.geo import UTMZone

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


BOX_FIELDS = ("x0", "x1", "y0", "y1", "z0", "z1", "kind", "ref", "rgb", "uid")


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
        cols = list(zip(*rows, strict=True)) or [()] * len(BOX_FIELDS)
        return Boxes(
            *(np.asarray(c, dtype=np.float64) for c in cols[:6]),
            kind=np.asarray(cols[6], dtype=np.int8),
            ref=np.asarray(cols[7], dtype=np.int32),
            rgb=np.asarray(cols[8], dtype=np.float32).reshape(-1, 3),
            uid=np.asarray(cols[9], dtype=np.int64),
        )

    @staticmethod
    def concat(parts: list[Boxes]) -> Boxes:
        return Boxes(*(np.concatenate([getattr(p, n) for p in parts]) for n in BOX_FIELDS))

    def select(self, mask: np.ndarray) -> Boxes:
        return Boxes(*(getattr(self, n)[mask] for n in BOX_FIELDS))


def to_utm(x, y) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(x) + ORIGIN[0], np.asarray(y) + ORIGIN[1]

"""Column ray casting (2.5D) of the synthetic city into panoramas and pinhole photos.

Every image column is a horizontal ray. It is intersected with all nearby boxes at once (numpy
over columns x boxes), the nearest few hits are kept, and each pixel of the column takes the
first hit whose vertical extent it sees (a pixel sees height z = camera height + distance *
tan(elevation) on a wall). Pixels that see no box are ground (below the horizon) or sky.
Panoramas are equirectangular cylinders; SF-XL-style crops are slices of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .city import City
from .conditions import Condition
from .facade import F32, facade_columns, shade_facade, shade_ground, shade_props, shade_sky
from .scene import BUILDING, CAMERA_HEIGHT_M, Boxes

MAX_DIST_M = 200.0  # buildings further away are not drawn (haze has mostly hidden them)
MAX_PROP_DIST_M = 70.0  # cars, trees, people: small, so only drawn when near
# Nearest boxes kept per column, buildings and props (cars, trees) counted apart: a ray along
# a row of parked cars must still reach the buildings at the end of the street.
BUILDING_HITS = 6
PROP_HITS = 5
CROPS_PER_PANORAMA = 12  # one every 30 degrees, like SF-XL
PANORAMA_PER_CROP = 6.5  # SF-XL: 3328 px panoramas, 512 px crops
HORIZON_FRACTION = 0.625  # SF-XL crops keep panorama rows 512..1024 of 1664: horizon at 320/512
FACE_NORMALS = np.asarray([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=F32)  # W, E, S, N faces


@dataclass(frozen=True)
class View:
    x: float
    y: float
    h: float
    azimuth_deg: np.ndarray  # [C] ray azimuth per column, 0 = North, 90 = East
    tan_elev: np.ndarray  # [R, C] or [R, 1] tangent of each pixel's elevation angle
    px_angle: float  # radians per pixel, for texture filtering


def panorama_width(size: int) -> int:
    """Panorama width for crops of `size` px: ~6.5 crops wide and divisible by 12."""
    return CROPS_PER_PANORAMA * max(1, round(PANORAMA_PER_CROP * size / CROPS_PER_PANORAMA))


def crop_fov_deg(size: int) -> float:
    return 360.0 * size / panorama_width(size)


def panorama_view(x: float, y: float, yaw: float, size: int, h: float = CAMERA_HEIGHT_M) -> View:
    """A 360 degree cylinder whose first `size` columns are the crop centred on `yaw`."""
    width = panorama_width(size)
    step = 360.0 / width
    azimuth = yaw - 0.5 * size * step + (np.arange(width) + 0.5) * step
    rows = HORIZON_FRACTION * size - (np.arange(size) + 0.5)
    tan_elev = np.tan(np.radians(rows * step)).astype(F32)[:, None]
    return View(x, y, h, azimuth, tan_elev, float(np.radians(step)))


def photo_view(
    x: float,
    y: float,
    h: float,
    heading: float,
    hfov: float,
    width: int,
    height: int,
    horizon: float,
) -> View:
    """A pinhole camera with no roll; `horizon` is the horizon row as a fraction of height."""
    focal = 0.5 * width / np.tan(np.radians(hfov) / 2)
    xc = np.arange(width) + 0.5 - 0.5 * width
    azimuth = heading + np.degrees(np.arctan2(xc, focal))
    yr = horizon * height - (np.arange(height) + 0.5)
    tan_elev = (yr[:, None] / np.hypot(xc, focal)[None, :]).astype(F32)
    return View(x, y, h, azimuth, tan_elev, float(1.0 / focal))


def cut_crops(panorama: np.ndarray, size: int) -> list[np.ndarray]:
    """The 12 crops of a panorama, crop k centred 30 * k degrees right of the first."""
    width = panorama.shape[1]
    step = width // CROPS_PER_PANORAMA
    return [
        np.take(panorama, np.arange(k * step, k * step + size) % width, axis=1)
        for k in range(CROPS_PER_PANORAMA)
    ]


# ----------------------------------------------------------------------------- ray casting


def _cull(boxes: Boxes, x: float, y: float) -> np.ndarray:
    """Boxes near the camera, buildings first."""
    dx = np.maximum(np.maximum(boxes.x0 - x, x - boxes.x1), 0.0)
    dy = np.maximum(np.maximum(boxes.y0 - y, y - boxes.y1), 0.0)
    building = boxes.kind == BUILDING
    radius = np.where(building, MAX_DIST_M, MAX_PROP_DIST_M)
    near = dx * dx + dy * dy < radius * radius
    return np.concatenate([np.flatnonzero(near & building), np.flatnonzero(near & ~building)])


@dataclass
class Hits:
    """The nearest boxes along each column's ray, [C, K] arrays sorted by distance."""

    box: np.ndarray  # index into the scene's boxes (0 where there is no hit)
    t_in: np.ndarray  # distance where the ray enters the box footprint
    t_out: np.ndarray  # distance where it leaves
    z0: np.ndarray  # vertical extent; an empty one (z0 > z1) where there is no hit
    z1: np.ndarray
    face: np.ndarray  # 0 W, 1 E, 2 S, 3 N: the face the ray enters through
    u: np.ndarray  # metres along that face, left to right as seen from outside
    width: np.ndarray  # width of that face
    cos_inc: np.ndarray  # |cos| of the angle between the ray and the face normal


SECTOR_COLUMNS = 48  # columns cast together against the boxes seen in their direction


def cast(boxes: Boxes, view: View) -> Hits:
    """Nearest hits of every column; columns go in angular sectors so that each sector only
    tests the boxes in its direction instead of every box around the camera."""
    az = np.radians(view.azimuth_deg)
    near = _cull(boxes, view.x, view.y)
    centre, half = _angular_extent(boxes, near, view)
    parts = []
    for start in range(0, len(az), SECTOR_COLUMNS):
        a = az[start : start + SECTOR_COLUMNS]  # increasing, maybe past 2 pi
        mid, spread = 0.5 * (a[0] + a[-1]), 0.5 * (a[-1] - a[0]) + 1e-3
        gap = np.abs(np.mod(centre - mid + np.pi, 2 * np.pi) - np.pi)
        parts.append(_cast_columns(boxes, near[gap <= spread + half], view, a))
    return Hits(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in Hits.__dataclass_fields__)
    )


def _angular_extent(boxes: Boxes, near: np.ndarray, view: View):
    """Azimuth of each box's centre and the half-angle its footprint spans (radians)."""
    x0, x1 = boxes.x0[near] - view.x, boxes.x1[near] - view.x
    y0, y1 = boxes.y0[near] - view.y, boxes.y1[near] - view.y
    centre = np.arctan2(0.5 * (x0 + x1), 0.5 * (y0 + y1))
    half = np.zeros_like(centre)
    for cx, cy in ((x0, y0), (x0, y1), (x1, y0), (x1, y1)):
        rel = np.mod(np.arctan2(cx, cy) - centre + np.pi, 2 * np.pi) - np.pi
        half = np.maximum(half, np.abs(rel))
    around = (x0 <= 0) & (x1 >= 0) & (y0 <= 0) & (y1 >= 0)
    return centre, np.where(around, np.pi, half)


def _nearest(dist: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k smallest values of each row (unordered), padded with -1."""
    rows, n = dist.shape
    if n <= k:
        pick = np.broadcast_to(np.arange(n), (rows, n))
    else:
        pick = np.argpartition(dist, k - 1, axis=1)[:, :k]
    return np.concatenate([pick, np.full((rows, k - pick.shape[1]), -1)], axis=1)


def _cast_columns(boxes: Boxes, near: np.ndarray, view: View, az: np.ndarray) -> Hits:
    """Slab test of rays at azimuths `az` against boxes `near` (buildings first): the
    BUILDING_HITS nearest buildings and PROP_HITS nearest props of each ray, by distance."""
    columns = len(az)
    k = BUILDING_HITS + PROP_HITS
    if len(near) == 0:
        return _no_hits(columns, k)
    dx, dy = np.sin(az), np.cos(az)
    bx0, bx1 = (boxes.x0[near] - view.x).astype(F32), (boxes.x1[near] - view.x).astype(F32)
    by0, by1 = (boxes.y0[near] - view.y).astype(F32), (boxes.y1[near] - view.y).astype(F32)
    z0, z1 = boxes.z0[near], boxes.z1[near]
    # Rays never run exactly along an axis.
    inv_x = (1.0 / np.where(np.abs(dx) < 1e-7, 1e-7, dx)).astype(F32)[:, None]
    inv_y = (1.0 / np.where(np.abs(dy) < 1e-7, 1e-7, dy)).astype(F32)[:, None]
    a, b = bx0 * inv_x, bx1 * inv_x
    near_x, far_x = np.minimum(a, b), np.maximum(a, b)
    a, b = by0 * inv_y, by1 * inv_y
    near_y, far_y = np.minimum(a, b), np.maximum(a, b)
    t_far = np.minimum(far_x, far_y)
    t_in = np.maximum(np.maximum(near_x, near_y), 0.0)
    # A box around the camera (a tree it stands under is fine, one it stands in is not).
    inside = (bx0 <= 0) & (bx1 >= 0) & (by0 <= 0) & (by1 >= 0) & (z0 <= view.h) & (z1 >= view.h)
    dist = np.where((t_far > t_in + 1e-4) & ~inside[None, :], t_in, np.inf)

    buildings = int(np.sum(boxes.kind[near] == BUILDING))
    pick = np.concatenate(
        [_nearest(dist[:, :buildings], BUILDING_HITS), _nearest(dist[:, buildings:], PROP_HITS)],
        axis=1,
    )
    pick[:, BUILDING_HITS:] += np.where(pick[:, BUILDING_HITS:] >= 0, buildings, 0)
    missing = pick < 0
    pick = np.where(missing, 0, pick)
    d = np.where(missing, np.inf, np.take_along_axis(dist, pick, 1))
    order = np.argsort(d, axis=1)
    pick, d = np.take_along_axis(pick, order, 1), np.take_along_axis(d, order, 1)
    valid = np.isfinite(d)
    box = near[pick]
    t_in = np.where(valid, d, 1e6).astype(F32)
    t_out = np.where(valid, np.take_along_axis(t_far, pick, 1), 1e6).astype(F32)
    face_x = np.take_along_axis(near_x, pick, 1) >= np.take_along_axis(near_y, pick, 1)
    face = np.where(face_x, np.where(dx[:, None] > 0, 0, 1), np.where(dy[:, None] > 0, 2, 3))
    hx = view.x + t_in * dx[:, None]
    hy = view.y + t_in * dy[:, None]
    u = np.select(
        [face == 0, face == 1, face == 2],
        [boxes.y1[box] - hy, hy - boxes.y0[box], hx - boxes.x0[box]],
        boxes.x1[box] - hx,
    )
    width = np.where(face_x, boxes.y1[box] - boxes.y0[box], boxes.x1[box] - boxes.x0[box])
    cos_inc = np.where(face_x, np.abs(dx)[:, None], np.abs(dy)[:, None])
    return Hits(
        box=box,
        t_in=t_in,
        t_out=t_out,
        z0=np.where(valid, boxes.z0[box], 1.0).astype(F32),
        z1=np.where(valid, boxes.z1[box], -1.0).astype(F32),
        face=face,
        u=u.astype(F32),
        width=width.astype(F32),
        cos_inc=cos_inc.astype(F32),
    )


def _no_hits(columns: int, k: int) -> Hits:
    zero = np.zeros((columns, k), F32)
    far, one = zero + 1e6, zero + 1
    return Hits(zero.astype(np.intp), far, far, one, -one, zero.astype(np.int64), zero, one, one)


# ----------------------------------------------------------------------------- shading


def render(
    city: City, boxes: Boxes, view: View, cond: Condition, year: int, rng: np.random.Generator
) -> np.ndarray:
    """A float32 [R, C, 3] image, linear-ish colours in 0..1 before the camera response."""
    hits = cast(boxes, view)
    columns = len(view.azimuth_deg)
    rows = view.tan_elev.shape[0]
    tan_e = np.broadcast_to(view.tan_elev, (rows, columns))
    k = hits.t_in.shape[1]

    # Each pixel's first hit whose vertical extent it crosses inside the box footprint.
    z_in = view.h + hits.t_in[None] * tan_e[..., None]
    z_out = view.h + hits.t_out[None] * tan_e[..., None]
    cover = (np.maximum(z_in, z_out) >= hits.z0[None]) & (np.minimum(z_in, z_out) <= hits.z1[None])
    first = cover.argmax(axis=2)
    covered = np.take_along_axis(cover, first[..., None], 2)[..., 0]

    image = np.empty((rows * columns, 3), F32)
    dist = np.full(rows * columns, np.inf, F32)
    flat_tan = tan_e.reshape(-1)
    flat_cov = covered.reshape(-1)
    az = np.radians(view.azimuth_deg).astype(F32)
    col_of = np.tile(np.arange(columns), rows)

    pix = np.flatnonzero(flat_cov)
    hit = col_of[pix] * k + first.reshape(-1)[pix]
    image[pix], dist[pix] = _shade_boxes(city, boxes, hits, hit, flat_tan[pix], view, cond, year)

    ground = np.flatnonzero(~flat_cov & (flat_tan < 0))
    d_g = view.h / -flat_tan[ground]
    a = az[col_of[ground]]
    gx, gy = view.x + d_g * np.sin(a), view.y + d_g * np.cos(a)
    light = cond.ambient + cond.sun * np.sin(np.radians(cond.sun_elevation))
    if cond.night:  # street lamps light the pavement near the camera
        light = light + 0.25 * np.exp(-d_g / 20.0)
    image[ground] = shade_ground(city, gx, gy, d_g, cond) * np.asarray(light, F32).reshape(-1, 1)
    dist[ground] = d_g

    sky = np.flatnonzero(~flat_cov & (flat_tan >= 0))
    image[sky] = shade_sky(az[col_of[sky]], flat_tan[sky], cond, rng.uniform(0, 2 * np.pi, 8))

    # Haze or fog over everything but the sky (infinitely far), which the condition colours.
    keep = np.exp(dist * F32(-1.0 / cond.visibility_m))
    keep[sky] = 1.0
    image = image * keep[:, None] + np.asarray(cond.fog_rgb, F32) * (1 - keep)[:, None]
    return image.reshape(rows, columns, 3)


def _shade_boxes(city, boxes, hits: Hits, hit, tan_e, view: View, cond: Condition, year: int):
    """Colour and distance of pixels that see a box: side faces, or caps (tops, bottoms)."""
    flat = {name: getattr(hits, name).reshape(-1) for name in Hits.__dataclass_fields__}
    box = flat["box"][hit]
    t_in = flat["t_in"][hit]
    z0, z1 = flat["z0"][hit], flat["z1"][hit]
    z = view.h + t_in * tan_e
    side = (z >= z0) & (z <= z1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cap_t = (np.where(z > z1, z1, z0) - view.h) / tan_e
    dist = np.where(side, t_in, cap_t).astype(F32)
    fz = t_in * view.px_angle * (1.0 + tan_e * tan_e)
    kind = boxes.kind[box]

    # Lambert light from the sun: per column hit for side faces, per pixel for caps.
    sun_az, sun_el = np.radians(cond.sun_azimuth), np.radians(cond.sun_elevation)
    normals = FACE_NORMALS[flat["face"]]  # elementwise: no BLAS, the same bytes on every CPU
    facing = normals[:, 0] * F32(np.sin(sun_az)) + normals[:, 1] * F32(np.cos(sun_az))
    side_light = (cond.ambient + cond.sun * np.cos(sun_el) * np.maximum(facing, 0.0)).astype(F32)
    light = side_light[hit]
    top_light = cond.ambient + cond.sun * np.sin(sun_el)
    light[~side] = np.where(z[~side] > z1[~side], top_light, 0.6 * cond.ambient)
    if cond.night:  # street lamps light the lower floors of nearby buildings
        light = light + 0.3 * np.exp(-np.maximum(z, 0) / 4.0) * np.exp(-dist / 25.0)

    colour = np.empty((len(hit), 3), F32)
    wall = np.flatnonzero(side & (kind == BUILDING))
    fu_hit = flat["t_in"] * view.px_angle / np.maximum(flat["cos_inc"], 0.15)
    u, width = flat["u"], flat["width"]
    columns = facade_columns(
        city.buildings, boxes.ref[flat["box"]], u, width, flat["face"], fu_hit, year
    )
    colour[wall], glow = shade_facade(columns, hit[wall], z[wall], fz[wall], year, cond)
    prop = np.flatnonzero(side & (kind != BUILDING))
    ph = hit[prop]
    colour[prop] = shade_props(
        boxes, box[prop], u[ph], z[prop], width[ph], z1[prop], fu_hit[ph], fz[prop], cond
    )
    caps = np.flatnonzero(~side)
    colour[caps] = boxes.rgb[box[caps]] * F32(0.85)

    colour *= light[:, None]
    if glow is not None:  # lit windows and signs: light of their own
        colour[wall] += glow
    return colour, dist

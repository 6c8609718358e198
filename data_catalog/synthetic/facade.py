"""Procedural surface colours: facades, props, ground and sky, for arrays of pixels.

Textures are functions of metric surface coordinates (u along a facade, z up), not images,
so thousands of buildings cost no memory. Every repeated pattern (windows, siding, lane marks)
is box-filtered over the pixel's footprint in metres: distant windows blend into the wall
colour instead of flickering, which keeps neighbouring viewpoints consistent.
Colours are albedo (lit later); `emissive` is light a surface gives off (lit windows, signs).
"""

from __future__ import annotations

import numpy as np

from .buildings import Buildings
from .conditions import Condition
from .scene import CABIN, CAR, CROWN, PERSON, SIDEWALK_M, Boxes

F32 = np.float32


def hash_mix(*keys, state=None) -> np.ndarray:
    """FNV-1a over integer keys; pass `state` to continue a hash started elsewhere."""
    h = np.uint32(2166136261) if state is None else state
    for key in keys:
        h = (h ^ np.asarray(key).astype(np.int64).astype(np.uint32)) * np.uint32(16777619)
    return np.asarray(h, dtype=np.uint32)


def hash01(*keys, state=None) -> np.ndarray:
    """A float in [0, 1) per element, a fixed function of integer keys."""
    h = hash_mix(*keys, state=state)
    h = h ^ (h >> np.uint32(15))
    h = h * np.uint32(0x2C1B3C6D)
    h = h ^ (h >> np.uint32(12))
    h = h * np.uint32(0x297A2D39)
    h = h ^ (h >> np.uint32(15))
    return (h >> np.uint32(8)).astype(F32) / F32(1 << 24)


def box_cov(x, a, b, w):
    """Fraction of the pixel footprint [x - w/2, x + w/2] that falls inside [a, b]."""
    lo = np.maximum(x - 0.5 * w, a)
    hi = np.minimum(x + 0.5 * w, b)
    return np.clip((hi - lo) / w, 0.0, 1.0)


def pulse_cov(x, period, width, w):
    """Fraction of the footprint covered by the pulses [k * period, k * period + width]."""
    inv = 1.0 / period

    def integral(t):
        q = np.floor(t * inv)
        return q * width + np.minimum(t - q * period, width)

    return (integral(x + 0.5 * w) - integral(x - 0.5 * w)) / w


def _mix(base, top, alpha):
    return base + (top - base) * alpha[:, None]


# Facades are shaded in two steps. Everything that depends on the position along the facade
# (u) is the same for a whole image column, so `facade_columns` computes it once per column
# hit; `shade_facade` then only evaluates what depends on the height (z) per pixel.


def facade_columns(b: Buildings, bi, u, width, face, fu, year: int) -> dict[str, np.ndarray]:
    """Per column hit: building parameters, year-resolved colours and the u-only terms."""

    def g(name: str) -> np.ndarray:
        return b[name][bi]

    fu = np.maximum(fu, 1e-3).astype(F32)
    u = u.astype(F32)
    period = g("win_period")
    cols = np.maximum(np.floor((width - 1.0) / period), 1.0)
    margin = 0.5 * (width - cols * period)
    win_w, frame = g("win_w") * period, g("frame_w")
    x = u - margin - 0.5 * (period - win_w)
    in_u = box_cov(u, margin, width - margin, fu)
    kind, pattern, pattern_period = g("ground_type"), g("pattern"), g("pattern_period")
    shop, house = kind == 1, kind == 0
    s0, s1 = g("sign_u0") * width, g("sign_u1") * width
    door_u, garage_u = g("door_frac") * width, g("garage_frac") * width
    floor_h, win_h = g("floor_h"), g("win_h") * g("floor_h")
    out = {
        "ground_h": g("ground_h"),
        "floor_h": floor_h,
        "win_h": win_h,
        "sill": 0.45 * (floor_h - win_h),
        "frame": frame,
        "top": np.floor((g("height") - g("cornice_h") - g("ground_h")) / floor_h) * floor_h,
        "belt": g("belt"),
        "height": g("height"),
        "cornice": g("height") - g("cornice_h"),
        "contrast": g("pattern_contrast"),
        # Siding (1) and stone courses (3) are horizontal stripes; panels (2) are vertical.
        "z_period": np.where(pattern == 3, 2 * pattern_period, pattern_period),
        "z_width": np.select([pattern == 1, pattern == 3], [0.25, 0.3], 0.0) * pattern_period,
        "panels": (pattern == 2) * pulse_cov(u, 4 * pattern_period, 0.1 * pattern_period, fu),
        "win_u": pulse_cov(x, period, win_w, fu) * in_u,
        "frame_u": pulse_cov(x + frame, period, win_w + 2 * frame, fu) * in_u,
        "row_hash": hash_mix(bi, face, np.floor((u - margin) / period)),
        "house": house.astype(F32),
        "shop": shop.astype(F32),
        "lobby": (kind == 2).astype(F32),
        "front": box_cov(u, 0.4, width - 0.4, fu)
        * (1.0 - pulse_cov(u, np.where(shop, 2.6, 1.6), 0.15, fu)),
        "sign_u": shop * box_cov(u, s0, s1, fu),
        "letters_u": pulse_cov(u - s0 - 0.3, 0.5, 0.3, fu) * box_cov(u, s0 + 0.3, s1 - 0.3, fu),
        "door_u": box_cov(u, door_u - 0.55, door_u + 0.55, fu),
        "garage_u": house * (garage_u > 0) * box_cov(u, garage_u - 1.3, garage_u + 1.3, fu),
        "wall": np.where((year >= g("repaint_year"))[:, None], g("wall2"), g("wall")),
        "trim": g("trim"),
        "glass": g("glass"),
        "door": g("door"),
        "garage": g("garage"),
        "sign": np.where((year >= g("sign_year"))[:, None], g("sign2"), g("sign")),
        "letter": g("letter"),
    }
    return {k: (v.astype(F32) if v.dtype.kind == "f" else v) for k, v in out.items()}


def _paint(colour: np.ndarray, alpha: np.ndarray, top, hit: np.ndarray) -> np.ndarray:
    """Blend `top` over `colour` where alpha > 0; most features cover few pixels, so the
    top colour is only looked up (`top(hits)`) for those."""
    idx = np.flatnonzero(alpha > 0)
    if len(idx):
        base = colour[idx]
        colour[idx] = base + (top(hit[idx]) - base) * alpha[idx, None]
    return idx


def shade_facade(cols: dict, hit, z, fz, year: int, cond: Condition):
    """Albedo and emissive colour of facade pixels at height z (metres) on column hits `hit`."""

    def c(name: str) -> np.ndarray:
        return cols[name][hit]

    fz = np.maximum(fz, 1e-3).astype(F32)
    z = z.astype(F32)
    stripes = pulse_cov(z, c("z_period"), c("z_width"), fz) + c("panels")
    colour = c("wall") * (1.0 - c("contrast") * stripes)[:, None]
    emissive = np.zeros_like(colour) if cond.lit_windows > 0 else None

    # Upper floors: a grid of framed windows with belt courses between floors.
    zz = z - c("ground_h")
    sill, frame, floor_h, top, win_h = c("sill"), c("frame"), c("floor_h"), c("top"), c("win_h")
    in_v = box_cov(zz, 0.0, top, fz)
    win_v = pulse_cov(zz - sill, floor_h, win_h, fz) * in_v
    frame_v = pulse_cov(zz - sill + frame, floor_h, win_h + 2 * frame, fz) * in_v
    belt = c("belt") * pulse_cov(zz + 0.12, floor_h, 0.24, fz) * box_cov(zz, -0.2, top, fz)
    _paint(colour, np.maximum(c("frame_u") * frame_v, belt), cols["trim"].__getitem__, hit)
    win = c("win_u") * win_v
    row = np.floor(zz / floor_h)
    _glaze(cols, colour, emissive, win, hit, row, year, cond)

    low = np.flatnonzero(zz < 0.5)  # only these pixels can see the ground floor
    if len(low):
        sub = emissive[low] if emissive is not None else None
        colour[low], sub = _ground_floor(
            cols, hit[low], colour[low], sub, z[low], fz[low], year, cond
        )
        if sub is not None:
            emissive[low] = sub
    cornice = box_cov(z, c("cornice"), c("height") + 1.0, fz)
    _paint(colour, cornice, lambda h: cols["trim"][h] * F32(0.75), hit)
    return colour, emissive


def _glaze(cols, colour, emissive, win, hit, row, year: int, cond: Condition) -> None:
    """Paint window glass (per-window tint, curtains, lit at night) where win > 0."""
    idx = np.flatnonzero(win > 0)
    if not len(idx):
        return
    h = hit[idx]
    state = hash_mix(row[idx], state=cols["row_hash"][h])
    h1 = hash01(1, state=state)
    h2 = hash01(2, state=state)
    h3 = hash01(year, state=state)  # curtains change between captures, reflections do not
    glass = cols["glass"][h] * (0.65 + 0.7 * h1)[:, None]
    curtain = np.asarray([0.85, 0.8, 0.68], F32) * (0.7 + 0.3 * h2)[:, None]
    glass = _mix(glass, curtain, 0.55 * (h3 < 0.25))
    alpha = win[idx, None]
    colour[idx] += (glass - colour[idx]) * alpha
    if emissive is not None:
        lit = (hash01(year, 99, state=state) < cond.lit_windows).astype(F32)
        glow = np.asarray([1.0, 0.82, 0.5], F32) * ((0.6 + 0.4 * h2) * lit)[:, None]
        emissive[idx] += glow * alpha


def _ground_floor(cols, hit, colour, emissive, z, fz, year: int, cond: Condition):
    """Doors, garages, shop windows with signs, and lobbies, by ground-floor type."""

    def c(name: str) -> np.ndarray:
        return cols[name][hit]

    ground_h = c("ground_h")
    # Houses: windows of the upper grid, lower down (row -1 of the window hash).
    house_win = c("house") * c("win_u") * box_cov(z, 0.9, ground_h - 0.6, fz)
    _glaze(cols, colour, emissive, house_win, hit, np.full(len(hit), -1.0, F32), year, cond)
    # Shops and lobbies: a glass front with mullions.
    front = c("front") * (
        c("shop") * box_cov(z, 0.5, ground_h - 1.2, fz)
        + c("lobby") * box_cov(z, 0.2, ground_h - 0.4, fz)
    )
    _paint(colour, front, lambda h: cols["glass"][h] * F32(1.2), hit)
    if emissive is not None:
        emissive += np.asarray([0.9, 0.8, 0.6], F32) * (cond.lit_windows * 1.5) * front[:, None]
    # Shop signs, with "letters": a light or dark stripe pattern inside the sign.
    sign = c("sign_u") * box_cov(z, ground_h - 1.1, ground_h - 0.25, fz)
    lit_sign = _paint(colour, sign, cols["sign"].__getitem__, hit)
    if emissive is not None and len(lit_sign):
        emissive[lit_sign] += cols["sign"][hit[lit_sign]] * (0.8 * cond.lit_windows)
    letters = sign * c("letters_u") * box_cov(z, ground_h - 0.95, ground_h - 0.45, fz)
    _paint(colour, letters, cols["letter"].__getitem__, hit)
    # A door on every facade, a garage door on some houses.
    door = c("door_u") * box_cov(z, -1.0, 2.3, fz)
    _paint(colour, door, cols["door"].__getitem__, hit)
    garage = c("garage_u") * box_cov(z, -1.0, 2.4, fz) * (1 - door)
    slats = 1.0 - 0.15 * pulse_cov(z, 0.5, 0.08, fz)
    idx = _paint(colour, garage, cols["garage"].__getitem__, hit)
    colour[idx] *= slats[idx, None]
    return colour, emissive


def shade_props(boxes: Boxes, box, u, z, width, top_z, fu, fz, cond: Condition) -> np.ndarray:
    """Albedo of the side faces of props `box` (cars, trees, people; trunks, poles: plain)."""
    kind, uid = boxes.kind[box], boxes.uid[box]
    colour = boxes.rgb[box]
    car, cabin = kind == CAR, kind == CABIN
    # Car bodies: wheels near the ends of the long sides and a shadow underneath; vans (tall
    # single boxes) get a window band; cabins are mostly glass between thin pillars.
    wheels = (
        car
        * (width > 3.0)
        * box_cov(z, -1.0, 0.6, fz)
        * (box_cov(u, 0.5, 1.3, fu) + box_cov(u, width - 1.3, width - 0.5, fu))
    )
    under = car * box_cov(z, -1.0, 0.22, fz)
    colour = _mix(colour, np.asarray([0.05, 0.05, 0.05], F32), np.minimum(wheels + under, 1.0))
    van = car * (top_z > 1.8) * box_cov(z, top_z - 0.75, top_z - 0.2, fz)
    glass = cabin * box_cov(z, top_z - 0.48, top_z - 0.07, fz) * box_cov(u, 0.12, width - 0.12, fu)
    colour = _mix(colour, np.asarray([0.1, 0.12, 0.15], F32), np.minimum(van + glass, 1.0))
    # Tree crowns: leafy noise on 25 cm cells, tinted by season.
    crown = kind == CROWN
    leaves = 0.7 + 0.6 * hash01(uid, np.floor(u * 4), np.floor(z * 4))
    colour = np.where(
        crown[:, None], colour * leaves[:, None] * np.asarray(cond.foliage, F32), colour
    )
    # People: head, shirt, trousers.
    person = kind == PERSON
    skin = person * box_cov(z, top_z - 0.25, 9.0, fz)
    legs = person * box_cov(z, -1.0, 0.85, fz)
    colour = _mix(colour, np.asarray([0.75, 0.58, 0.45], F32), skin)
    colour = _mix(colour, np.asarray([0.12, 0.13, 0.2], F32), legs)
    return colour.astype(F32)


def shade_ground(city, gx, gy, dist, cond: Condition) -> np.ndarray:
    """Road, sidewalk, lane marks and crosswalks at ground points (gx, gy)."""
    lat_x, half_x = _nearest_street(city.xs, city.half_x, gx)
    lat_y, half_y = _nearest_street(city.ys, city.half_y, gy)
    road = (lat_x < half_x - SIDEWALK_M) | (lat_y < half_y - SIDEWALK_M)
    walk = (lat_x < half_x) | (lat_y < half_y)
    colour = np.where(road[:, None], F32([0.3, 0.3, 0.32]), F32([0.6, 0.58, 0.55]))
    colour = np.where((~walk)[:, None], F32([0.5, 0.47, 0.4]), colour)
    fade = np.clip(1.5 - dist / 25.0, 0.0, 1.0)
    centre_ns = (lat_x < 0.12) & (lat_y > half_y) & (np.mod(gy, 6.0) < 3.0)
    centre_ew = (lat_y < 0.12) & (lat_x > half_x) & (np.mod(gx, 6.0) < 3.0)
    colour = _mix(colour, F32([0.85, 0.72, 0.2]), fade * (centre_ns | centre_ew))
    cross_ns = (lat_x < half_x - SIDEWALK_M) & (lat_y > half_y + 0.5) & (lat_y < half_y + 3.5)
    cross_ew = (lat_y < half_y - SIDEWALK_M) & (lat_x > half_x + 0.5) & (lat_x < half_x + 3.5)
    zebra = (cross_ns & (np.mod(gx, 1.2) < 0.6)) | (cross_ew & (np.mod(gy, 1.2) < 0.6))
    colour = _mix(colour, F32([0.85, 0.85, 0.82]), fade * zebra)
    grain = 0.94 + 0.12 * hash01(np.floor(gx * 2), np.floor(gy * 2))
    colour = colour * np.where(fade > 0, grain, 1.0)[:, None]
    if cond.wet:  # wet asphalt is darker and mirrors the sky a little
        colour = colour * 0.6 + 0.15 * np.asarray(cond.sky_horizon, F32)
    return colour.astype(F32)


def _nearest_street(centres: np.ndarray, halves: np.ndarray, coord: np.ndarray):
    i = np.clip(np.searchsorted(centres, coord), 1, len(centres) - 1)
    left = np.abs(coord - centres[i - 1])
    right = np.abs(coord - centres[i])
    near = np.where(left < right, i - 1, i)
    return np.minimum(left, right), halves[near]


def shade_sky(azimuth_rad, tan_elev, cond: Condition, phases: np.ndarray) -> np.ndarray:
    """Gradient sky with soft clouds; clouds are random per image, not part of the place."""
    elev = np.arctan(np.maximum(tan_elev, 0.0))
    t = np.clip(elev / 0.7, 0.0, 1.0)[:, None]
    sky = np.asarray(cond.sky_horizon, F32) * (1 - t) + np.asarray(cond.sky_zenith, F32) * t
    if cond.clouds > 0:
        # Blobs from products of waves in azimuth and elevation; integer azimuth
        # frequencies keep the clouds continuous around the panorama.
        noise = np.zeros_like(elev)
        for k, (f_az, f_el) in enumerate(((3, 9), (7, 17), (13, 29), (23, 41))):
            wave = np.sin(f_az * azimuth_rad + phases[k]) * np.sin(f_el * elev + phases[k + 4])
            noise += wave / (k + 1)
        cover = np.clip((noise + 1.8 * cond.clouds - 0.9) * 2.0, 0.0, 1.0) * np.clip(elev * 8, 0, 1)
        sky = _mix(sky, np.asarray(cond.cloud_rgb, F32), cover * 0.9)
    return sky.astype(F32)

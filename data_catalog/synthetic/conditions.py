"""Capture conditions: sun, sky, weather and camera look, and the image-space effects.

Street View panoramas (train, databases, val queries, queries_v2) are taken on clear days;
queries_v1 imitate the paper's Flickr photos with night, fog, rain, dusk and grayscale.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageFilter

RGB = tuple[float, float, float]
QUERY_DOMAINS = ("day", "overcast", "dusk", "night", "fog", "rain")
QUERY_DOMAIN_WEIGHTS = (0.25, 0.15, 0.15, 0.2, 0.12, 0.13)


@dataclass(frozen=True)
class Condition:
    name: str = "day"
    sun_azimuth: float = 180.0  # degrees from North, clockwise
    sun_elevation: float = 45.0
    sun: float = 0.55  # direct light on a surface facing the sun
    ambient: float = 0.55
    tint: RGB = (1.0, 1.0, 1.0)
    exposure: float = 1.0
    sky_zenith: RGB = (0.32, 0.52, 0.88)
    sky_horizon: RGB = (0.72, 0.82, 0.95)
    clouds: float = 0.3  # cloud cover 0..1
    cloud_rgb: RGB = (0.97, 0.97, 0.97)
    visibility_m: float = 1500.0  # distance at which haze/fog hides 63% of a surface
    fog_rgb: RGB = (0.78, 0.83, 0.9)
    night: bool = False
    wet: bool = False
    lit_windows: float = 0.0  # fraction of windows lit from inside
    foliage: RGB = (1.0, 1.0, 1.0)  # season tint of tree crowns
    saturation: float = 1.0
    contrast: float = 1.0
    grayscale: bool = False
    blur: float = 0.0  # Gaussian radius in pixels
    noise: float = 0.0  # std of sensor noise, 0..1 scale
    rain_streaks: float = 0.0  # density of rain streaks


def foliage_for_month(month: int) -> RGB:
    """Autumn yellows and winter browns, on top of each tree's own green."""
    if month in (10, 11):
        return (1.35, 1.1, 0.6)
    if month in (12, 1, 2):
        return (1.1, 0.95, 0.75)
    return (1.0, 1.0, 1.0)


def capture_condition(rng: np.random.Generator, month: int) -> Condition:
    """A Street View capture: a clear day, the sun somewhere in the southern sky."""
    return Condition(
        name="day",
        sun_azimuth=rng.uniform(90, 270),
        sun_elevation=rng.uniform(25, 65),
        sun=rng.uniform(0.4, 0.65),
        ambient=rng.uniform(0.5, 0.62),
        tint=_tint(rng, 0.04),
        exposure=rng.uniform(0.95, 1.08),
        clouds=rng.uniform(0.0, 0.5),
        visibility_m=rng.uniform(700, 2000),
        foliage=foliage_for_month(month),
    )


def mild_condition(rng: np.random.Generator, month: int) -> Condition:
    """queries_v2: another capture, with a little more variation in light and camera."""
    base = capture_condition(rng, month)
    return replace(
        base,
        sun_elevation=rng.uniform(15, 70),
        sun=rng.uniform(0.3, 0.7),
        tint=_tint(rng, 0.07),
        exposure=rng.uniform(0.85, 1.15),
        clouds=rng.uniform(0.0, 0.8),
        saturation=rng.uniform(0.85, 1.15),
    )


def query_condition(rng: np.random.Generator, month: int) -> Condition:
    """queries_v1: a crowd-sourced photo, often far from the database's domain."""
    domain = str(rng.choice(QUERY_DOMAINS, p=QUERY_DOMAIN_WEIGHTS))
    base = mild_condition(rng, month)
    camera = dict(
        saturation=rng.uniform(0.7, 1.4),
        contrast=rng.uniform(0.8, 1.25),
        grayscale=bool(rng.random() < 0.15),
        blur=float(rng.choice([0.0, 0.0, 0.5, 1.0])),
        noise=rng.uniform(0.0, 0.02),
    )
    domain_params = {
        "day": {},
        "overcast": dict(
            sun=0.05,
            ambient=rng.uniform(0.6, 0.75),
            clouds=1.0,
            cloud_rgb=(0.8, 0.8, 0.82),
            sky_zenith=(0.62, 0.64, 0.68),
            sky_horizon=(0.8, 0.81, 0.83),
            visibility_m=rng.uniform(300, 800),
        ),
        "dusk": dict(
            sun_elevation=rng.uniform(2, 10),
            sun=rng.uniform(0.3, 0.5),
            ambient=rng.uniform(0.3, 0.45),
            tint=(1.2, 0.9, 0.7),
            sky_zenith=(0.3, 0.35, 0.6),
            sky_horizon=(0.98, 0.6, 0.35),
            clouds=0.4,
            cloud_rgb=(0.95, 0.6, 0.5),
            lit_windows=0.15,
        ),
        "night": dict(
            night=True,
            sun=0.0,
            ambient=rng.uniform(0.07, 0.14),
            tint=(1.1, 1.0, 0.85),
            sky_zenith=(0.01, 0.015, 0.05),
            sky_horizon=(0.08, 0.07, 0.12),
            clouds=0.0,
            lit_windows=rng.uniform(0.25, 0.5),
            visibility_m=600.0,
            fog_rgb=(0.05, 0.05, 0.08),
            noise=rng.uniform(0.02, 0.05),
        ),
        "fog": dict(
            sun=0.05,
            ambient=rng.uniform(0.6, 0.75),
            clouds=0.0,
            visibility_m=rng.uniform(25, 60),
            fog_rgb=(0.78, 0.79, 0.8),
            sky_zenith=(0.78, 0.79, 0.8),
            sky_horizon=(0.78, 0.79, 0.8),
        ),
        "rain": dict(
            wet=True,
            sun=0.0,
            ambient=rng.uniform(0.45, 0.6),
            clouds=1.0,
            cloud_rgb=(0.55, 0.56, 0.6),
            sky_zenith=(0.45, 0.47, 0.52),
            sky_horizon=(0.6, 0.62, 0.66),
            visibility_m=rng.uniform(120, 300),
            fog_rgb=(0.55, 0.57, 0.6),
            rain_streaks=rng.uniform(0.3, 1.0),
        ),
    }[domain]
    return replace(base, name=domain, **{**camera, **domain_params})


def _tint(rng: np.random.Generator, amount: float) -> RGB:
    r, g, b = 1.0 + rng.uniform(-amount, amount, 3)
    return (float(r), float(g), float(b))


def post_process(image: np.ndarray, cond: Condition, rng: np.random.Generator) -> np.ndarray:
    """Camera response and weather in image space: float HxWx3 in, uint8 HxWx3 out."""
    image = image * np.asarray(cond.tint, np.float32) * cond.exposure
    if cond.rain_streaks:
        image = _rain(image, cond.rain_streaks, rng)
    grey = image.mean(axis=2, keepdims=True)
    image = grey + (image - grey) * cond.saturation
    image = 0.5 + (image - 0.5) * cond.contrast
    if cond.grayscale:
        # Elementwise, not a matrix product: BLAS kernels differ between CPUs in how they
        # round, and the render must be the same bytes on every machine.
        r, g, b = image[..., 0:1], image[..., 1:2], image[..., 2:3]
        luma = r * np.float32(0.299) + g * np.float32(0.587) + b * np.float32(0.114)
        image = np.repeat(luma, 3, axis=2)
    if cond.noise:
        image = image + rng.normal(0.0, cond.noise, image.shape).astype(np.float32)
    out = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if cond.blur:
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(cond.blur)))
    return out


def _rain(image: np.ndarray, density: float, rng: np.random.Generator) -> np.ndarray:
    """Light, slightly slanted streaks: sparse seeds smeared along a short line."""
    h, w, _ = image.shape
    seeds = (rng.random((h, w)) < 0.004 * density).astype(np.float32)
    streaks = np.zeros_like(seeds)
    length = max(3, h // 12)
    for step in range(length):
        streaks += np.roll(np.roll(seeds, step, axis=0), step // 4, axis=1)
    return image + 0.35 * np.minimum(streaks, 1.0)[..., None]

"""Plan a synthetic dataset in the SF-XL layout: the list of renders that make it.

`plan_dataset` turns a preset and a seed into a list of jobs (a panorama and the crops to
keep, or one photo); `writer` renders and writes them. Each job seeds its own generator from
(seed, subset, index), so the output does not depend on the order or the process jobs run in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .city import City, Track
from .presets import Preset
from .render import CROPS_PER_PANORAMA
from .scene import CAMERA_HEIGHT_M, rng_for

SUBSETS = (
    "train",
    "val/database",
    "val/queries",
    "val/queries_v1",
    "test/database",
    "test/queries_v1",
    "test/queries_v2",
)
PHOTO_ASPECTS = ((4, 3), (3, 4), (3, 2), (16, 9), (1, 1), (2, 3))
ALL_CROPS = tuple(range(CROPS_PER_PANORAMA))


@dataclass(frozen=True)
class Job:
    """One render: a panorama (crops kept: `crops`) or a pinhole photo (`photo` is set)."""

    folder: str  # relative output folder, e.g. "train/2015" or "test/queries_v1"
    index: int  # position in its subset; with the folder, seeds the job's generator
    x: float  # local metres, rounded to the centimetre written in the name
    y: float
    year: int
    month: int
    yaw: float  # heading of crop 0 (panorama) or of the optical axis (photo)
    crops: tuple[int, ...] = ()
    condition: str = "capture"  # capture, mild or query
    drive: tuple = ()  # key of the capture drive; its panoramas share one condition
    photo: tuple[float, int, int, float] | None = None  # hfov, width, height, horizon
    h: float = CAMERA_HEIGHT_M

    @property
    def images(self) -> int:
        return 1 if self.photo else len(self.crops)


def _drive(seed: int, subset: str, year: int, track: Track):
    """One capture car pass along a track: direction, lane, crop heading offset, month."""
    rng = rng_for(seed, "drive", subset, year, track.track_id)
    forward = rng.random() < 0.5
    heading = (0 if forward else 180) if track.axis == "ns" else (90 if forward else 270)
    # Drive on the right: heading north the lane is east of the centreline.
    right = 1.0 if heading in (0, 270) else -1.0
    lateral = right * rng.uniform(1.2, 2.4)
    # Crop headings are offset by 2..28 degrees from a multiple of 30, so jitter never moves
    # a crop across a 30 degree class border: a class gets the same headings every year.
    offset = int(rng.integers(2, 29))
    return heading + offset, lateral, int(rng.integers(1, 13))


def _district_tracks(city: City, folder: str) -> list[Track]:
    """The tracks of the district a folder ("train/2015", "val/queries"...) lies in."""
    district = folder.split("/")[0]
    return [t for t in city.tracks if t.district == district]


def _centimetres(point: tuple[float, float]) -> tuple[float, float]:
    return round(point[0], 2), round(point[1], 2)


def _jitter(yaw: float, rng: np.random.Generator) -> float:
    """The heading of crop 0 of a panorama: its drive's, give or take a degree."""
    return float((yaw + int(rng.integers(-1, 2))) % 360)


def _panoramas(city: City, folder: str, subset: str, year: int, spacing: float, start: int):
    """Panoramas every `spacing` metres along the tracks of the folder's district."""
    jobs = []
    for track in _district_tracks(city, folder):
        yaw0, lateral, month = _drive(city.seed, subset, year, track)
        drive = (subset, year, track.track_id)
        for k in range(int(round(track.length / spacing))):
            rng = rng_for(city.seed, "pano", subset, year, track.track_id, k)
            along = (k + 0.5) * spacing + rng.uniform(-0.15, 0.15)
            x, y = _centimetres(track.point(along, lateral + rng.uniform(-0.15, 0.15)))
            yaw, index = _jitter(yaw0, rng), start + len(jobs)
            jobs.append(Job(folder, index, x, y, year, month, yaw, ALL_CROPS, drive=drive))
    return jobs


def _pick_point(rng: np.random.Generator, tracks: list[Track]) -> tuple[Track, float]:
    lengths = np.asarray([t.length for t in tracks])
    track = tracks[int(rng.choice(len(tracks), p=lengths / lengths.sum()))]
    return track, float(rng.uniform(0, track.length))


def _query_crops(city: City, folder: str, subset: str, year: int, count: int, condition: str):
    """Single crops from panoramas of another capture year along the same streets."""
    tracks, jobs = _district_tracks(city, folder), []
    for i in range(count):
        rng = rng_for(city.seed, "query", subset, i)
        track, along = _pick_point(rng, tracks)
        yaw0, lateral, month = _drive(city.seed, subset, year, track)
        x, y = _centimetres(track.point(along, lateral + rng.uniform(-0.3, 0.3)))
        crop = int(rng.integers(CROPS_PER_PANORAMA))
        yaw, drive = _jitter(yaw0, rng), (subset, year, track.track_id)
        jobs.append(Job(folder, i, x, y, year, month, yaw, (crop,), condition, drive))
    return jobs


def _photos(city: City, folder: str, count: int, size: int) -> list[Job]:
    """queries_v1: pedestrians' photos anywhere across the street, any heading and lens."""
    tracks, jobs = _district_tracks(city, folder), []
    for i in range(count):
        rng = rng_for(city.seed, *photo_keys("photo", folder, i))
        track, along = _pick_point(rng, tracks)
        half = _street_half_width(city, track)
        x, y = _centimetres(track.point(along, rng.uniform(-(half - 0.8), half - 0.8)))
        aw, ah = PHOTO_ASPECTS[int(rng.integers(len(PHOTO_ASPECTS)))]
        short = max(16, round(size * 0.94))  # SF-XL resized v1 photos to a 480 px short side
        width, height = (
            (round(short * aw / ah), short) if aw >= ah else (short, round(short * ah / aw))
        )
        photo = (float(rng.uniform(40, 80)), width, height, float(rng.uniform(0.45, 0.7)))
        year = int(rng.integers(2014, 2022))
        h, month = float(rng.uniform(1.4, 1.9)), int(rng.integers(1, 13))
        yaw = float(rng.uniform(0, 360))
        jobs.append(Job(folder, i, x, y, year, month, yaw, condition="query", photo=photo, h=h))
    return jobs


def _street_half_width(city: City, track: Track) -> float:
    if track.axis == "ns":
        return float(city.half_x[np.argmin(np.abs(city.xs - track.fixed))])
    return float(city.half_y[np.argmin(np.abs(city.ys - track.fixed))])


def plan_dataset(city: City, preset: Preset) -> list[Job]:
    p, db = preset, preset.database_spacing_m
    jobs: list[Job] = []
    for year in p.train_years:
        jobs += _panoramas(city, f"train/{year}", "train", year, p.train_spacing_m, len(jobs))
    jobs += _panoramas(city, "val/database", "val_db", p.val_database_year, db, 0)
    jobs += _query_crops(city, "val/queries", "val_q", p.val_queries_year, p.val_queries, "capture")
    jobs += _panoramas(city, "test/database", "test_db", p.test_database_year, db, 0)
    jobs += _photos(city, "val/queries_v1", p.val_photos, p.image_size)
    jobs += _photos(city, "test/queries_v1", p.queries_v1, p.image_size)
    jobs += _query_crops(
        city, "test/queries_v2", "test_v2", p.queries_v2_year, p.queries_v2, "mild"
    )
    return jobs


def subset_of(folder: str) -> str:
    return "train" if folder.startswith("train") else folder


def count_images(jobs: list[Job]) -> dict[str, int]:
    counts = dict.fromkeys(SUBSETS, 0)
    for job in jobs:
        counts[subset_of(job.folder)] += job.images
    return counts


def photo_keys(kind: str, folder: str, index: int) -> tuple:
    """Random-stream keys of a photo; test/queries_v1 keeps its first keys, so adding the val
    photos left every test photo as it was."""
    return (kind, index) if folder == "test/queries_v1" else (kind, folder, index)

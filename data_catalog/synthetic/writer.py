"""Render a planned synthetic dataset (`plan`) and write it in the SF-XL layout.

`write_dataset` renders the jobs, in one process or several, and writes JPEGs named with
real SF-XL names, then metadata.json and a README. Each job seeds its own generator from
(seed, subset, index), so the same seed gives the same bytes whatever the number of workers.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from core.geo import utm_to_latlon
from data_catalog.names import make_name

from .city import City, build_city
from .conditions import Condition, capture_condition, mild_condition, post_process, query_condition
from .plan import SUBSETS, Job, count_images, photo_keys, plan_dataset, subset_of
from .presets import Preset
from .render import (
    CROPS_PER_PANORAMA,
    View,
    crop_fov_deg,
    cut_crops,
    panorama_view,
    panorama_width,
    photo_view,
    render,
)
from .scene import DISTRICTS, PERSON, POLE, ZONE, Boxes, hsv, rng_for, to_utm

NOTE = "synthetic"
JPEG_QUALITY = 90
GENERATOR = "cosplace-explorer data_catalog.synthetic"
FORMAT_VERSION = 1

# ----------------------------------------------------------------------------- rendering


def job_condition(city: City, job: Job) -> Condition:
    rng = rng_for(city.seed, "condition", *job.drive) if job.drive else None
    if job.condition == "capture":
        return capture_condition(rng, job.month)
    if job.condition == "mild":
        # Same drive, but each query photo gets its own light on top of it.
        return mild_condition(rng_for(city.seed, "mild", job.folder, job.index), job.month)
    return query_condition(
        rng_for(city.seed, *photo_keys("query_condition", job.folder, job.index)), job.month
    )


def _occluders(rng: np.random.Generator, job: Job) -> Boxes:
    """People and poles close in front of a photo's camera."""
    rows = []
    hfov = job.photo[0]
    for n in range(int(rng.choice([0, 0, 1, 1, 2, 3]))):
        kind = PERSON if rng.random() < 0.8 else POLE
        dist = rng.uniform(2.0, 8.0)
        angle = np.radians(job.yaw + rng.uniform(-0.4, 0.4) * hfov)
        cx, cy = job.x + dist * np.sin(angle), job.y + dist * np.cos(angle)
        half = 0.25 if kind == PERSON else 0.12
        top = rng.uniform(1.55, 1.9) if kind == PERSON else rng.uniform(3.0, 5.0)
        rgb = hsv(rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8))
        if kind == POLE:
            rgb = (0.35, 0.36, 0.38)
        rows.append(
            (cx - half, cx + half, cy - half, cy + half, 0.0, top, kind, -1, rgb, 3_000_000 + n)
        )
    return Boxes.from_rows(rows)


def render_job(city: City, job: Job, size: int) -> list[tuple[str, bytes]]:
    """(file name, JPEG bytes) of every image of a job."""
    rng = rng_for(city.seed, "render", job.folder, job.index)
    cond = job_condition(city, job)
    scene = city.scene(job.year)
    extra = _occluders(rng, job) if job.photo else Boxes.from_rows([])
    if len(extra):
        scene = Boxes.concat([scene, extra])

    def shoot(view: View) -> np.ndarray:
        return post_process(render(city, scene, view, cond, job.year, rng), cond, rng)

    if job.photo:
        images = [shoot(photo_view(job.x, job.y, job.h, job.yaw, *job.photo))]
    elif len(job.crops) == CROPS_PER_PANORAMA:
        # The camera response runs once on the panorama, before cutting overlapping crops.
        images = cut_crops(shoot(panorama_view(job.x, job.y, job.yaw, size, job.h)), size)
    else:  # a query keeps one crop: render only its columns
        images = [shoot(_crop_view(job, k, size)) for k in job.crops]
    names = image_names(city.seed, job)
    return [(name, encode_jpeg(pixels)) for name, pixels in zip(names, images, strict=True)]


def _crop_view(job: Job, k: int, size: int) -> View:
    """The columns of crop k of the job's panorama, exactly as `cut_crops` would cut them."""
    full = panorama_view(job.x, job.y, job.yaw + 30 * k, size, job.h)
    return View(full.x, full.y, full.h, full.azimuth_deg[:size], full.tan_elev, full.px_angle)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _pano_id(seed: int, job: Job) -> str:
    """22 characters like a Street View pano id, fixed by the seed and the job."""
    digest = hashlib.blake2b(f"{seed}/{job.folder}/{job.index}".encode(), digest_size=16)
    return base64.urlsafe_b64encode(digest.digest()).decode()[:22]


def image_names(seed: int, job: Job) -> list[str]:
    """The SF-XL names of a job's images: its crops in order (crop k heads 30 * k degrees
    right of the job's yaw), or its photo, whose name has no heading."""
    east, north = to_utm(job.x, job.y)
    lat, lon = utm_to_latlon(east, north, ZONE)
    where = (float(east), float(north), ZONE.number, ZONE.letter, float(lat[0]), float(lon[0]))
    headings = [int(round((job.yaw + 30 * k) % 360)) % 360 for k in job.crops] or [None]
    when = f"{job.year}{job.month:02d}"
    pano_id = _pano_id(seed, job)
    return [
        make_name(*where, pano_id=pano_id, heading=h, timestamp=when, note=NOTE) for h in headings
    ]


# ----------------------------------------------------------------------------- writing

_WORKER_CITY: City | None = None


def _init_worker(preset: Preset, seed: int) -> None:
    global _WORKER_CITY
    _WORKER_CITY = build_city(preset, seed)


def _work(job: Job) -> tuple[Job, list[tuple[str, bytes]]]:
    return job, render_job(_WORKER_CITY, job, _WORKER_CITY.preset.image_size)


def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite)")
        for name in ("train", "val", "test", "metadata.json", "README.txt"):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def write_dataset(
    out: str | os.PathLike,
    preset: Preset,
    seed: int,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Render and write the whole dataset; returns the metadata (with timing added)."""
    from tqdm import tqdm

    out = Path(out)
    _prepare_output(out, overwrite)
    city = build_city(preset, seed)
    jobs = plan_dataset(city, preset)
    for folder in sorted({job.folder for job in jobs} | set(SUBSETS[1:])):
        (out / folder).mkdir(parents=True, exist_ok=True)
    total = sum(job.images for job in jobs)
    start = time.perf_counter()
    with tqdm(total=total, unit="img", desc="synthetic city", disable=not progress) as bar:
        for job, files in _run_jobs(city, jobs, workers):
            for name, data in files:
                (out / job.folder / name).write_bytes(data)
            bar.update(len(files))
    seconds = time.perf_counter() - start
    metadata = build_metadata(city, preset, jobs)
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    (out / "README.txt").write_text(readme_text(metadata))
    return {**metadata, "seconds": seconds, "images_per_second": total / max(seconds, 1e-9)}


def _run_jobs(city: City, jobs: list[Job], workers: int):
    if workers <= 1:
        for job in jobs:
            yield job, render_job(city, job, city.preset.image_size)
        return
    from multiprocessing import get_context

    with get_context().Pool(workers, _init_worker, (city.preset, city.seed)) as pool:
        yield from pool.imap(_work, jobs, chunksize=8)


# ----------------------------------------------------------------------------- metadata


def build_metadata(city: City, preset: Preset, jobs: list[Job]) -> dict:
    """What made the dataset; no timings, so that two builds give identical files."""
    bounds = {}
    for name in DISTRICTS:
        x0, y0, x1, y1 = city.district_bounds(name)
        (e0, e1), (n0, n1) = to_utm([x0, x1], [y0, y1])
        bounds[name] = {"east": [float(e0), float(e1)], "north": [float(n0), float(n1)]}
    years: dict[str, set[int]] = {s: set() for s in SUBSETS}
    for job in jobs:
        years[subset_of(job.folder)].add(job.year)
    return {
        "synthetic": True,
        "description": (
            "SYNTHETIC data: a procedurally generated city rendered by a 2.5D ray caster, laid "
            "out and named like SF-XL at San Francisco coordinates. It is not real imagery."
        ),
        "generator": GENERATOR,
        "format_version": FORMAT_VERSION,
        "preset": preset.name,
        "seed": city.seed,
        "image_size": preset.image_size,
        "panorama_width": panorama_width(preset.image_size),
        "crop_fov_deg": round(crop_fov_deg(preset.image_size), 3),
        "parameters": asdict(preset),
        "utm_zone": f"{ZONE.number}{ZONE.letter}",
        "districts": bounds,
        "subsets": {
            s: {"images": n, "years": sorted(years[s])} for s, n in count_images(jobs).items()
        },
        "note_field": NOTE,
    }


def readme_text(metadata: dict) -> str:
    lines = [
        "SYNTHETIC DATASET - not real street-level imagery.",
        "",
        f"Made by {metadata['generator']} (format {metadata['format_version']}),",
        f"preset '{metadata['preset']}', seed {metadata['seed']}, crops of "
        f"{metadata['image_size']}x{metadata['image_size']} px.",
        "",
        "A procedural city (streets, buildings with distinct facades, trees, parked cars) is",
        "rendered from camera tracks along its streets in several capture years. The folders",
        "follow the SF-XL layout and every file name is an SF-XL name at San Francisco UTM",
        f"coordinates (zone {metadata['utm_zone']}) with '{metadata['note_field']}' in the note "
        "field.",
        "",
        "train/            12 crops per panorama, 30 degrees apart, grouped by year",
        "val/database      one capture year; val/queries: single crops of another year",
        "val/queries_v1    photos like test/queries_v1, in the val district (for tuning)",
        "test/database     one capture year (2013, like SF-XL)",
        "test/queries_v1   photos of other domains (night, fog, rain, dusk, grayscale, other",
        "                  lenses and viewpoints, occluders); no heading in their names",
        "test/queries_v2   single crops of a later year with mild changes; heading kept",
        "",
        "Train, val and test lie in separate districts of the city (see metadata.json).",
        "",
        "Images per subset:",
    ]
    for subset, info in metadata["subsets"].items():
        years = ", ".join(str(y) for y in info["years"])
        lines.append(f"  {subset:<18}{info['images']:>7}   years: {years}")
    return "\n".join(lines) + "\n"

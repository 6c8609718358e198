"""Rendering speed of the synthetic city: panoramas cut into SF-XL crops, and query photos.

    python benchmarks/synthetic_render.py [--panoramas 40] [--photos 20] [--sizes 128 256]

Prints one row per image size: ms per panorama to render, ms per panorama including the 12
crops' camera response and JPEG encoding, and images/s end to end (single process; files are
encoded but not written, so disk speed does not count).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_catalog.synthetic import build_city, get_preset, plan_dataset  # noqa: E402
from data_catalog.synthetic.conditions import capture_condition, post_process  # noqa: E402
from data_catalog.synthetic.render import (  # noqa: E402
    CROPS_PER_PANORAMA,
    cut_crops,
    panorama_view,
    panorama_width,
    render,
)
from data_catalog.synthetic.scene import rng_for  # noqa: E402
from data_catalog.synthetic.writer import encode_jpeg, render_job  # noqa: E402


def bench_panoramas(city, size: int, count: int) -> dict:
    tracks = [t for t in city.tracks if t.district == "train"]
    scene = city.scene(2013)
    render_s = total_s = 0.0
    for i in range(count):
        track = tracks[i % len(tracks)]
        x, y = track.point((i * 7.3) % track.length, 1.8)
        rng = rng_for(0, "bench", i)
        cond = capture_condition(rng, 6)
        start = time.perf_counter()
        pano = render(city, scene, panorama_view(x, y, (i * 37) % 360, size), cond, 2013, rng)
        rendered = time.perf_counter()
        for crop in cut_crops(post_process(pano, cond, rng), size):
            encode_jpeg(crop)
        render_s += rendered - start
        total_s += time.perf_counter() - start
    images = count * CROPS_PER_PANORAMA
    return {
        "what": "panorama -> 12 crops",
        "size": f"{size}x{size} (pano {panorama_width(size)}x{size})",
        "renders": count,
        "images": images,
        "ms_render": 1000 * render_s / count,
        "ms_total": 1000 * total_s / count,
        "images_per_s": images / total_s,
    }


def bench_photos(city, preset, count: int) -> dict:
    """queries_v1 jobs of the real plan: varied sizes, domains and occluders."""
    jobs = [j for j in plan_dataset(city, preset) if j.photo][:count]
    start = time.perf_counter()
    for job in jobs:
        render_job(city, job, preset.image_size)
    seconds = time.perf_counter() - start
    return {
        "what": "queries_v1 photo",
        "size": f"short side {round(preset.image_size * 0.94)}",
        "renders": len(jobs),
        "images": len(jobs),
        "ms_render": float("nan"),
        "ms_total": 1000 * seconds / max(len(jobs), 1),
        "images_per_s": len(jobs) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panoramas", type=int, default=40)
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    args = parser.parse_args()

    rows = []
    for size in args.sizes:
        preset = get_preset("demo", image_size=size)
        city = build_city(preset, seed=0)
        warm_view = panorama_view(150, 150, 0, size)
        condition = capture_condition(rng_for(0, "warm"), 6)
        render(city, city.scene(2013), warm_view, condition, 2013, rng_for(0, "warm"))  # warm-up
        rows.append(bench_panoramas(city, size, args.panoramas))
        if size == args.sizes[0] and args.photos:
            rows.append(bench_photos(city, preset, args.photos))

    print(f"synthetic city rendering, {platform.processor() or platform.machine()}, 1 process")
    header = f"{'what':<22}{'image size':<28}{'renders':>8}{'images':>8}"
    header += f"{'ms/render':>11}{'ms/render+jpeg':>16}{'images/s':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['what']:<22}{r['size']:<28}{r['renders']:>8}{r['images']:>8}"
            f"{r['ms_render']:>11.1f}{r['ms_total']:>16.1f}{r['images_per_s']:>10.0f}"
        )


if __name__ == "__main__":
    main()

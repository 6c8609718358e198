"""Command line: write a synthetic SF-XL-layout dataset.

python -m data_catalog.synthetic --preset {tiny,demo} --seed S --out DIR [--image_size N]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from core.partition import DEFAULT_MIN_IMAGES_PER_CLASS, PartitionParams, class_keys

from .city import build_city
from .plan import count_images, plan_dataset
from .presets import PRESETS, get_preset
from .render import CROPS_PER_PANORAMA
from .scene import to_utm
from .writer import write_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m data_catalog.synthetic",
        description="Render a SYNTHETIC city into an SF-XL-layout dataset (not real imagery).",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--image_size", type=int, default=None, help="crop size in px (128)")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    parser.add_argument("--dry_run", action="store_true", help="print the plan, render nothing")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.image_size is not None and args.image_size < 16:
        parser.error("--image_size must be at least 16")
    return args


def train_class_summary(jobs) -> str:
    """How the train crops fall into CosPlace classes at the default partition."""
    crops = [
        (*map(float, to_utm(job.x, job.y)), (job.yaw + 30 * k) % 360)
        for job in jobs
        if job.folder.startswith("train")
        for k in job.crops
    ]
    if not crops:
        return "train: no images"
    params = PartitionParams()
    east, north, heading = np.asarray(crops).T
    keys = class_keys(east, north, heading, params.M, params.alpha)
    sizes = np.unique(keys, axis=0, return_counts=True)[1]
    kept = sizes[sizes >= params.min_images_per_class]
    return (
        f"train classes (M=10 m, alpha=30 deg) with >= {DEFAULT_MIN_IMAGES_PER_CLASS} images: "
        f"{len(kept)} of {len(sizes)}, images per kept class: "
        f"median {int(np.median(kept)) if len(kept) else 0}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preset = get_preset(args.preset, image_size=args.image_size)
    print(f"SYNTHETIC dataset: preset {preset.name}, seed {args.seed}, {preset.image_size} px")
    if args.dry_run:
        jobs = plan_dataset(build_city(preset, args.seed), preset)
        panoramas = sum(len(j.crops) == CROPS_PER_PANORAMA for j in jobs)
        for subset, n in count_images(jobs).items():
            print(f"  {subset:<18}{n:>7} images")
        print(f"  {len(jobs)} renders ({panoramas} full panoramas)")
        print(train_class_summary(jobs))
        return 0
    info = write_dataset(
        args.out,
        preset,
        args.seed,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    for subset, sub in info["subsets"].items():
        years = ",".join(str(y) for y in sub["years"])
        print(f"  {subset:<18}{sub['images']:>7} images  years {years}")
    total = sum(sub["images"] for sub in info["subsets"].values())
    print(
        f"wrote {total} synthetic images to {args.out} in {info['seconds']:.1f} s "
        f"({info['images_per_second']:.0f} images/s at {preset.image_size}x{preset.image_size})"
    )
    return 0


# numpy picks SIMD code for sin, exp, power... by the CPU it runs on, and the variants differ
# in the last bit, which moves a pixel level here and there. Rendering with the baseline
# (x86-64-v2) code on every machine makes a city the same bytes on AVX2 and AVX-512 CPUs,
# so that a shipped model's record can check the city it was trained on.
SAME_ON_EVERY_CPU = {"NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"}


def rerun_with_baseline_simd() -> None:
    """Start this command again under SAME_ON_EVERY_CPU (numpy reads it at import)."""
    if all(os.environ.get(k) == v for k, v in SAME_ON_EVERY_CPU.items()):
        return
    env = {**os.environ, **SAME_ON_EVERY_CPU}
    os.execve(sys.executable, [sys.executable, "-m", "data_catalog.synthetic", *sys.argv[1:]], env)


if __name__ == "__main__":
    rerun_with_baseline_simd()
    sys.exit(main())

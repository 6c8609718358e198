"""Descriptor extraction overhead: the library's path against a bare torchvision forward.

Both run ResNet-18 on the same 224x224 batches on the CPU, in one process, alternating so
that a busy machine slows both alike. The goal is that core.descriptors adds no more than
10 % to the bare forward pass.

    python benchmarks/descriptor_extraction.py [--num_images 256 --batch_size 32]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torchvision
from torch.utils.data import TensorDataset

from benchmarks.table import print_table, timed
from core.descriptors import extract_descriptors
from core.model import CosPlaceNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    images = torch.randn(args.num_images, 3, args.image_size, args.image_size)
    batches = images.split(args.batch_size)
    bare = torchvision.models.resnet18(weights=None).eval()
    ours = CosPlaceNet("ResNet18", 512).eval()
    dataset = TensorDataset(images, torch.arange(args.num_images))

    def bare_forward() -> None:
        with torch.inference_mode():
            for batch in batches:
                bare(batch)

    def library() -> None:
        extract_descriptors(ours, dataset, batch_size=args.batch_size, progress=False)

    bare_forward(), library()  # warm-up: first calls allocate and pick kernels
    timings: dict[Callable, list[float]] = {bare_forward: [], library: []}
    for _ in range(args.repeats):
        for function, times in timings.items():
            times.append(timed(function)[1])
    bare_time, library_time = (min(times) for times in timings.values())
    print(
        f"ResNet-18, {args.num_images} images of {args.image_size}x{args.image_size}, "
        f"batch {args.batch_size}, CPU, {torch.get_num_threads()} threads"
    )
    print_table(
        ["path", "images/s", "time (s)", "vs bare"],
        [
            ["torchvision resnet18 forward (bare)", args.num_images / bare_time, bare_time, 1.0],
            [
                "core.descriptors.extract_descriptors",
                args.num_images / library_time,
                library_time,
                library_time / bare_time,
            ],
        ],
    )


if __name__ == "__main__":
    main()

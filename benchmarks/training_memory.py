"""Training cost of CosPlace against the triplet baseline: time per iteration, images/s, memory.

Both train the same network (ResNet-18, GeM, FC to --fc_output_dim) on random tensors of the
same size, so no dataset is needed. Configurations:

    cosplace                 B images, a CosFace head over --num_classes classes
    triplet, equal images    B // (2 + K) tuples, about the images of one CosPlace batch
    triplet, equal queries   B tuples (query, positive, K negatives): B * (2 + K) images
    triplet cache (no grad)  B images through the network for the mining cache

Each runs in a fresh subprocess, so its peak memory is its own: ru_maxrss of that process
(its rise over the idle model is the training step's), and torch.cuda.max_memory_allocated
on CUDA. The training set's descriptor cache, which CosPlace does not need, is added below.

    python -m benchmarks.training_memory [--batch_size 24 --image_size 128 --iterations 3]
    python -m benchmarks.training_memory --device cuda --batch_size 32 --image_size 512
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.table import peak_rss_mb, print_table
from core.errors import UserError, user_errors
from core.heads import CosFace
from core.model import CosPlaceNet
from training.baselines.triplet import triplet_loss
from training.train import Trainee

CONFIGS = {
    "cosplace": "CosPlace (CosFace head)",
    "triplet_equal_images": "triplet, equal images",
    "triplet_equal_queries": "triplet, equal queries",
    "triplet_cache": "triplet cache (no grad)",
}
NETVLAD_DIM = 32_768


def tuples_and_images(config: str, batch_size: int, negs_num: int) -> tuple[int, int]:
    per_tuple = 2 + negs_num
    if config == "triplet_equal_images":
        tuples = max(1, batch_size // per_tuple)
        return tuples, tuples * per_tuple
    if config == "triplet_equal_queries":
        return batch_size, batch_size * per_tuple
    return 0, batch_size


def training_step(config: str, args, model, device):
    """A closure running one iteration of `config`, and (tuples, images) per iteration."""
    tuples, images = tuples_and_images(config, args.batch_size, args.negs_num_per_query)
    batch = torch.randn(images, 3, args.image_size, args.image_size, device=device)
    dtype = torch.bfloat16 if device.type == "cuda" else None  # as training.train on CUDA
    if device.type == "cuda":
        batch = batch.contiguous(memory_format=torch.channels_last)
    if config == "triplet_cache":

        def step() -> None:
            with torch.inference_mode(), torch.autocast(device.type, dtype, enabled=bool(dtype)):
                model(batch)

        return step, tuples, images
    optimizers = [torch.optim.Adam(model.parameters(), lr=1e-5)]
    if config == "cosplace":
        head = CosFace(args.fc_output_dim, args.num_classes).to(device)
        optimizers.append(torch.optim.Adam(head.parameters(), lr=0.01))
        trainee = Trainee(model, head)
        labels = torch.randint(args.num_classes, (images,), device=device)

        def loss_of_batch():
            return trainee(batch, labels)
    else:

        def loss_of_batch():
            return triplet_loss(model(batch).float(), args.negs_num_per_query, 0.1)

    def step() -> None:
        with torch.autocast(device.type, dtype, enabled=bool(dtype)):
            loss = loss_of_batch()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()

    return step, tuples, images


def measure(config: str, args) -> dict:
    """One configuration, in this process: best seconds per iteration and peak memory."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = CosPlaceNet("ResNet18", args.fc_output_dim).to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    step, tuples, images = training_step(config, args, model, device)
    idle_rss = peak_rss_mb()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    step()  # warm-up: allocates optimizer states and picks kernels
    times = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = min(times)  # the least disturbed by other work on a shared machine
    return {
        "config": config,
        "tuples": tuples,
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "peak_rss_mib": peak_rss_mb(),
        "step_rss_mib": peak_rss_mb() - idle_rss,
        "cuda_peak_mib": torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else None,
    }


def measure_in_subprocess(config: str, argv: list[str], threads: int) -> dict:
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "benchmarks.training_memory", *argv, "--config", config]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{config} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_results(results: list[dict], args) -> None:
    cuda = args.device == "cuda"
    headers = ["configuration", "tuples", "images/it", "s/it", "images/s", "peak RSS MiB"]
    headers += ["step RSS MiB"] + (["CUDA peak MiB"] if cuda else [])
    rows = []
    for r in results:
        row = [CONFIGS[r["config"]], r["tuples"] or "-", r["images"], r["seconds"]]
        row += [r["images_per_s"], r["peak_rss_mib"], r["step_rss_mib"]]
        rows.append(row + ([r["cuda_peak_mib"]] if cuda else []))
    print(
        f"ResNet-18 -> {args.fc_output_dim}-D, {args.image_size}x{args.image_size} images, "
        f"batch {args.batch_size}, K={args.negs_num_per_query} negatives, "
        f"{args.num_classes} classes per CosPlace group, {args.device}"
        + ("" if cuda else f", {args.threads} threads")
    )
    print_table(headers, rows)
    gib = args.cache_images * 4 / 2**30
    print(
        f"Mining cache of {args.cache_images:,} train descriptors (float32): "
        f"{gib * args.fc_output_dim:,.1f} GiB at {args.fc_output_dim}-D, "
        f"{gib * NETVLAD_DIM:,.0f} GiB at NetVLAD's 32k-D; CosPlace keeps none."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=24, help="CosPlace images / tuples")
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--fc_output_dim", type=int, default=512)
    parser.add_argument("--negs_num_per_query", type=int, default=10)
    parser.add_argument("--num_classes", type=int, default=5000, help="classes of one group")
    parser.add_argument("--iterations", type=int, default=3, help="timed, after one warm-up")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--cache_images", type=int, default=5_600_000, help="SF-XL train")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--config", choices=list(CONFIGS), help=argparse.SUPPRESS)  # child
    return parser


@user_errors
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA is not available: run with --device cpu, or on a machine with a GPU")
    if args.config:  # a child: measure one configuration, print it as JSON
        torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.config, args)))
        return
    results = []
    for config in args.configs:
        results.append(measure_in_subprocess(config, argv, args.threads))
        print(f"{config}: {results[-1]['seconds']:.2f} s/it", file=sys.stderr)
    print_results(results, args)


if __name__ == "__main__":
    main()

"""Training throughput in the real loop: fp32 against bf16 autocast, on the CPU.

Each configuration runs `training.train.train_epoch` (the loader, augmentation, forward,
CosFace loss, backward and both Adam steps; channels_last in both, as training runs) on one
group of a dataset, by default the synthetic demo city. The configurations alternate,
--repeats times each, and the best run of each is kept, so that other work on a shared
machine disturbs them alike; the ratio to fp32 is the figure to read. Besides wall-clock
images/s, it reports images per CPU-second of this process (time.process_time), which other
processes on a shared machine barely change when torch runs one thread (the default here:
--threads 1). A "loader only" row times the batches alone (decode, random resized crop,
colour jitter), which the network's dtype does not speed up.

    python -m benchmarks.training_throughput [--dataset_folder data/synthetic_demo]
        [--image_sizes 96 128] [--batch_size 32] [--iterations 20] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.table import print_table
from core.errors import UserError, user_errors
from training import config
from training.data import GroupDataset, load_train_set
from training.distributed import Context
from training.train import Trainee, augmentation, build_training, group_batches, train_epoch

PRECISIONS = {"fp32": [], "bf16 autocast": ["--amp_cpu_bf16"]}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_folder", default="data/synthetic_demo")
    parser.add_argument("--image_sizes", type=int, nargs="+", default=[96, 128])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def training_args(options, image_size: int, extra=(), iterations: int | None = None):
    """training.train's arguments for the benchmark's options (and its --iterations)."""
    flags = [
        "--dataset_folder", options.dataset_folder, "--image_size", str(image_size),
        "--batch_size", str(options.batch_size),
        "--iterations_per_epoch", str(iterations or options.iterations),
        "--groups_num", "1", "--train_all_layers", "--lr", "0.001", "--device", "cpu",
        "--num_workers", "0", "--workspace", "/tmp/training_throughput",
    ]  # fmt: skip
    return config.parse_arguments([*flags, *extra])


def loader_images_per_s(args, train_set, iterations: int) -> float:
    dataset = GroupDataset(train_set, 0, augmentation(args))
    batches = group_batches(dataset, args.batch_size, Context(), 0, 0)
    next(batches)
    start = time.perf_counter()
    for _ in range(iterations):
        next(batches)
    return iterations * args.batch_size / (time.perf_counter() - start)


def warm_trainee(args, train_set) -> tuple[Trainee, list]:
    """A fresh model and head and their optimizers, after an epoch of 2 iterations (in which
    oneDNN chooses its kernels)."""
    model, model_optimizer, heads, head_optimizers = build_training(
        args, train_set, Context().device
    )
    trainee, optimizers = Trainee(model, heads[0]), [model_optimizer, head_optimizers[0]]
    warm = argparse.Namespace(**{**vars(args), "iterations_per_epoch": 2})
    train_epoch(warm, Context(), trainee, optimizers, train_set, 0, 0)
    return trainee, optimizers


def epoch_images_per_s(args, train_set) -> tuple[float, float]:
    """(images per wall second, images per CPU-second of this process) of one epoch."""
    trainee, optimizers = warm_trainee(args, train_set)
    cpu_start = time.process_time()
    stats = train_epoch(args, Context(), trainee, optimizers, train_set, 0, 1)
    images = args.iterations_per_epoch * args.batch_size
    return stats["images_per_s"], images / (time.process_time() - cpu_start)


def city_training(options, image_size: int):
    """training_args at image_size and the city's training set, on --threads threads; stops
    with a sentence when the city to train on is missing."""
    if not (Path(options.dataset_folder) / "train").is_dir():
        raise UserError(
            f"{options.dataset_folder}/train not found: build the demo city with `make demo-data` "
            "or give --dataset_folder"
        )
    torch.set_num_threads(options.threads)
    args = training_args(options, image_size)
    return args, load_train_set(args.train_set_folder, config.partition_params(args))


@user_errors
def main(argv: list[str] | None = None) -> None:
    options = parse_arguments(argv)
    _, train_set = city_training(options, 96)
    rows = []
    for image_size in options.image_sizes:
        best: dict[str, float] = {}
        best_cpu: dict[str, float] = {}
        for _ in range(options.repeats):
            for name, extra in PRECISIONS.items():
                wall, cpu = epoch_images_per_s(training_args(options, image_size, extra), train_set)
                best[name] = max(best.get(name, 0.0), wall)
                best_cpu[name] = max(best_cpu.get(name, 0.0), cpu)
        for name in PRECISIONS:
            rows.append(
                [
                    image_size,
                    name,
                    best[name],
                    f"{best[name] / best['fp32']:.2f}x",
                    best_cpu[name],
                    f"{best_cpu[name] / best_cpu['fp32']:.2f}x",
                ]
            )
        loader = training_args(options, image_size, iterations=1)
        cpu_start = time.process_time()
        wall = loader_images_per_s(loader, train_set, 10)
        cpu = 11 * options.batch_size / (time.process_time() - cpu_start)
        rows.append([image_size, "loader only", wall, "", cpu, ""])
    print(
        f"ResNet-18 (all layers), CosFace, batch {options.batch_size}, {options.iterations} "
        f"iterations, best of {options.repeats}, CPU, {options.threads} threads, num_workers 0"
    )
    headers = ["image px", "configuration", "images/s", "vs fp32", "images/CPU-s", "vs fp32"]
    print_table(headers, rows)


if __name__ == "__main__":
    main()

"""What the training's progress record (RUN/progress.json, training.progress) costs.

Runs `training.train.train_epoch` (the real loop: loader, augmentation, forward, CosFace,
backward, both Adam steps) on one group of a dataset, by default the synthetic demo city,
three ways that alternate --repeats times: without a record, with the record as training
writes it (at most every 5 s within an epoch), and with a record after every iteration (the
worst case: one whole-file write, fsync and rename per batch). Each row gives the best and
median images/s over the repeats, and images per CPU-second of this process. A second table
times one write of the record alone, with a 32-epoch history, in a temporary folder.

    python -m benchmarks.training_progress [--dataset_folder data/synthetic_demo]
        [--iterations 30] [--repeats 3] [--image_size 96] [--batch_size 32]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.table import print_table
from benchmarks.training_throughput import city_training, warm_trainee
from core.errors import user_errors
from training.distributed import Context
from training.progress import PROGRESS_EVERY_S, ProgressRecord
from training.train import train_epoch

RECORDS = {
    "no record": None,
    f"record every {PROGRESS_EVERY_S:g} s (training's)": PROGRESS_EVERY_S,
    "record every iteration": 0.0,
}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_folder", default="data/synthetic_demo")
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def history(epochs: int) -> list[dict]:
    """A history of `epochs` entries shaped like training's."""
    return [
        {"loss": 1.0, "seconds": 100.0, "images_per_s": 110.0, "epoch": e, "group": e % 16,
         "val": {"R@1": 60.0, "R@5": 80.0, "R@10": 90.0, "R@20": 95.0}, "wall_s": 140.0 * e}
        for e in range(epochs)
    ]  # fmt: skip


def write_seconds(args, repeats: int = 50) -> tuple[float, int]:
    """(seconds per write, bytes) of a record holding a 32-epoch history."""
    with tempfile.TemporaryDirectory() as folder:
        record = ProgressRecord(Path(folder), args, history(32), every_s=0.0)
        record.start()
        start = time.perf_counter()
        for done in range(1, repeats + 1):
            record.iteration(31, 15, done, 1.0, float(done))
        seconds = (time.perf_counter() - start) / repeats
        return seconds, (Path(folder) / "progress.json").stat().st_size


@user_errors
def main(argv: list[str] | None = None) -> None:
    options = parse_arguments(argv)
    args, train_set = city_training(options, options.image_size)
    trainee, optimizers = warm_trainee(args, train_set)
    wall: dict[str, list[float]] = {name: [] for name in RECORDS}
    cpu: dict[str, list[float]] = {name: [] for name in RECORDS}
    writes: dict[str, int] = {name: 0 for name in RECORDS}
    images = options.iterations * options.batch_size
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(options.repeats):
            for name, every_s in RECORDS.items():
                recorder = None
                if every_s is not None:
                    recorder = ProgressRecord(Path(folder), args, history(4), every_s=every_s)
                    recorder.start()
                cpu_start = time.process_time()
                stats = train_epoch(
                    args, Context(), trainee, optimizers, train_set, 0, 1 + repeat,
                    recorder=recorder,
                )  # fmt: skip
                cpu[name].append(images / (time.process_time() - cpu_start))
                wall[name].append(stats["images_per_s"])
                writes[name] += recorder.writes - 1 if recorder else 0
    base = statistics.median(wall["no record"])
    rows = [
        [
            name,
            max(wall[name]),
            statistics.median(wall[name]),
            f"{statistics.median(wall[name]) / base:.3f}x",
            statistics.median(cpu[name]),
            writes[name] / options.repeats,
        ]
        for name in RECORDS
    ]
    print(
        f"ResNet-18 (all layers), CosFace, {options.image_size} px, batch {options.batch_size}, "
        f"{options.iterations} iterations per epoch, {options.repeats} alternating repeats, CPU, "
        f"{options.threads} threads, num_workers 0"
    )
    print_table(
        ["record", "images/s best", "images/s median", "median vs none", "images/CPU-s median",
         "writes per epoch"],
        rows,
    )  # fmt: skip
    seconds, size = write_seconds(args)
    print()
    write = "core.files.write_json: temporary file, fsync, rename, fsync folder"
    print_table(["one write of progress.json (32-epoch history)", "ms", "bytes"],
                [[write, seconds * 1e3, size]])  # fmt: skip


if __name__ == "__main__":
    main()

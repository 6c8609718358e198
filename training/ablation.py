"""Grids of CosPlace trainings: paper Table 5, pooling, descriptor dimension, train-set size.

    python -m training.ablation --grid table5 --dataset_folder DIR [training flags...]
    python -m training.ablation --grid pooling --points gem avg ...
    python -m training.ablation --grid dimension ...
    python -m training.ablation --grid train_size --train_fractions 1 0.1 0.01 ...

Every point trains with the command line's training flags (those of python -m training.train)
plus the point's own overrides, in WORKSPACE/runs/ablation_<grid>_<point> (--save_dir is
not used). After each point the results are written (whole) to
WORKSPACE/runs/ablation_<grid>.json and .csv. Running the grid again skips the points
already recorded (--rerun trains them again, replacing their folders), and a point cut off
mid-training resumes from its last checkpoint. A point whose folder holds a run with other
settings is refused (it fails with a sentence) unless --rerun.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core import files
from core.errors import UserError, one_line, user_errors
from core.model import POOLINGS, load_trusted_types
from core.recall import RECALL_VALUES
from data_catalog import runs
from training import config
from training import train as training
from training.data import list_images

log = logging.getLogger(__name__)
GRIDS = ("table5", "pooling", "dimension", "train_size")
# Paper Table 5: (M, alpha, N, L) and the SF-XL val R@1 of a ResNet-18. The last row is
# CosPlace; alpha=360 drops the heading labels, N=1 and L=1 leave a single group.
TABLE5 = [
    (10, 360, 1, 1, 85.8),
    (10, 360, 5, 1, 88.5),
    (10, 30, 5, 1, 88.2),
    (10, 30, 1, 2, 77.1),
    (10, 30, 5, 2, 90.9),
]
DIMENSIONS = (32, 64, 128, 256, 512)
# Table 6 trains on 5.6M, 120k, 12k and 1.2k images: a log scale, as here by default.
TRAIN_FRACTIONS = (1.0, 0.1, 0.01)
SETTINGS = ("M", "alpha", "N", "L", "groups_num", "pooling", "fc_output_dim", "backbone")
COLUMNS = (
    "grid", "point", *SETTINGS, "train_fraction", "train_images", "paper_val_r1", "val_r1",
    "test_r1", "test_r5", "test_r10", "test_r20", "images_per_s", "train_seconds", "seconds",
    "run_folder",
)  # fmt: skip
# Flags that change how fast a run goes, not what it learns.
VOLATILE = {
    "num_workers", "infer_batch_size", "device", "resume_train", "catalog", "overwrite", "debug",
    "run_kind",
}  # fmt: skip


@dataclass(frozen=True)
class Point:
    name: str
    flags: dict  # training flags (names without dashes) this point overrides
    train_fraction: float | None = None  # None: the --train_fraction of the command line
    paper_val_r1: float | None = None


def table5_point(m, alpha, n, el, paper_r1, groups_num: int) -> Point:
    flags = {"M": m, "alpha": alpha, "N": n, "L": el}
    # N*N*L groups exist: with N=L=1 there is one, so groups_num cannot stay at 8.
    flags["groups_num"] = min(groups_num, n * n * el)
    return Point(f"M{m}_alpha{alpha}_N{n}_L{el}", flags, paper_val_r1=paper_r1)


def grid_points(grid: str, base: argparse.Namespace, train_fractions=TRAIN_FRACTIONS):
    """The points of a grid; `base` holds the command line's training flags."""
    if grid == "table5":
        return [table5_point(m, a, n, el, r1, base.groups_num) for m, a, n, el, r1 in TABLE5]
    if grid == "pooling":
        return [Point(p, {"pooling": p}) for p in POOLINGS]
    if grid == "dimension":
        return [Point(f"dim{d}", {"fc_output_dim": d}) for d in DIMENSIONS]
    if grid == "train_size":
        return [Point(f"fraction{f:g}", {}, train_fraction=f) for f in train_fractions]
    raise ValueError(f"unknown grid {grid!r}; choose one of {GRIDS}")


def subset_folder(train_folder: str | Path, fraction: float, seed: int, workspace) -> Path:
    """A folder of symlinks to a deterministic `fraction` of the train images.

    Images are ranked by a hash of (seed, relative path): the subset does not depend on the
    listing order, and a smaller fraction is a subset of a larger one, as in paper Table 6.
    """
    source = Path(train_folder).resolve()
    paths = list_images(source)
    ranked = sorted(paths, key=lambda p: hashlib.sha1(f"{seed}:{p}".encode()).hexdigest())
    chosen = sorted(ranked[: max(1, round(fraction * len(paths)))])
    tag = hashlib.sha1(str(source).encode()).hexdigest()[:8]
    return link_subset(workspace, f"{source.name}_{tag}_{fraction:g}_seed{seed}", source, chosen)


def link_subset(workspace, name: str, source: Path, chosen: list[str]) -> Path:
    """WORKSPACE/subsets/<name>: symlinks to the `chosen` paths (relative to `source`), listed
    in its subset.txt. A folder already listing them is kept; any other is rebuilt whole."""
    out = Path(workspace) / "subsets" / name
    listing = out / "subset.txt"
    content = "\n".join(chosen) + "\n"
    if listing.is_file() and listing.read_text() == content:
        return out
    if out.exists():
        shutil.rmtree(out)
    for relative in chosen:
        link = out / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source / relative)
    files.write_text(listing, content)  # last: a folder cut off half-built is rebuilt next time
    return out


def point_args(base_argv: list[str], grid: str, point: Point, fraction: float):
    """Training args of a point: the command line, then the point's overrides (last wins)."""
    overrides = [item for key, value in point.flags.items() for item in (f"--{key}", str(value))]
    args = config.parse_arguments(
        [*base_argv, *overrides, "--save_dir", f"ablation_{grid}_{point.name}"]
    )
    args.train_fraction = fraction
    if fraction < 1:
        args.train_set_folder = str(
            subset_folder(args.train_set_folder, fraction, args.seed, args.workspace)
        )
    args.train_images = len(list_images(args.train_set_folder))
    return args


def changed_settings(recorded: dict, args: argparse.Namespace) -> list[str]:
    return sorted(
        key
        for key, value in vars(args).items()
        if key not in VOLATILE and key in recorded and recorded[key] != value
    )


def resume_from(args: argparse.Namespace) -> str | None:
    """The point's own last checkpoint, if an earlier run of it was cut off with these flags.

    The checkpoint is read with weights_only (core.model.load_trusted_types); one trained
    with other settings is refused with a sentence (--rerun replaces it).
    """
    path = Path(args.run_folder) / runs.LAST_CHECKPOINT
    if not path.is_file():
        return None
    checkpoint = load_trusted_types(path)
    recorded = checkpoint.get("args") if isinstance(checkpoint, dict) else None
    if not isinstance(recorded, dict):
        raise UserError(f"{path} is not a training checkpoint of this project; --rerun replaces it")
    changed = changed_settings(recorded, args)
    if changed:
        raise UserError(
            f"{path} was trained with other {changed}; --rerun replaces that run, or move it away"
        )
    return str(path)


def result_row(grid: str, point: Point, args, summary: dict, seconds: float) -> dict:
    history = summary["history"]
    test = summary.get("test", {})
    row = {"grid": grid, "point": point.name, **{k: getattr(args, k) for k in SETTINGS}}
    row.update(
        train_fraction=args.train_fraction,
        train_images=args.train_images,
        paper_val_r1=point.paper_val_r1,
        val_r1=summary["best_val_recall1"],
        **{f"test_r{n}": test.get(f"R@{n}") for n in RECALL_VALUES},
        images_per_s=float(np.mean([h["images_per_s"] for h in history])) if history else None,
        train_seconds=float(sum(h["seconds"] for h in history)),
        seconds=seconds,
        run_folder=args.run_folder,
        args=vars(args),
    )
    return row


def load_results(path: Path) -> dict[str, dict]:
    """The grid's recorded points; a file of another shape is refused, not overwritten."""
    if not path.is_file():
        return {}
    rows = runs.read_json(path)
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "point" in r for r in rows):
        raise UserError(
            f"{path} is not a grid's results (a list of points, each with its 'point'); move it "
            "away to run the grid again"
        )
    return {row["point"]: row for row in rows}


def save_results(rows: dict[str, dict], path: Path) -> None:
    """The .json (every flag of every point) and the .csv (COLUMNS), each replaced whole."""
    files.write_json(path, list(rows.values()))
    with io.StringIO(newline="") as table:
        writer = csv.DictWriter(table, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows.values())
        files.write_text(path.with_suffix(".csv"), table.getvalue())


def run_point(grid: str, point: Point, base_argv: list[str], fraction: float, rerun: bool):
    args = point_args(base_argv, grid, point, fraction)
    args.resume_train = None if rerun else resume_from(args)
    args.overwrite = rerun  # the point's own folder: --rerun is the grid's --overwrite
    args.run_kind = "ablation"  # train() records the run (catalog, summary.json) as this kind
    log.info("ablation %s point %s: %s", grid, point.name, point.flags or f"fraction {fraction}")
    start = time.perf_counter()
    summary = training.train(args)
    seconds = time.perf_counter() - start
    return result_row(grid, point, args, summary, seconds)


def run_grid(grid: str, base_argv: list[str], options: argparse.Namespace) -> dict[str, dict]:
    base = config.parse_arguments(base_argv)
    points = grid_points(grid, base, options.train_fractions)
    if options.points:
        unknown = set(options.points) - {p.name for p in points}
        if unknown:
            raise config.BadFlagError(
                f"no points {sorted(unknown)} in grid {grid}; "
                f"choose from {[p.name for p in points]}"
            )
        points = [p for p in points if p.name in options.points]
    path = runs.grid_file(base.workspace, grid)
    rows = load_results(path)
    failed = []
    for point in points:
        fraction = point.train_fraction or options.train_fraction
        if point.name in rows and not options.rerun:
            changed = changed_settings(
                rows[point.name]["args"], point_args(base_argv, grid, point, fraction)
            )
            note = f" (recorded with other {changed}; --rerun to retrain)" if changed else ""
            log.info("ablation %s point %s already done, skipped%s", grid, point.name, note)
            continue
        try:
            rows[point.name] = run_point(grid, point, base_argv, fraction, options.rerun)
        except (SystemExit, UserError) as error:  # a point the data cannot hold...
            log.error("ablation %s point %s failed: %s", grid, point.name, one_line(error))
            failed.append(point.name)
            continue
        save_results(rows, path)
    print_results([rows[p.name] for p in points if p.name in rows], path)
    if failed:
        raise UserError(
            f"points {failed} failed (reasons above); fix their settings and run the grid again"
        )
    return rows


def print_results(rows: list[dict], path: Path) -> None:
    if not rows:
        return
    shown = ["point", "paper_val_r1", "val_r1", "test_r1", "test_r5", "test_r10", "test_r20"]
    shown += ["train_images", "images_per_s", "seconds"]
    table = pd.DataFrame(rows)[shown].dropna(axis=1, how="all")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print(f"results: {path} and {path.with_suffix('.csv')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Grids of CosPlace trainings; every flag of python -m training.train "
        "is accepted as well and applies to every point",
        allow_abbrev=False,  # prefixes could swallow training flags
    )
    parser.add_argument("--grid", required=True, choices=GRIDS)
    parser.add_argument("--points", nargs="+", help="only these points of the grid, by name")
    parser.add_argument("--rerun", action="store_true", help="retrain points already recorded")
    parser.add_argument(
        "--train_fraction", type=float, default=1.0, help="train on this part of the images"
    )
    parser.add_argument(
        "--train_fractions", type=float, nargs="+", default=TRAIN_FRACTIONS,
        help="the train_size grid's points",
    )  # fmt: skip
    return parser


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    options, base_argv = parser.parse_known_args(argv)
    fractions = [options.train_fraction, *options.train_fractions]
    if not all(0 < f <= 1 for f in fractions):
        parser.error(f"train fractions {fractions} must lie in (0, 1]")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("run the ablation as one process (no torchrun); it trains points in turn")
    base = config.parse_arguments(base_argv)
    if not base.train_set_folder or not base.val_set_folder:
        raise config.BadFlagError(
            "--train_set_folder and --val_set_folder (or --dataset_folder) are required"
        )
    run_grid(options.grid, base_argv, options)


if __name__ == "__main__":
    main()

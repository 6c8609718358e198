"""Build a run's retrieval index over a database folder, for the app and for serving.

    python -m training.build_index --run_dir data/runs/demo \
        --database_folder data/synthetic_demo/test/database [--index_type auto]
        [--descriptors RUN/descriptors]

Descriptors come from the run's best_model.pth, or, with --descriptors, from shards that
extraction already wrote (shard_00000.npy, ... in the database's name order): those are
indexed a shard at a time (core.index_stream), so a database larger than memory can be
indexed, and an interrupted build resumes from RUN/index_build/. The index goes to
RUN/index/ with its manifest (model fingerprint, database fingerprint) and the database's
paths and UTM positions, so the app can show each result and its distance in metres.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.descriptors import extract_from_paths
from core.errors import UserError, user_errors
from core.geo import single_zone
from core.index import (
    DEFAULT_NPROBE,
    INDEX_TYPES,
    MAX_DEFAULT_NLIST,
    IndexManifest,
    build_index,
    model_fingerprint,
    model_identity,
    paths_fingerprint,
    save_index,
)
from core.index_stream import (
    DescriptorShards,
    build_index_from_shards,
    extract_shards,
    finish_build,
)
from core.model import model_from_checkpoint
from data_catalog import runs
from data_catalog.serving import ServingDatabase, write_serving_database
from training.data import read_folder
from training.unreadable import left_out_rows

# Below this many images an exact (flat) index answers a query in well under a second on a
# CPU and needs count x dim x 4 bytes (2 GB at 1M x 512); above it IVF-PQ keeps memory small.
# Measured at 1M x 512-D (benchmarks/index_scale.py, README "City scale"): exact 84-92 ms of
# one core per query; IVF-PQ (4,096 lists) 1-14 ms at 0.52-0.98 of the exact top-10 (with
# re-ranking from shards). auto keeps IVF-PQ's flat coarse quantizer above it: the graph one
# (ivf_hnsw_pq) found the nearest list less often and cost more CPU per descriptor added at
# every list count measured (4,096-65,536); it answers faster only from about 16,384 lists.
EXACT_LIMIT = 1_000_000

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.build_index",
        description="Extract database descriptors with a run's model and save a faiss index "
        "with its manifest in RUN/index/.",
    )
    parser.add_argument("--run_dir", required=True, help="run folder holding best_model.pth")
    parser.add_argument("--database_folder", required=True, help="folder of SF-XL named images")
    parser.add_argument(
        "--index_type",
        default="auto",
        choices=["auto", *INDEX_TYPES],
        help=f"auto (default): exact 'flat' below {EXACT_LIMIT:,} images, 'ivf_pq' above; "
        "flat_fp16 halves memory, hnsw is a graph index, ivf_hnsw_pq is IVF-PQ with a graph "
        "coarse quantizer (faster queries over tens of thousands of lists)",
    )
    parser.add_argument(
        "--nlist",
        type=int,
        default=None,
        help=f"IVF lists (default ~4 sqrt(n), at most {MAX_DEFAULT_NLIST:,})",
    )
    parser.add_argument(
        "--nprobe", type=int, default=DEFAULT_NPROBE, help="IVF lists searched per query"
    )
    parser.add_argument("--pq_m", type=int, default=64, help="PQ sub-quantisers (divide dim)")
    parser.add_argument("--hnsw_m", type=int, default=32, help="HNSW neighbours per node")
    parser.add_argument("--ef_search", type=int, default=128, help="HNSW search breadth")
    parser.add_argument(
        "--descriptors",
        default=None,
        help="folder of descriptor shards (shard_*.npy, row order = the database's names): "
        "the missing ones are extracted into it first, then the index is built a shard at a "
        "time; both resume after an interruption",
    )
    parser.add_argument(
        "--shard_rows", type=int, default=100_000, help="descriptors per extracted shard"
    )
    parser.add_argument(
        "--train_size", type=int, default=200_000, help="descriptors sampled to train on"
    )
    parser.add_argument(
        "--checkpoint_rows",
        type=int,
        default=2_000_000,
        help="with --descriptors: save the partial index after about this many rows",
    )
    parser.add_argument("--resize_test_imgs", action="store_true", help="resize shorter side")
    parser.add_argument("--image_size", type=int, default=512, help="shorter side when resizing")
    parser.add_argument("--infer_batch_size", type=int, default=16)
    parser.add_argument("--device", default="cpu", choices=["cuda", "cpu"])
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace RUN/index if it exists")
    return parser


# Flags whose values below 1 no index can use (None for nlist: chosen from the count).
AT_LEAST_ONE = (
    "nlist",
    "nprobe",
    "pq_m",
    "hnsw_m",
    "ef_search",
    "image_size",
    "infer_batch_size",
    "train_size",
    "checkpoint_rows",
    "shard_rows",
)
# The flags that go to core.index's builders.
INDEX_FLAGS = ("nlist", "nprobe", "pq_m", "hnsw_m", "ef_search", "train_size")


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """The flags, each value checked before any work (a bad one: one line, exit 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in AT_LEAST_ONE:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} {value} is too small: give a value of at least 1")
    if args.num_workers < 0:
        parser.error(f"--num_workers {args.num_workers} must be 0 or more")
    return args


def check_index_folder(run_dir: str | os.PathLike, overwrite: bool) -> None:
    """Refuse, before any descriptor, to replace a run's index without --overwrite."""
    out = Path(run_dir) / runs.INDEX_DIR
    found = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if found and not overwrite:
        raise UserError(
            f"{out} already holds an index ({', '.join(found[:4])}); keep it, or replace it "
            "with --overwrite"
        )


def choose_index_type(requested: str, count: int) -> str:
    if requested != "auto":
        return requested
    return "flat" if count < EXACT_LIMIT else "ivf_pq"


def build_run_index(args: argparse.Namespace) -> Path:
    """Extract (or read shards), index and save; every user mistake is one sentence."""
    run_dir, database_folder = Path(args.run_dir), Path(args.database_folder)
    checkpoint = run_dir / runs.BEST_MODEL
    if not checkpoint.is_file():
        raise UserError(f"{checkpoint} not found: train the run first (python -m training.train)")
    if not database_folder.is_dir():
        raise UserError(f"--database_folder {database_folder} is not a folder")
    check_index_folder(run_dir, args.overwrite)
    names = read_folder(database_folder)
    if not len(names):
        raise UserError(f"{database_folder} holds no SF-XL named images to index")
    zone = single_zone(names.zones(), database_folder)
    model = model_from_checkpoint(checkpoint)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda given but CUDA is not available; use --device cpu")
    index_params = {name: getattr(args, name) for name in INDEX_FLAGS}
    start = time.perf_counter()
    extract_options = {
        "batch_size": args.infer_batch_size,
        "device": args.device,
        "num_workers": args.num_workers,
    }
    utm = np.stack([names.east, names.north], axis=1)
    resize = args.image_size if args.resize_test_imgs else None
    database = ServingDatabase(database_folder, list(names.paths), utm, zone, resize)
    if args.descriptors:
        out = index_from_shards(args, model, database, index_params, extract_options)
        unreadable = {}
    else:
        out, unreadable = index_in_memory(args, model, database, index_params, extract_options)
    skipped = f" ({len(unreadable)} unreadable images skipped)" if unreadable else ""
    print(
        f"indexed {len(names.paths) - len(unreadable)} images of {database_folder}{skipped} in "
        f"{time.perf_counter() - start:.1f} s -> {out}"
    )
    return out


def index_in_memory(
    args: argparse.Namespace,
    model: nn.Module,
    database: ServingDatabase,
    index_params: dict,
    extract_options: dict,
) -> tuple[Path, dict]:
    """Extract every descriptor into memory, index and save; (folder, unreadable images)."""
    try:
        descriptors = extract_from_paths(
            model,
            [database.root / p for p in database.paths],
            resize_shorter_side=database.resize_shorter_side,
            skip_unreadable=True,
            desc="database descriptors",
            **extract_options,
        )
    except ValueError as error:  # not one image could be read
        raise UserError(f"{database.root}: {error}; check the files") from None
    database, descriptors, unreadable = leave_out_unreadable(database, descriptors)
    out = save_run_index(
        args.run_dir, model, descriptors, database, args.index_type, **index_params
    )
    return out, unreadable


def index_from_shards(
    args: argparse.Namespace,
    model: nn.Module,
    database: ServingDatabase,
    index_params: dict,
    extract_options: dict,
) -> Path:
    """--descriptors: extract the shards still missing, build the index a shard at a time
    (resuming in RUN/index_build/), save it, then drop the work folder."""
    paths = database.paths
    identity = {"model": model_fingerprint(model), "database": paths_fingerprint(paths)}
    extract_shards(
        model,
        [database.root / p for p in paths],
        args.descriptors,
        identity,
        shard_rows=args.shard_rows,
        resize_shorter_side=database.resize_shorter_side,
        **extract_options,
    )
    shards = DescriptorShards(args.descriptors)
    if shards.count != len(paths):
        raise UserError(
            f"{args.descriptors} holds {shards.count:,} descriptors but {database.root} "
            f"{len(paths):,} images; give the shards extracted from this database"
        )
    index_type = choose_index_type(args.index_type, shards.count)
    work = Path(args.run_dir) / runs.INDEX_BUILD_DIR
    try:
        index, params = build_index_from_shards(
            shards, work, index_type, checkpoint_rows=args.checkpoint_rows, **index_params
        )
    except ValueError as error:
        raise UserError(f"cannot build a {index_type} index: {error}") from None
    out = save_built_index(args.run_dir, model, index, index_type, params, database)
    finish_build(work)
    return out


def leave_out_unreadable(database: ServingDatabase, descriptors: np.ndarray):
    """The database and descriptors without the images that could not be decoded (as the
    evaluation leaves them out), so that the index and its table keep the same rows; and
    {path: reason} of those left out."""
    kept, unreadable = left_out_rows(database.root, database.paths, descriptors)
    if unreadable:
        log.warning(
            "%s: %d unreadable images left out of the index, e.g. %s",
            database.root,
            len(unreadable),
            next(iter(unreadable.values())),
        )
    paths = [database.paths[i] for i in kept]
    readable = dataclasses.replace(database, paths=paths, utm=database.utm[kept])
    return readable, descriptors[kept], unreadable


def save_run_index(
    run_dir: str | os.PathLike,
    model: nn.Module,
    descriptors: np.ndarray,
    database: ServingDatabase,
    index_type: str = "auto",
    **index_params,
) -> Path:
    """Index database descriptors (row i = database.paths[i]) into RUN/index/ with the
    manifest and the table the app reads. training.eval calls this with the descriptors it
    has just extracted (--build_index)."""
    index_type = choose_index_type(index_type, len(database.paths))
    try:
        index, params = build_index(descriptors, index_type, **index_params)
    except ValueError as error:
        raise UserError(f"cannot build a {index_type} index: {error}") from None
    return save_built_index(run_dir, model, index, index_type, params, database)


def save_built_index(
    run_dir: str | os.PathLike,
    model: nn.Module,
    index,
    index_type: str,
    params: dict,
    database: ServingDatabase,
) -> Path:
    """Save a built index with its manifest and the serving table into RUN/index/."""
    manifest = IndexManifest(
        index_type=index_type,
        dim=index.d,
        count=index.ntotal,
        model=model_identity(model),
        database_fingerprint=paths_fingerprint(database.paths),
        params=params,
    )
    out = Path(run_dir) / runs.INDEX_DIR
    # The table first, the manifest last: a half-written folder fails the fingerprint check.
    write_serving_database(out, database)
    save_index(index, out, manifest)
    log.info("saved a %s index of %d x %d-D to %s", index_type, index.ntotal, index.d, out)
    return out


@user_errors
def main(argv: list[str] | None = None) -> None:
    build_run_index(parse_arguments(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()


# --- the hook training.eval calls with --build_index ---------------------------------------


def pop_build_index_flag(argv: list[str] | None) -> tuple[bool, list[str]]:
    """(--build_index given?, the other arguments): training.eval's parser does not know it."""
    words = list(sys.argv[1:] if argv is None else argv)
    return "--build_index" in words, [w for w in words if w != "--build_index"]


def index_from_evaluation(args, model: nn.Module, test_set, database_descriptors) -> Path:
    """Save the index of the database descriptors training.eval has just extracted.

    test_set is a training.data.TestSet whose database paths start with "database/"; the
    index is built over that folder exactly as build_index would (same paths, same order).
    """
    database = ServingDatabase(
        Path(test_set.root) / "database",
        [str(Path(p).relative_to("database")) for p in test_set.database_paths],
        np.asarray(test_set.database_utm, dtype=np.float64).reshape(-1, 2),
        test_set.zone,  # load_test_set checked that database and queries share one
        args.image_size if args.resize_test_imgs else None,
    )
    out = save_run_index(args.run_folder, model, database_descriptors, database)
    print(f"retrieval index of {len(database.paths)} images saved to {out}")
    if not (Path(args.run_folder) / runs.BEST_MODEL).is_file():
        log.warning(
            "%s has no %s: the app serves a run's own best_model.pth, so copy the model "
            "there (this index belongs to %s)",
            args.run_folder,
            runs.BEST_MODEL,
            args.resume_model,
        )
    return out

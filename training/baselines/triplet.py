"""Contrastive baseline: the CosPlace network trained with a triplet margin loss and mining.

This is the approach the paper replaces (NetVLAD, SFRS and the VG benchmark train this way).
Every tuple is (query, best positive, K hardest negatives), mined on a cache of descriptors
extracted with the current model and refreshed every --cache_refresh_rate queries.

    python -m training.baselines.triplet --dataset_folder DIR [reference flags...] \
        [--negs_num_per_query 10] [--cache_refresh_rate 1000] [--neg_samples_num 1000] \
        [--margin 0.1] [--train_positives_dist_threshold 10]

--batch_size counts tuples: one iteration puts batch_size * (2 + K) images through the
network. Positives lie within 10 m; negatives farther than --positive_dist_threshold (25 m,
the evaluation radius), so no image that counts as correct at test time is pushed away.
Single process; the best model by val R@1 is saved as WORKSPACE/runs/SAVE_DIR/best_model.pth.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from core.descriptors import ImagePathsDataset, extract_descriptors, inference_transform
from core.errors import UserError, one_line, user_errors
from core.images import load_image
from core.recall import find_positives, format_recalls
from data_catalog import runs
from training import config, distributed
from training.data import load_test_set, read_folder
from training.eval import build_model, record_in_catalog
from training.run_folder import run_folder_of
from training.schedule import amp_dtype
from training.train import augmentation, check_training_flags, seed_everything
from training.validation import test_best_model, validate

log = logging.getLogger(__name__)
MINING_CHUNK = 256  # queries per descriptor-distance matrix: bounds it to 256 x cache rows


def build_parser() -> argparse.ArgumentParser:
    parser = config.build_parser()
    parser.description = "Triplet-loss baseline with hard-negative mining (same network)"
    group = parser.add_argument_group("triplet baseline")
    group.add_argument("--negs_num_per_query", type=int, default=10, help="K negatives a tuple")
    group.add_argument(
        "--cache_refresh_rate", type=int, default=1000, help="queries mined per cache refresh"
    )
    group.add_argument(
        "--neg_samples_num",
        type=int,
        default=1000,
        help="random negative candidates per cache; 0 caches every train image (full mining)",
    )
    group.add_argument("--margin", type=float, default=0.1)
    group.add_argument("--train_positives_dist_threshold", type=float, default=10.0)
    # The benchmark's 4 tuples = 48 images per iteration; 32 tuples would be 384.
    parser.set_defaults(batch_size=4, save_dir="triplet")
    return parser


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = config.finish(parser.parse_args(argv), parser)
    problem = triplet_flag_problem(args)
    if problem:
        parser.error(problem)
    return args


def triplet_flag_problem(args: argparse.Namespace) -> str | None:
    for name in ("negs_num_per_query", "cache_refresh_rate"):
        if getattr(args, name) < 1:
            return f"--{name} {getattr(args, name)} is too small: give a value of at least 1"
    if args.neg_samples_num < 0:
        return f"--neg_samples_num {args.neg_samples_num} must be 0 (every image) or more"
    for name in ("margin", "train_positives_dist_threshold"):
        if not getattr(args, name) > 0:
            return f"--{name} {getattr(args, name)} must be a positive number"
    return None


@dataclass
class TrainImages:
    root: Path
    paths: list[str]
    utm: np.ndarray  # [n, 2] east, north
    places: np.ndarray  # panorama id per image, "" when the name has none


def load_train_images(folder: str | Path) -> TrainImages:
    names = read_folder(folder, extra=("pano_id",))
    if not len(names):
        raise UserError(f"{folder} holds no SF-XL-named images to train on; check the folder")
    places = np.asarray(names.extra["pano_id"], dtype=object)
    utm = np.stack([names.east, names.north], axis=1)
    return TrainImages(Path(folder), list(names.paths), utm, places)


def positives_mask(candidates: np.ndarray, query: int, places: np.ndarray | None) -> np.ndarray:
    """Drop the query itself and the other crops of its panorama: they overlap it and were
    taken at the same instant, so they would teach nothing about a place seen at another time."""
    keep = candidates != query
    if places is not None and places[query]:
        keep &= places[candidates] != places[query]
    return keep


def geo_positives(utm: np.ndarray, radius: float, places: np.ndarray | None) -> list[np.ndarray]:
    """Per image, the other images within `radius` metres (UTM, from the file names)."""
    near = find_positives(utm, utm, radius)
    return [found[positives_mask(found, query, places)] for query, found in enumerate(near)]


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T


def mine(
    descriptors: np.ndarray,
    utm: np.ndarray,
    queries: np.ndarray,
    negs_num: int,
    pos_radius: float = 10.0,
    neg_radius: float = 25.0,
    places: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best positive and hardest negatives of each query, all as rows of one cache.

    descriptors and utm are the cache's [n, d] and [n, 2]; queries are cache rows. Returns
    (queries, positives, negatives [m, negs_num], nearest first) for the m queries that have a
    positive within pos_radius and negs_num images farther than neg_radius; others are skipped.
    """
    near = find_positives(utm, utm[queries], pos_radius)
    not_far = find_positives(utm, utm[queries], neg_radius)
    kept_q, kept_p, kept_n = [], [], []
    for start in range(0, len(queries), MINING_CHUNK):
        chunk = queries[start : start + MINING_CHUNK]
        distances = squared_distances(descriptors[chunk], descriptors)
        for row, query in enumerate(chunk):
            found = near[start + row]
            positives = found[positives_mask(found, query, places)]
            to_negatives = distances[row].copy()
            to_negatives[not_far[start + row]] = np.inf
            if len(positives) == 0 or np.isfinite(to_negatives).sum() < negs_num:
                continue
            negatives = np.argpartition(to_negatives, negs_num - 1)[:negs_num]
            kept_q.append(query)
            kept_p.append(positives[np.argmin(distances[row, positives])])
            kept_n.append(negatives[np.argsort(to_negatives[negatives], kind="stable")])
    negatives = np.array(kept_n, dtype=np.int64).reshape(-1, negs_num)
    return np.array(kept_q, dtype=np.int64), np.array(kept_p, dtype=np.int64), negatives


def cache_rows(queries, positives_of, num_images, neg_samples_num, rng) -> np.ndarray:
    """Train images one refresh needs: the queries, their positives and random negatives."""
    if neg_samples_num <= 0 or neg_samples_num >= num_images:
        return np.arange(num_images)
    parts = [queries, *(positives_of[q] for q in queries)]
    parts.append(rng.choice(num_images, neg_samples_num, replace=False))
    return np.unique(np.concatenate(parts))


def refresh(args, model, train: TrainImages, positives_of, candidates, rng, device) -> np.ndarray:
    """Mine fresh tuples with the current model: [m, 2 + K] train rows (q, p, negatives)."""
    queries = rng.choice(candidates, min(args.cache_refresh_rate, len(candidates)), replace=False)
    rows = cache_rows(queries, positives_of, len(train.paths), args.neg_samples_num, rng)
    dataset = ImagePathsDataset(
        [train.root / train.paths[r] for r in rows], inference_transform(args.image_size), True
    )
    descriptors = extract_descriptors(
        model,
        dataset,
        batch_size=args.infer_batch_size,
        device=device,
        num_workers=args.num_workers,
        progress=False,
    )
    # Unreadable images (NaN rows) leave the cache: no tuple will then load them.
    readable = ~np.isnan(descriptors).any(axis=1)
    if not readable.all():
        log.warning(
            "%d unreadable train images left out of the mining cache, e.g. %s",
            int((~readable).sum()),
            train.paths[rows[np.flatnonzero(~readable)[0]]],
        )
        queries = queries[np.isin(queries, rows[readable])]
        rows, descriptors = rows[readable], descriptors[readable]
    q, p, n = mine(
        descriptors,
        train.utm[rows],
        np.searchsorted(rows, queries),
        args.negs_num_per_query,
        args.train_positives_dist_threshold,
        args.positive_dist_threshold,
        train.places[rows],
    )
    return rows[np.column_stack([q, p, n])]


class TupleDataset(Dataset):
    """Item i is the [2 + K, 3, S, S] stack of tuple i: query, positive, negatives."""

    def __init__(self, train: TrainImages, tuples: np.ndarray, transform) -> None:
        self.train = train
        self.tuples = tuples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.tuples)

    def __getitem__(self, index: int) -> torch.Tensor:
        paths = (self.train.root / self.train.paths[r] for r in self.tuples[index])
        return torch.stack([self.transform(load_image(path)) for path in paths])


def tuple_batches(args, model, train, transform, rng, device, timings) -> Iterator[torch.Tensor]:
    """Endless [B * (2 + K), 3, S, S] batches; the cache is re-mined when they run out."""
    positives_of = geo_positives(train.utm, args.train_positives_dist_threshold, train.places)
    candidates = np.flatnonzero([len(p) > 0 for p in positives_of])
    if len(candidates) == 0:
        raise UserError(
            f"no train image has a positive within {args.train_positives_dist_threshold} m"
        )
    while True:
        start = time.perf_counter()
        tuples = refresh(args, model, train, positives_of, candidates, rng, device)
        timings["mining"] += time.perf_counter() - start
        if len(tuples) == 0:
            raise UserError(
                f"no query has {args.negs_num_per_query} negatives beyond "
                f"{args.positive_dist_threshold} m in the cache: raise --neg_samples_num"
            )
        loader = DataLoader(
            TupleDataset(train, tuples, transform),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.num_workers,
            generator=torch.Generator().manual_seed(int(rng.integers(2**31))),
        )
        for batch in loader:
            yield batch.flatten(0, 1)


def triplet_loss(descriptors: torch.Tensor, negs_num: int, margin: float) -> torch.Tensor:
    """Mean triplet margin loss over every (query, positive, negative) of the tuples.

    descriptors: [B * (2 + K), D], each tuple laid out query, positive, K negatives.
    """
    dim = descriptors.shape[-1]
    tuples = descriptors.view(-1, 2 + negs_num, dim)
    queries = tuples[:, :1].expand(-1, negs_num, -1).reshape(-1, dim)
    positives = tuples[:, 1:2].expand(-1, negs_num, -1).reshape(-1, dim)
    return F.triplet_margin_loss(queries, positives, tuples[:, 2:].reshape(-1, dim), margin=margin)


def train_epoch(args, device, model, optimizer, batches, timings, epoch: int) -> dict:
    model.train()
    dtype = amp_dtype(args, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    losses, images_seen, mining_before = [], 0, timings["mining"]
    start = time.perf_counter()
    progress = tqdm(range(args.iterations_per_epoch), desc=f"epoch {epoch:02d}", ncols=100)
    for _ in progress:
        images = next(batches).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = triplet_loss(model(images).float(), args.negs_num_per_query, args.margin)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
        images_seen += len(images)
        progress.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    seconds = time.perf_counter() - start
    # images_per_s is end to end: the cache refreshes (mining_seconds) are part of the cost.
    return {
        "loss": float(np.mean(losses)),
        "seconds": seconds,
        "mining_seconds": timings["mining"] - mining_before,
        "images_per_s": images_seen / seconds,
    }


def train(args) -> dict:
    context = distributed.setup(args.device)
    if context.distributed:
        raise UserError("the triplet baseline runs in a single process; start it without torchrun")
    if args.resume_train:
        raise UserError(
            "the triplet baseline does not resume (--resume_train); start it again with "
            "--overwrite, or in another --save_dir"
        )
    with run_folder_of(args, context) as run_folder:  # a replacement swaps in at the end
        summary = fit(args, context, run_folder)
    record_in_catalog(args, "baseline", summary.get("test_result"))
    return summary


def fit(args, context, run_folder: Path) -> dict:
    """Train into run_folder (the run folder, or its replacement) up to summary.json."""
    seed_everything(args.seed)
    rng = np.random.default_rng(args.seed)
    train_images = load_train_images(args.train_set_folder)
    try:
        val_set = load_test_set(args.val_set_folder, "queries")
    except ValueError as error:
        raise UserError(one_line(error)) from error
    model = build_model(args, context.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    # The same augmentation as CosPlace, so that only the loss and the sampling differ.
    transform = augmentation(args)
    timings = {"mining": 0.0}
    batches = tuple_batches(args, model, train_images, transform, rng, context.device, timings)
    best, history = -1.0, []
    for epoch in range(args.epochs_num):
        stats = train_epoch(args, context.device, model, optimizer, batches, timings, epoch)
        recalls = validate(args, context, model, val_set)
        stats.update(epoch=epoch, val={f"R@{n}": v for n, v in recalls.items()})
        history.append(stats)
        print(f"Epoch {epoch:02d} loss {stats['loss']:.4f} val: {format_recalls(recalls)}")
        if recalls[1] > best:
            best = recalls[1]
            runs.save_best_model(run_folder, model.state_dict())
    summary = {"kind": "baseline", "best_val_recall1": best, "history": history}
    if args.test_set_folder:
        summary.update(test_best_model(args, context, model, run_folder))
    runs.write_summary(run_folder, summary)  # the run folder first, whole
    return summary


@user_errors
def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    check_training_flags(args)
    train(args)


if __name__ == "__main__":
    main()

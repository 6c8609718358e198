"""Evaluate a model on an SF-XL test set: recall@N, saved predictions, optional descriptors.

    python -m training.eval --test_set_folder DIR --resume_model FILE --backbone ResNet18 \
        --fc_output_dim 512 [--queries_folder queries_v1] [--save_descriptors]
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from core.descriptors import ImagePathsDataset, inference_transform
from core.images import load_image
from core.index import build_index, search
from core.model import CosPlaceNet, load_checkpoint
from core.recall import RECALL_VALUES, find_positives, format_recalls, recall_at_n
from data_catalog import results as catalog_results
from data_catalog.catalog import connect
from training import config, distributed
from training.build_index import index_from_evaluation, pop_build_index_flag
from training.data import TestSet, load_test_set

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    recalls: dict[int, float]
    predictions: np.ndarray  # [queries, k] database rows, best first
    distances: np.ndarray
    positives: list[np.ndarray]
    database_descriptors: np.ndarray
    queries_descriptors: np.ndarray


def evaluate(
    context: distributed.Context,
    model: nn.Module,
    test_set: TestSet,
    infer_batch_size: int = 16,
    resize_test_imgs: bool = False,
    image_size: int = 512,
    positive_dist_threshold: float = 25.0,
    num_workers: int = 0,
) -> EvalResult:
    """Descriptors of database and queries, exhaustive kNN, recall@1/5/10/20."""
    transform = inference_transform(image_size if resize_test_imgs else None)
    common = {"num_workers": num_workers, "progress": context.is_main}
    database = sharded_desc(
        context,
        model,
        test_set,
        test_set.database_paths,
        transform,
        infer_batch_size,
        "database",
        common,
    )
    # Queries come in every size; batches are split by shape (core.descriptors), so native
    # size needs no one-at-a-time loop as in the reference, and gives the same descriptors.
    queries = sharded_desc(
        context,
        model,
        test_set,
        test_set.queries_paths,
        transform,
        infer_batch_size,
        "queries",
        common,
    )
    index, _ = build_index(database, "flat")
    distances, predictions = search(index, queries, k=max(RECALL_VALUES))
    positives = find_positives(test_set.database_utm, test_set.queries_utm, positive_dist_threshold)
    recalls = recall_at_n(predictions, positives)
    return EvalResult(recalls, predictions, distances, positives, database, queries)


def sharded_desc(context, model, test_set, paths, transform, batch_size, what, common):
    dataset = ImagePathsDataset([test_set.root / p for p in paths], transform)
    return distributed.sharded_descriptors(
        context, model, dataset, batch_size=batch_size, desc=f"{test_set.name} {what}", **common
    )


def save_predictions_table(result: EvalResult, test_set: TestSet, path: Path) -> None:
    """Machine-readable predictions: one row per (query, rank)."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["query", "rank", "prediction", "distance", "correct"])
        for q, (row, dists) in enumerate(zip(result.predictions, result.distances, strict=True)):
            positives = set(result.positives[q].tolist())
            for rank, (db, dist) in enumerate(zip(row, dists, strict=True)):
                correct = int(db) in positives
                writer.writerow(
                    [
                        test_set.queries_paths[q],
                        rank,
                        test_set.database_paths[db],
                        f"{dist:.6f}",
                        int(correct),
                    ]
                )


def _thumbnail(path: Path, size: int, colour: str | None) -> Image.Image:
    image = ImageOps.pad(load_image(path), (size, size), color=(0, 0, 0))
    if colour:
        image = ImageOps.expand(image.resize((size - 16, size - 16)), border=8, fill=colour)
    return image


def save_prediction_images(
    result: EvalResult,
    test_set: TestSet,
    folder: Path,
    num_preds: int,
    only_wrong: bool = False,
    size: int = 256,
) -> int:
    """The reference's picture rows: query, then its predictions framed green or red."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = 0
    for q, row in enumerate(result.predictions):
        correct = np.isin(row[:num_preds], result.positives[q])
        if only_wrong and correct[:1].all():
            continue
        tiles = [_thumbnail(test_set.root / test_set.queries_paths[q], size, None)]
        tiles += [
            _thumbnail(test_set.root / test_set.database_paths[db], size, "green" if ok else "red")
            for db, ok in zip(row[:num_preds], correct, strict=True)
        ]
        canvas = Image.new("RGB", (size * len(tiles), size), "white")
        for i, tile in enumerate(tiles):
            canvas.paste(tile, (i * size, 0))
        canvas.save(folder / f"{q:05d}.jpg", quality=90)
        saved += 1
    return saved


def save_descriptors(result: EvalResult, test_set: TestSet, folder: Path) -> None:
    """Descriptors as .npy, rows in the order of the sorted relative paths saved beside."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "database_descriptors.npy", result.database_descriptors)
    np.save(folder / "queries_descriptors.npy", result.queries_descriptors)
    (folder / "database_paths.txt").write_text("\n".join(test_set.database_paths) + "\n")
    (folder / "queries_paths.txt").write_text("\n".join(test_set.queries_paths) + "\n")


def record_in_catalog(args, kind: str, test_set: TestSet, recalls, predictions: Path | None):
    """Add the run and its result to the catalog; on failure the run folder still has them."""
    run = Path(args.run_folder).name
    try:
        with connect(args.catalog) as con:
            catalog_results.record_run(con, run, kind, args.run_folder, vars(args))
            catalog_results.record_result(
                con, run, str(test_set.root), args.queries_folder, recalls,
                len(test_set.database_paths), len(test_set.queries_paths),
                str(predictions) if predictions else None,
            )  # fmt: skip
    except Exception as error:  # a locked or unwritable catalog must not lose the run
        log.warning(
            "results not recorded in %s (%s); they are in %s", args.catalog, error, args.run_folder
        )


def build_model(args) -> CosPlaceNet:
    torch.manual_seed(args.seed)  # an untrained network is then the same one every time
    model = CosPlaceNet(args.backbone, args.fc_output_dim, pooling=args.pooling)
    if args.resume_model:
        load_checkpoint(model, args.resume_model)
    else:
        log.warning("no --resume_model: evaluating an untrained (randomly initialised) network")
    return model


def run(args) -> EvalResult:
    context = distributed.setup(args.device)
    model = build_model(args)
    test_set = load_test_set(args.test_set_folder, args.queries_folder)
    start = time.perf_counter()
    result = evaluate(
        context,
        model,
        test_set,
        args.infer_batch_size,
        args.resize_test_imgs,
        args.image_size,
        args.positive_dist_threshold,
        args.num_workers,
    )
    if context.is_main:
        out = Path(args.run_folder) / f"eval_{test_set.name}_{args.queries_folder}"
        out.mkdir(parents=True, exist_ok=True)
        save_predictions_table(result, test_set, out / "predictions.csv")
        if args.num_preds_to_save:
            save_prediction_images(
                result, test_set, out / "preds", args.num_preds_to_save, args.save_only_wrong_preds
            )
        if args.save_descriptors:
            save_descriptors(result, test_set, out)
        summary = {
            "test_set": str(test_set.root),
            "queries_folder": args.queries_folder,
            "num_database": len(test_set.database_paths),
            "num_queries": len(test_set.queries_paths),
            "recalls": {f"R@{n}": v for n, v in result.recalls.items()},
            "model": args.resume_model,
            "seconds": time.perf_counter() - start,
        }
        (out / "results.json").write_text(json.dumps(summary, indent=2))
        record_in_catalog(args, "eval", test_set, result.recalls, out / "predictions.csv")
        if getattr(args, "build_index", False):  # --build_index: serve this model (the app)
            evaluated = getattr(result, "test_set", None) or test_set
            index_from_evaluation(args, model, evaluated, result.database_descriptors)
        print(f"{test_set.name} / {args.queries_folder}: {format_recalls(result.recalls)}")
    distributed.teardown()
    return result


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    build_index, argv = pop_build_index_flag(argv)
    args = config.parse_arguments(argv)
    args.build_index = build_index
    if not args.test_set_folder:
        raise SystemExit("--test_set_folder (or --dataset_folder) is required")
    run(args)


if __name__ == "__main__":
    main()

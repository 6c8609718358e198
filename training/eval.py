"""Evaluate a model on an SF-XL test set: recall@N, saved predictions, optional descriptors.

    python -m training.eval --test_set_folder DIR --resume_model FILE --backbone ResNet18 \
        --fc_output_dim 512 [--queries_folder queries_v1] [--save_descriptors]

Unreadable images (corrupt or truncated files) are left out, not fatal: the database and
queries are evaluated without them, the printed recalls say how many were left out, and
results.json names each with its reason. Results go to RUN/eval_<set>_<queries>/ first
(written whole), then to the catalog; if the catalog stays busy, `python -m
data_catalog.sync` records them later. Existing results are kept unless --overwrite.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from core import files
from core.descriptors import ImagePathsDataset, inference_transform
from core.errors import UserError, one_line, user_errors
from core.images import load_image
from core.index import build_index, search
from core.model import CosPlaceNet, load_checkpoint
from core.recall import RECALL_VALUES, find_positives, format_recalls, recall_at_n
from data_catalog import results as catalog_results
from data_catalog import runs
from data_catalog.catalog import connect
from training import config, distributed
from training.build_index import check_index_folder, index_from_evaluation, pop_build_index_flag
from training.data import TestSet, load_test_set
from training.unreadable import left_out_rows

log = logging.getLogger(__name__)
# The flags (and CosPlaceNet's and evaluate()'s parameters) that build a model and run it.
MODEL_FLAGS = ("backbone", "fc_output_dim", "pooling", "train_all_layers", "imagenet_weights")
INFERENCE_FLAGS = (
    "infer_batch_size", "resize_test_imgs", "image_size", "positive_dist_threshold", "num_workers",
)  # fmt: skip


@dataclass
class EvalResult:
    recalls: dict[int, float]
    predictions: np.ndarray  # [queries, k] database rows, best first
    distances: np.ndarray
    positives: list[np.ndarray]
    database_descriptors: np.ndarray
    queries_descriptors: np.ndarray
    # The test set evaluated: the one given, less its unreadable images (rows match above).
    test_set: TestSet
    unreadable: dict[str, str] = field(default_factory=dict)  # relative path -> reason


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
    # Queries come in every size; batches are split by shape (core.descriptors), so native
    # size needs no one-at-a-time loop as in the reference, and gives the same descriptors.
    database, queries = (
        distributed.sharded_descriptors(
            context,
            model,
            ImagePathsDataset(
                [test_set.root / p for p in getattr(test_set, f"{what}_paths")], transform, True
            ),
            batch_size=infer_batch_size,
            desc=f"{test_set.name} {what}",
            num_workers=num_workers,
            progress=context.is_main,
        )
        for what in ("database", "queries")
    )
    readable, database, queries, unreadable = leave_out_unreadable(test_set, database, queries)
    index, _ = build_index(database, "flat")
    distances, predictions = search(index, queries, k=max(RECALL_VALUES))
    positives = find_positives(readable.database_utm, readable.queries_utm, positive_dist_threshold)
    recalls = recall_at_n(predictions, positives)
    return EvalResult(
        recalls, predictions, distances, positives, database, queries, readable, unreadable
    )


def leave_out_unreadable(test_set: TestSet, database: np.ndarray, queries: np.ndarray):
    """The test set and descriptors without the images that could not be decoded (their
    rows are NaN; training.unreadable.left_out_rows)."""
    keep_db, unreadable = left_out_rows(test_set.root, test_set.database_paths, database)
    keep_q, unreadable_queries = left_out_rows(test_set.root, test_set.queries_paths, queries)
    if not unreadable and not unreadable_queries:
        return test_set, database, queries, {}
    bad_db, bad_q = len(unreadable), len(unreadable_queries)
    unreadable.update(unreadable_queries)
    if not len(keep_db) or not len(keep_q):
        what = "database" if not len(keep_db) else "query"
        raise UserError(
            f"no {what} image of {test_set.root} could be read (e.g. "
            f"{next(iter(unreadable.values()))}); check the files"
        )
    log.warning(
        "%s: %d unreadable images left out of the evaluation (%d database, %d queries), e.g. %s",
        test_set.root,
        len(unreadable),
        bad_db,
        bad_q,
        next(iter(unreadable.values())),
    )
    readable = dataclasses.replace(
        test_set,
        database_paths=[test_set.database_paths[i] for i in keep_db],
        queries_paths=[test_set.queries_paths[i] for i in keep_q],
        database_utm=test_set.database_utm[keep_db],
        queries_utm=test_set.queries_utm[keep_q],
    )
    return readable, database[keep_db], queries[keep_q], unreadable


def recalls_line(result: EvalResult, queries_folder: str) -> str:
    """The printed result: set / queries, R@N, and how many images were left out if any."""
    line = f"{result.test_set.name} / {queries_folder}: {format_recalls(result.recalls)}"
    if result.unreadable:
        line += f" ({len(result.unreadable)} unreadable images left out, listed in results.json)"
    return line


def save_predictions_table(result: EvalResult, path: Path) -> None:
    """Machine-readable predictions: one row per (query, rank), written whole."""
    database, queries = result.test_set.database_paths, result.test_set.queries_paths
    with io.StringIO(newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["query", "rank", "prediction", "distance", "correct"])
        for q, (row, dists) in enumerate(zip(result.predictions, result.distances, strict=True)):
            positives = set(result.positives[q].tolist())
            writer.writerows(
                [queries[q], rank, database[db], f"{dist:.6f}", int(int(db) in positives)]
                for rank, (db, dist) in enumerate(zip(row, dists, strict=True))
            )
        files.write_text(path, file.getvalue())


def _thumbnail(path: Path, size: int, colour: str | None) -> Image.Image:
    image = ImageOps.pad(load_image(path), (size, size), color=(0, 0, 0))
    if colour:
        image = ImageOps.expand(image.resize((size - 16, size - 16)), border=8, fill=colour)
    return image


def save_prediction_images(
    result: EvalResult, folder: Path, num_preds: int, only_wrong: bool = False, size: int = 256
) -> int:
    """The reference's picture rows: query, then its predictions framed green or red."""
    test_set = result.test_set
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


def save_descriptors(result: EvalResult, folder: Path) -> None:
    """Descriptors as .npy, rows in the order of the sorted relative paths saved beside."""
    for what in ("database", "queries"):
        array = getattr(result, f"{what}_descriptors")
        files.write_whole(
            folder / f"{what}_descriptors.npy", lambda file, a=array: np.save(file, a)
        )
        paths = getattr(result.test_set, f"{what}_paths")
        files.write_text(folder / f"{what}_paths.txt", "\n".join(paths) + "\n")


def test_result(args, result: EvalResult, predictions=None) -> dict:
    """One evaluation as the run folder keeps it (and data_catalog.sync reads it back)."""
    evaluated = result.test_set
    return {
        "test_set": str(evaluated.root),
        "queries_folder": args.queries_folder,
        "num_database": len(evaluated.database_paths),
        "num_queries": len(evaluated.queries_paths),
        "recalls": {f"R@{n}": v for n, v in result.recalls.items()},
        "predictions": str(predictions) if predictions else None,
        "unreadable_images": dict(sorted(result.unreadable.items())),
    }


def record_in_catalog(args, kind: str, result: dict) -> bool:
    """Add the run and its result (test_result's dict) to the catalog.

    The run folder already holds them: if the catalog stays locked or cannot be written,
    this warns with the command that records them later, and the run goes on.
    """
    run = Path(args.run_folder).name
    try:
        with connect(args.catalog) as con:
            catalog_results.record_evaluation(
                con, run, kind, args.run_folder, runs.plain_args(args), result
            )
    except Exception as error:  # a locked or unwritable catalog must not lose the run
        log.warning(
            "results not recorded in the catalog (%s); they are safe in %s: record them later "
            "with python -m data_catalog.sync --workspace %s",
            one_line(error),
            args.run_folder,
            args.workspace,
        )
        return False
    return True


def build_model(args, device: torch.device | None = None) -> CosPlaceNet:
    """The network the flags describe, from --resume_model if given; on `device` (training)
    in the channels_last layout its convolutions run fastest in."""
    model = CosPlaceNet(**{name: getattr(args, name) for name in MODEL_FLAGS})
    if args.resume_model:
        load_checkpoint(model, args.resume_model)
    if device is None:
        return model
    return model.to(device, memory_format=torch.channels_last)


def evaluate_with_flags(args, context, model, test_set) -> EvalResult:
    """evaluate() with the inference flags of the same names."""
    flags = {name: getattr(args, name) for name in INFERENCE_FLAGS}
    return evaluate(context, model, test_set, **flags)


def output_folder(args, test_set_folder) -> Path:
    return runs.evaluation_folder(args.run_folder, test_set_folder, args.queries_folder)


def check_output_folder(args) -> None:
    """Refuse, before any descriptor, to replace results of the same evaluation."""
    out = output_folder(args, args.test_set_folder)
    found = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if found and not args.overwrite:
        raise UserError(
            f"{out} already holds results of this evaluation ({', '.join(found[:4])}); keep "
            "both by choosing another --save_dir, or replace them with --overwrite"
        )
    if getattr(args, "build_index", False):
        check_index_folder(args.run_folder, args.overwrite)


def save_evaluation(args, result: EvalResult, folder: Path) -> None:
    """predictions.csv, and the prediction images and descriptors the flags ask for."""
    save_predictions_table(result, folder / runs.PREDICTIONS)
    if args.num_preds_to_save:
        save_prediction_images(
            result, folder / "preds", args.num_preds_to_save, args.save_only_wrong_preds
        )
    if args.save_descriptors:
        save_descriptors(result, folder)


def run(args) -> EvalResult:
    check_output_folder(args)
    context = distributed.setup(args.device)
    torch.manual_seed(args.seed)  # an untrained network is then the same one every time
    if not args.resume_model:
        log.warning("no --resume_model: evaluating an untrained (randomly initialised) network")
    model = build_model(args)
    test_set = load_test_set(args.test_set_folder, args.queries_folder)
    start = time.perf_counter()
    result = evaluate_with_flags(args, context, model, test_set)
    if context.is_main:
        out = output_folder(args, test_set.root)
        summary = {
            "kind": "eval",
            **test_result(args, result, out / runs.PREDICTIONS),
            "model": args.resume_model,
            "args": runs.plain_args(args),
        }
        # Written into a fresh folder that then takes out's place: an earlier evaluation's
        # preds/ and descriptors never stay beside these results.
        with files.replacing_folder(out) as writing:
            save_evaluation(args, result, writing)
            summary["seconds"] = time.perf_counter() - start
            runs.write_results(writing, summary)  # the run folder first, whole
        record_in_catalog(args, "eval", summary)
        if getattr(args, "build_index", False):  # --build_index: serve this model (the app)
            index_from_evaluation(args, model, result.test_set, result.database_descriptors)
        print(recalls_line(result, args.queries_folder))
    distributed.teardown()
    return result


@user_errors
def main(argv: list[str] | None = None) -> None:
    build_index, argv = pop_build_index_flag(argv)
    args = config.parse_arguments(argv)
    args.build_index = build_index
    if not args.test_set_folder:
        raise config.BadFlagError("--test_set_folder (or --dataset_folder) is required")
    run(args)


if __name__ == "__main__":
    main()

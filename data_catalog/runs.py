"""The run folder, WORKSPACE/runs/<run>/: its file names, its writers and its readers.

    args.json                      every flag of the run (written first)
    best_model.pth                 the network of the best val epoch (training)
    last_checkpoint.pth            everything --resume_train needs (training)
    summary.json                   training history, best val R@1, test recalls
    eval_<set>_<queries>/          one per evaluation: results.json, predictions.csv,
                                   preds/ (images), descriptors
    index/                         the app's retrieval index (training.build_index)

Beside the run folders: ablation_<grid>.json/.csv (training.ablation) and claims.json
(training.claims), the tables of grids of runs.

Every file is written whole (core.files), so a reader sees the old version or the new one.
The run folder is the source of truth for a run's results; the catalog indexes them
(data_catalog.sync) and the app reads them through the readers below.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from core import files

log = logging.getLogger(__name__)

ARGS = "args.json"
BEST_MODEL = "best_model.pth"
LAST_CHECKPOINT = "last_checkpoint.pth"
SUMMARY = "summary.json"
RESULTS = "results.json"
PREDICTIONS = "predictions.csv"
# Recorded runs shipped in the repo keep their predictions gzipped (a tenth of the bytes).
PREDICTIONS_GZ = PREDICTIONS + ".gz"
INDEX_DIR = "index"
EVALUATION_PREFIX = "eval_"
# Written before any result: a folder holding only these has nothing to lose.
PREAMBLE_FILES = (ARGS,)


def runs_folder(workspace: str | os.PathLike) -> Path:
    return Path(workspace) / "runs"


def grid_file(workspace: str | os.PathLike, grid: str) -> Path:
    """runs/ablation_<grid>.json (every point's flags and results); a .csv goes beside it."""
    return runs_folder(workspace) / f"ablation_{grid}.json"


def grid_files(workspace: str | os.PathLike) -> list[Path]:
    runs = runs_folder(workspace)
    return sorted(runs.glob("ablation_*.json")) if runs.is_dir() else []


def claims_file(workspace: str | os.PathLike) -> Path:
    return runs_folder(workspace) / "claims.json"


# What claims.json says of each claim: it holds, does not hold, or is undecided (None).
VERDICTS = {True: "holds", False: "does not hold", None: "undecided"}


def evaluation_folder(run_folder: str | os.PathLike, test_set_folder, queries_folder) -> Path:
    """RUN/eval_<set>_<queries>: where one evaluation's results go."""
    name = f"{EVALUATION_PREFIX}{Path(test_set_folder).name}_{queries_folder}"
    return Path(run_folder) / name


def plain_args(args: argparse.Namespace) -> dict:
    """The flags as JSON types only (what run folders, checkpoints and the catalog keep), so
    a checkpoint holding them loads with weights_only."""
    return json.loads(json.dumps(vars(args), default=str))


# --- writers ----------------------------------------------------------------------------


def write_args(run_folder: Path, args: argparse.Namespace) -> Path:
    return files.write_json(Path(run_folder) / ARGS, plain_args(args))


def save_best_model(run_folder: Path, state_dict: dict) -> Path:
    return files.torch_save(state_dict, Path(run_folder) / BEST_MODEL)


def save_checkpoint(run_folder: Path, checkpoint: dict) -> Path:
    return files.torch_save(checkpoint, Path(run_folder) / LAST_CHECKPOINT)


def write_summary(run_folder: Path, summary: dict) -> Path:
    return files.write_json(Path(run_folder) / SUMMARY, summary)


def write_results(evaluation: Path, results: dict) -> Path:
    return files.write_json(Path(evaluation) / RESULTS, results)


# --- readers ----------------------------------------------------------------------------


def read_json(path: Path) -> dict | list | None:
    """A run file's JSON; None when it is missing, or (with a warning naming the file) when
    it is not readable JSON, so one damaged file never hides the other runs."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        log.warning("%s skipped: not readable JSON (%s)", path, error)
        return None


def _read_object(path: Path) -> dict | None:
    data = read_json(path)
    if data is not None and not isinstance(data, dict):
        log.warning("%s skipped: not a JSON object", path)
        return None
    return data


def read_args(run_folder: Path) -> dict:
    return _read_object(Path(run_folder) / ARGS) or {}


def read_summary(run_folder: Path) -> dict | None:
    return _read_object(Path(run_folder) / SUMMARY)


def read_results(results_file: Path) -> dict | None:
    """An evaluation's results.json; None unless it holds recalls."""
    result = _read_object(results_file)
    return result if result is not None and "recalls" in result else None


def predictions_file(evaluation_folder: Path) -> Path | None:
    """An evaluation's predictions.csv, or the gzipped copy of a recorded run; None if neither."""
    for name in (PREDICTIONS, PREDICTIONS_GZ):
        if (Path(evaluation_folder) / name).is_file():
            return Path(evaluation_folder) / name
    return None


def results_files(run_folder: Path) -> list[Path]:
    """The results.json of each evaluation of the run, sorted by folder name."""
    return sorted(Path(run_folder).glob(f"{EVALUATION_PREFIX}*/{RESULTS}"))


def is_run_folder(folder: Path) -> bool:
    """A folder holding a summary.json, args.json or an evaluation."""
    return folder.is_dir() and (
        (folder / SUMMARY).is_file() or (folder / ARGS).is_file() or bool(results_files(folder))
    )


def run_folders(workspace: str | os.PathLike) -> list[Path]:
    """The workspace's run folders, sorted by name."""
    runs = runs_folder(workspace)
    if not runs.is_dir():
        return []
    return sorted(p for p in runs.iterdir() if is_run_folder(p))


def runs_with_model(runs_dir: str | os.PathLike) -> list[str]:
    """Names of the run folders in runs_dir that hold a trained model, sorted."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(p.name for p in runs_dir.iterdir() if (p / BEST_MODEL).is_file())


def run_contents(folder: Path) -> list[str]:
    """What a run folder holds besides its preamble (args.json) and unfinished writes."""
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name not in PREAMBLE_FILES and not p.name.endswith(files.TEMPORARY_SUFFIX)
    )

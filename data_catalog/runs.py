"""The run folder, WORKSPACE/runs/<run>/: its file names, its writers and its readers.

    args.json                      every flag of the run (written first)
    best_model.pth                 the network of the best val epoch (training)
    last_checkpoint.pth            everything --resume_train needs (training)
    summary.json                   training history, best val R@1, test recalls
    progress.json                  the training as it happens: the epochs so far, the current
                                   epoch's iterations, the time of the record (training.progress)
    eval_<set>_<queries>/          one per evaluation: results.json, predictions.csv,
                                   preds/ (images), descriptors
    index/                         the app's retrieval index (training.build_index)

A hidden sibling .<run>.XXXX.tmp is a run being written to replace <run> (training
--overwrite), or an evaluation folder being written likewise inside the run: readers skip
them (core.files.is_temporary) until they are swapped in.

Beside the run folders: ablation_<grid>.json/.csv (training.ablation) and claims.json
(training.claims), the tables of grids of runs.

Every file is written whole (core.files), so a reader sees the old version or the new one.
The run folder is the source of truth for a run's results; the catalog indexes them
(data_catalog.sync) and the app reads them through the readers below.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from core import files

log = logging.getLogger(__name__)

ARGS = "args.json"
BEST_MODEL = "best_model.pth"
LAST_CHECKPOINT = "last_checkpoint.pth"
SUMMARY = "summary.json"
PROGRESS = "progress.json"
RESULTS = "results.json"
PREDICTIONS = "predictions.csv"
# Recorded runs shipped in the repo keep their predictions gzipped (a tenth of the bytes).
PREDICTIONS_GZ = PREDICTIONS + ".gz"
INDEX_DIR = "index"
# A streaming index build's partial index and progress, removed once RUN/index is saved.
INDEX_BUILD_DIR = "index_build"
EVALUATION_PREFIX = "eval_"
# Written before any result: a folder holding only these has nothing to lose (the progress
# record's epochs are also in last_checkpoint.pth and summary.json, which are results).
PREAMBLE_FILES = (ARGS, PROGRESS)


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


def write_progress(run_folder: Path, progress: dict) -> Path:
    return files.write_json(Path(run_folder) / PROGRESS, progress, indent=None)


def write_results(evaluation: Path, results: dict) -> Path:
    return files.write_json(Path(evaluation) / RESULTS, results)


# --- readers ----------------------------------------------------------------------------
# A run file of the wrong shape (hand-edited, from another tool, damaged) is skipped with one
# sentence naming it, so that it never hides the other runs: logged, and collected for the
# caller that shows them (collect_malformed; the app lists them on the page).

_malformed: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "malformed_run_files", default=None
)


def malformed(path: str | os.PathLike, reason: str) -> None:
    """Say that the run file `path` is skipped because of `reason`."""
    log.warning("%s skipped: %s", path, reason)
    found = _malformed.get()
    note = f"{path} ({reason})"
    if found is not None and note not in found:
        found.append(note)


@contextlib.contextmanager
def collect_malformed() -> Iterator[list[str]]:
    """Within the block, every malformed run file read is also listed in the yielded list."""
    found: list[str] = []
    token = _malformed.set(found)
    try:
        yield found
    finally:
        _malformed.reset(token)


def read_json(path: Path) -> dict | list | None:
    """A run file's JSON; None when it is missing, or (said by `malformed`) when it is not
    readable JSON."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:  # its folder is being swapped (core.files.swap_folder)
        return None
    except (OSError, ValueError) as error:
        malformed(path, f"not readable JSON: {error}")
        return None


NUMBER = (int, float)
# The fields the readers use, and the JSON types each may hold (None is always allowed).
ARGS_FIELDS = {
    **dict.fromkeys(("backbone", "pooling", "queries_folder", "test_set_folder"), str),
    **dict.fromkeys(("fc_output_dim", "image_size", "groups_num", "N", "L"), int),
    **dict.fromkeys(("M", "alpha", "positive_dist_threshold"), NUMBER),
}
SUMMARY_FIELDS = {
    "kind": str,
    "best_val_recall1": NUMBER,
    "history": list,
    "test": dict,
    "test_result": dict,
    "release": dict,
}
EPOCH_FIELDS = {"epoch": int, "group": int, "loss": NUMBER, "images_per_s": NUMBER, "val": dict}
RESULTS_FIELDS = {
    "test_set": str,
    "queries_folder": str,
    "num_database": int,
    "num_queries": int,
    "recalls": dict,
    "args": dict,
    "kind": str,
    "predictions": str,
}


def shape_problem(data, fields: dict, what: str = "") -> str | None:
    """Why `data` is not a JSON object whose `fields` hold their types; None if it is."""
    if not isinstance(data, dict):
        return f"{what or 'it'} is not a JSON object"
    for name, kinds in fields.items():
        value = data.get(name)
        if value is not None and not isinstance(value, kinds):
            return f"{what}{'.' if what else ''}{name} is not a {_type_name(kinds)}"
    return None


def _type_name(kinds) -> str:
    names = {str: "string", int: "whole number", float: "number", list: "list", dict: "object"}
    return "number" if kinds == NUMBER else names.get(kinds, str(kinds))


def recalls_problem(recalls: dict, what: str = "recalls") -> str | None:
    """Why a {"R@n": percent} table is not one; None if it is."""
    for key, value in recalls.items():
        number = key.removeprefix("R@")
        if not (key.startswith("R@") and number.isdigit()) or not isinstance(value, NUMBER):
            return f'{what} holds {key!r}: {value!r}, not a recall like "R@1": 50.0'
    return None


def summary_problem(summary) -> str | None:
    return (
        shape_problem(summary, SUMMARY_FIELDS)
        or recalls_problem(summary.get("test") or {}, "test")
        or shape_problem(summary.get("test_result") or {}, RESULTS_FIELDS, "test_result")
    )


def results_problem(results) -> str | None:
    problem = shape_problem(results, RESULTS_FIELDS)
    if problem:
        return problem
    if "recalls" not in results:
        return "it holds no recalls"
    return recalls_problem(results["recalls"]) or shape_problem(
        results.get("args") or {}, ARGS_FIELDS, "args"
    )


def _read_checked(path: Path, problem_of) -> dict | None:
    data = read_json(path)
    problem = problem_of(data) if data is not None else None
    if problem:
        malformed(path, problem)
        return None
    return data


def read_args(run_folder: Path) -> dict:
    return _read_checked(Path(run_folder) / ARGS, lambda d: shape_problem(d, ARGS_FIELDS)) or {}


def read_summary(run_folder: Path) -> dict | None:
    """summary.json; an epoch of its history of the wrong shape is left out (and said)."""
    path = Path(run_folder) / SUMMARY
    summary = _read_checked(path, summary_problem)
    if summary and summary.get("history"):
        summary["history"] = [
            epoch
            for number, epoch in enumerate(summary["history"])
            if _epoch_ok(path, number, epoch)
        ]
    return summary


def _epoch_ok(path: Path, number: int, epoch) -> bool:
    what = f"history[{number}]"
    problem = shape_problem(epoch, EPOCH_FIELDS, what)
    problem = problem or recalls_problem(epoch.get("val") or {}, f"{what}.val")
    if problem:
        malformed(path, f"{problem}; that epoch is left out")
    return not problem


def read_progress(run_folder: Path) -> dict | None:
    return _read_checked(Path(run_folder) / PROGRESS, lambda data: shape_problem(data, {}))


def read_results(results_file: Path) -> dict | None:
    """An evaluation's results.json; None unless it holds recalls."""
    return _read_checked(results_file, results_problem)


def predictions_file(evaluation_folder: Path) -> Path | None:
    """An evaluation's predictions.csv, or the gzipped copy of a recorded run; None if neither."""
    found = (Path(evaluation_folder) / name for name in (PREDICTIONS, PREDICTIONS_GZ))
    return next((path for path in found if path.is_file()), None)


def results_files(run_folder: Path) -> list[Path]:
    """The results.json of each evaluation of the run, sorted by folder name."""
    return sorted(Path(run_folder).glob(f"{EVALUATION_PREFIX}*/{RESULTS}"))


def is_run_folder(folder: Path) -> bool:
    """A folder holding a summary.json, args.json or an evaluation."""
    return folder.is_dir() and (
        (folder / SUMMARY).is_file() or (folder / ARGS).is_file() or bool(results_files(folder))
    )


def run_folders(workspace: str | os.PathLike) -> list[Path]:
    """The workspace's run folders, sorted by name (not the replacements being written)."""
    runs = runs_folder(workspace)
    if not runs.is_dir():
        return []
    return sorted(p for p in runs.iterdir() if not files.is_temporary(p) and is_run_folder(p))


def runs_with_model(runs_dir: str | os.PathLike) -> list[str]:
    """Names of the run folders in runs_dir that hold a trained model, sorted."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in runs_dir.iterdir()
        if not files.is_temporary(p) and (p / BEST_MODEL).is_file()
    )


def replacement_folders(folder: str | os.PathLike) -> list[Path]:
    """The hidden siblings .<name>.XXXX.tmp that replace `folder` or hold it aside while it
    is replaced (core.files.new_sibling_folder): a random part without dots, so that the
    siblings of a run named <name>.x are not taken for these."""
    folder = Path(folder)
    prefix = f".{folder.name}."
    return [
        p
        for p in files.temporary_siblings(folder)
        if p.is_dir() and "." not in p.name[len(prefix) : -len(files.TEMPORARY_SUFFIX)]
    ]


def run_contents(folder: Path) -> list[str]:
    """What a run folder holds besides its preamble (args.json) and unfinished writes."""
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name not in PREAMBLE_FILES and not p.name.endswith(files.TEMPORARY_SUFFIX)
    )

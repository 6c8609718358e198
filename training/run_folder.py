"""Training's run-folder policy: an earlier run is never replaced without --overwrite, and
never before its replacement has a model; --resume_train continues a run in its own folder
(or brings its best model to a new one).

Replacing (--overwrite over a folder holding a run): the new run is trained into a hidden
sibling (.RUN.XXXX.tmp, core.files.new_sibling_folder) and swapped in once it has a model.
Until then the earlier run (its model, evaluations and index) stays as it was, so a flag
the data cannot satisfy, a checkpoint that does not fit, Ctrl-C, or --resume_model
RUN/best_model.pth of the run being replaced all leave it whole. A replacement that stops
with an error is removed; one killed outright is removed by the next --overwrite.

The folder's file names, writers and readers are data_catalog.runs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

from core import files
from core.errors import UserError
from data_catalog import runs
from training import distributed

log = logging.getLogger(__name__)


def continues_run(args: argparse.Namespace) -> bool:
    """True when --resume_train names a checkpoint inside this run's own folder."""
    if not args.resume_train:
        return False
    return Path(args.resume_train).resolve().parent == Path(args.run_folder).resolve()


def check_run_folder(args: argparse.Namespace) -> None:
    """Refuse to replace an earlier run unless --overwrite or --resume_train continues it."""
    folder = Path(args.run_folder)
    if files.restore_set_aside(folder):
        log.warning("%s was put back: an earlier replacement was killed while swapping", folder)
    found = runs.run_contents(folder)
    if not found or continues_run(args) or args.overwrite:
        return
    shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
    raise UserError(
        f"{folder} already holds a run ({shown}); keep both by choosing another --save_dir, "
        f"continue it with --resume_train {folder / runs.LAST_CHECKPOINT}, or replace it with "
        "--overwrite"
    )


def replaces_run(args: argparse.Namespace) -> bool:
    """--overwrite over a folder that holds a run this command does not continue."""
    folder = Path(args.run_folder)
    return bool(args.overwrite and runs.run_contents(folder) and not continues_run(args))


def remove_abandoned_replacements(folder: Path) -> None:
    """Replacements of `folder` left by a process killed outright (no Python cleanup ran)."""
    for left in runs.replacement_folders(folder):
        log.warning("removing %s, left by an earlier --overwrite that was killed", left)
        shutil.rmtree(left, ignore_errors=True)


def prepare_run_folder(args: argparse.Namespace, context) -> Path:
    """Check on every rank (before any writes); create the folder this run writes into and
    write args.json there. Returns that folder: the run folder itself, or (replacing a run)
    a hidden sibling that finish_run_folder swaps in."""
    check_run_folder(args)
    distributed.barrier(context)
    folder = Path(args.run_folder)
    writing = folder
    if context.is_main:
        if replaces_run(args):
            remove_abandoned_replacements(folder)
            writing = files.new_sibling_folder(folder)
            log.warning(
                "--overwrite: training into %s; the earlier run in %s is kept until this one "
                "has a model",
                writing,
                folder,
            )
        writing.mkdir(parents=True, exist_ok=True)
        runs.write_args(writing, args)
    writing = Path(distributed.from_main(context, str(writing)))
    distributed.barrier(context)
    return writing


def finish_run_folder(args: argparse.Namespace, context, writing: Path) -> None:
    """A replacement that has a model takes the run folder's place (the earlier run is
    removed only then); a run written in place needs nothing."""
    folder = Path(args.run_folder)
    if context.is_main and writing != folder:
        if not (writing / runs.BEST_MODEL).is_file():
            raise UserError(
                f"the replacement of {folder} ended without a {runs.BEST_MODEL}; the earlier "
                "run is kept as it was"
            )
        files.swap_folder(writing, folder)
        log.info("the earlier run in %s was replaced by this one", folder)
    distributed.barrier(context)


def abandon_run_folder(args: argparse.Namespace, context, writing: Path) -> None:
    """A replacement that stopped (error, Ctrl-C) is removed; the earlier run stays."""
    folder = Path(args.run_folder)
    if context.is_main and writing != folder and writing.exists():
        shutil.rmtree(writing, ignore_errors=True)
        log.warning(
            "the replacement of %s stopped: the earlier run there is kept as it was and the "
            "unfinished replacement was removed",
            folder,
        )


@contextlib.contextmanager
def run_folder_of(args: argparse.Namespace, context) -> Iterator[Path]:
    """The folder a training writes into (prepare_run_folder); on success it becomes the
    run folder, on any error a replacement is removed and the earlier run kept."""
    writing = prepare_run_folder(args, context)
    try:
        yield writing
        finish_run_folder(args, context, writing)
    except BaseException:
        abandon_run_folder(args, context, writing)
        raise


def adopt_best_model(args, run_folder: Path) -> None:
    """Resuming into a new folder: bring the checkpoint's best_model.pth along."""
    source = Path(args.resume_train).resolve().parent / runs.BEST_MODEL
    target = run_folder / runs.BEST_MODEL
    if source.is_file() and not target.exists():
        files.write_bytes(target, source.read_bytes())

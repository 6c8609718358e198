"""Training's run-folder policy: an earlier run is never replaced without --overwrite, and
--resume_train continues a run in its own folder (or brings its best model to a new one).

The folder's file names, writers and readers are data_catalog.runs.
"""

from __future__ import annotations

import argparse
import logging
import shutil
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
    found = runs.run_contents(folder)
    if not found or continues_run(args) or args.overwrite:
        return
    shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
    raise UserError(
        f"{folder} already holds a run ({shown}); keep both by choosing another --save_dir, "
        f"continue it with --resume_train {folder / runs.LAST_CHECKPOINT}, or replace it with "
        "--overwrite"
    )


def prepare_run_folder(args: argparse.Namespace, context) -> Path:
    """Check on every rank (before any writes), then clear (--overwrite) and create it."""
    check_run_folder(args)
    distributed.barrier(context)
    folder = Path(args.run_folder)
    if context.is_main:
        if args.overwrite and runs.run_contents(folder) and not continues_run(args):
            log.warning("--overwrite: removing the earlier run in %s", folder)
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        runs.write_args(folder, args)
    distributed.barrier(context)
    return folder


def adopt_best_model(args, run_folder: Path) -> None:
    """Resuming into a new folder: bring the checkpoint's best_model.pth along."""
    source = Path(args.resume_train).resolve().parent / runs.BEST_MODEL
    target = run_folder / runs.BEST_MODEL
    if source.is_file() and not target.exists():
        files.write_bytes(target, source.read_bytes())

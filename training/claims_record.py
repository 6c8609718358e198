"""Recorded claims: what training.claims measured, copied into the repo with its provenance.

    python -m training.claims_record --workspace data --out records/claims [--overwrite]

The copy keeps the workspace's layout (OUT/runs/claims.json, OUT/runs/ablation_claims_*.json
and .csv, and per point OUT/runs/<run>/summary.json, args.json, eval_*/results.json and
predictions.csv: text only, no weights), so the app reads OUT like a workspace and labels it
recorded. OUT/record.json, written last, names the command, commit, machine, date, the wall
and CPU time, the verdicts and the sha256 of every copied file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
from pathlib import Path

from core import files
from core.errors import UserError, user_errors
from core.index import file_sha256
from data_catalog import runs
from training.release import git_commit_before, machine

log = logging.getLogger(__name__)
RECORD = "record.json"
RUN_FILES = (
    runs.SUMMARY,
    runs.ARGS,
    f"{runs.EVALUATION_PREFIX}*/{runs.RESULTS}",
    f"{runs.EVALUATION_PREFIX}*/{runs.PREDICTIONS}",
)
COMMAND = "python -m training.claims --dataset_folder data/synthetic_demo --workspace data"


def recorded_files(folder: Path) -> list[Path]:
    """The claims' files under WORKSPACE/runs, relative to it."""
    found = [folder / runs.claims_file(folder.parent).name]
    found += sorted(folder.glob("ablation_claims_*.json"))
    found += sorted(folder.glob("ablation_claims_*.csv"))
    for run in sorted(p for p in folder.glob("ablation_claims_*") if p.is_dir()):
        for pattern in RUN_FILES:
            found += sorted(run.glob(pattern))
    return [p.relative_to(folder) for p in found if p.is_file()]


def record(workspace: Path, out: Path, overwrite: bool) -> dict:
    folder, claims_path = runs.runs_folder(workspace), runs.claims_file(workspace)
    if not claims_path.is_file():
        raise UserError(f"{claims_path} is missing: run {COMMAND} first")
    if (out / RECORD).exists() and not overwrite:
        raise UserError(
            f"{out / RECORD} already records claims; keep it, or replace with --overwrite"
        )
    claims = json.loads(claims_path.read_text())
    finished = datetime.datetime.fromtimestamp(claims_path.stat().st_mtime, datetime.UTC)
    started = finished - datetime.timedelta(seconds=float(claims.get("seconds", 0)))
    copied = {}
    for relative in recorded_files(folder):
        target = runs.runs_folder(out) / relative
        files.write_bytes(target, (folder / relative).read_bytes())
        copied[relative.as_posix()] = file_sha256(target)
    provenance = {
        "what": "the paper's claims on the synthetic demo city, over seeds",
        "command": COMMAND,
        "commit": git_commit_before(started),
        "machine": machine(),
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "wall_time_s": claims.get("seconds"),
        "cpu_seconds": claims.get("cpu_seconds"),
        "budget": claims.get("budget"),
        "verdicts": {name: claim.get("verdict") for name, claim in claims["claims"].items()},
        "files": copied,
    }
    files.write_json(out / RECORD, provenance)  # last: a record describes the files beside it
    log.info("recorded %d files of the claims in %s", len(copied), out)
    return provenance


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="copy the claims' results into the repo")
    parser.add_argument("--workspace", default="data")
    parser.add_argument("--out", default="records/claims")
    parser.add_argument("--overwrite", action="store_true", help="replace a recorded set")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    return parser


@user_errors
def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    record(Path(args.workspace), Path(args.out), args.overwrite)


if __name__ == "__main__":
    main()

"""Bring the catalog's runs and results up to date from the run folders.

    python -m data_catalog.sync --workspace data [--catalog FILE] [--wait_s 30]

The run folders are the source of truth: training writes RUN/summary.json and evaluation
RUN/eval_<set>_<queries>/results.json before they try the catalog, so a result that a busy
catalog could not take is recorded here later. Idempotent: running it twice leaves the
same rows (each is written with its file's modification time as `created`).
Within a run folder, summary.json is recorded first and evaluations in time order, as
they happened, so the run's kind and settings end as the last command left them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from core.errors import UserError, user_errors, with_debug_flag
from data_catalog import runs
from data_catalog.catalog import DEFAULT_WORKSPACE, catalog_file, connect
from data_catalog.results import record_evaluation


@dataclass
class RunRecord:
    """One file of a run folder, as record_evaluation takes it."""

    run: str
    kind: str
    folder: str
    settings: dict
    result: dict | None
    created: datetime
    source: Path


def _modified(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).replace(tzinfo=None)


def run_records(run_folder: Path) -> list[RunRecord]:
    """The records a run folder holds: its summary.json, then its evaluations by time."""
    settings = runs.read_args(run_folder)
    summary = runs.read_summary(run_folder)
    found = []  # (file, kind, settings, result)
    if summary is not None:
        kind = str(summary.get("kind", "train"))
        found.append((run_folder / runs.SUMMARY, kind, settings, summary.get("test_result")))
    for path in sorted(runs.results_files(run_folder), key=_modified):
        result = runs.read_results(path)
        if result is not None:
            kind = str(result.get("kind", "eval"))
            found.append((path, kind, result.get("args") or settings, result))
    return [
        RunRecord(run_folder.name, kind, str(run_folder), args, result, _modified(path), path)
        for path, kind, args, result in found
    ]


def sync(workspace: str | Path, catalog: str | Path | None = None, wait_s=None) -> int:
    """Record every run folder's results in the catalog; returns how many files were read."""
    folder = runs.runs_folder(workspace)
    if not folder.is_dir():
        raise UserError(f"{folder} does not exist: no runs to record; check --workspace")
    catalog = Path(catalog) if catalog else catalog_file(workspace)
    records = [record for run in runs.run_folders(workspace) for record in run_records(run)]
    with connect(catalog, wait_s=wait_s) as con:
        for record in tqdm(records, desc="runs", unit="file", disable=not records):
            try:
                record_evaluation(
                    con,
                    record.run,
                    record.kind,
                    record.folder,
                    record.settings,
                    record.result,
                    record.created,
                )
            except (KeyError, TypeError, ValueError) as error:  # a hand-edited results file
                runs.malformed(record.source, f"not a results file of this project ({error})")
    return len(records)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workspace", default=DEFAULT_WORKSPACE, help="folder holding runs/ and the catalog"
    )
    parser.add_argument("--catalog", default=None, help="DuckDB file (default WORKSPACE/catalog)")
    parser.add_argument(
        "--wait_s", type=float, default=None, help="how long to wait for a busy catalog"
    )
    return with_debug_flag(parser)


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.wait_s is not None and not args.wait_s >= 0:
        parser.error(f"--wait_s {args.wait_s} must be 0 or more seconds")
    with runs.collect_malformed() as malformed:
        count = sync(args.workspace, args.catalog, args.wait_s)
    catalog = args.catalog or catalog_file(args.workspace)
    folder = runs.runs_folder(args.workspace)
    print(f"recorded {count} run and evaluation files from {folder} in {catalog}")
    if malformed:
        print(f"skipped {len(malformed)} malformed files: {'; '.join(malformed)}")


if __name__ == "__main__":
    main()

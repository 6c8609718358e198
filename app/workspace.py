"""Where the app's data lives: one workspace folder chosen on the server, never in the page."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from data_catalog import runs
from data_catalog.catalog import DEFAULT_WORKSPACE, catalog_file

WORKSPACE_ENV = "COSPLACE_WORKSPACE"
RECORDS_ENV = "COSPLACE_RECORDED_CLAIMS"
# Claims recorded once and shipped in the repo (training.release claims).
RECORDED_CLAIMS = Path(__file__).resolve().parents[1] / "records" / "claims"


def workspace_dir(argv: list[str] | None = None) -> Path:
    """The workspace folder: the script argument `--workspace DIR` (`streamlit run app/main.py
    -- --workspace DIR`), else $COSPLACE_WORKSPACE, else `data`."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workspace", default=None)
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    chosen = known.workspace or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE
    return Path(chosen).expanduser()


def catalog_path(workspace: Path | None = None) -> Path:
    return catalog_file(workspace or workspace_dir())


def runs_dir(workspace: Path | None = None) -> Path:
    return runs.runs_folder(workspace or workspace_dir())


def recorded_claims_dir() -> Path:
    """The shipped claims (records/claims), or $COSPLACE_RECORDED_CLAIMS (tests)."""
    return Path(os.environ.get(RECORDS_ENV) or RECORDED_CLAIMS)

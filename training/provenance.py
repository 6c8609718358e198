"""Provenance of a shipped record: the commit, the machine and when the work ran.

training.release writes it into the demo model's record and into the recorded claims' one.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name as lscpu prints it (from /proc/cpuinfo on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown"


def machine() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "device": "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def provenance(done: Path, seconds: float, period=("started", "finished")) -> dict:
    """Where and when the work that wrote `done` last ran, for a record: the commit of HEAD
    before it started, the machine, its start and its end (named `period`), taking it to have
    ended when `done` was written, after `seconds`."""
    finished = datetime.datetime.fromtimestamp(done.stat().st_mtime, datetime.UTC)
    started = finished - datetime.timedelta(seconds=seconds)
    return {
        "commit": git_commit_before(started),
        "machine": machine(),
        period[0]: started.isoformat(timespec="seconds"),
        period[1]: finished.isoformat(timespec="seconds"),
    }


def git_commit_before(when: datetime.datetime) -> str | None:
    """The last commit of HEAD made before `when` (the run's start), or None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-list", "-1", f"--before={when.isoformat()}", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None

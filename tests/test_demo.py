"""`make demo`'s steps and stamps, the CPU autocast choice, the city-scale projections."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from benchmarks.city_scale import project, project_latency
from training.schedule import amp_dtype

ROOT = Path(__file__).resolve().parents[1]
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(workspace: Path, stamp: Path, *targets: str, dry_run: bool = False, **variables):
    """Run the project's Makefile on `workspace`, with `stamp` standing for an installed venv
    and the folder `release` beside the workspace for the shipped model."""
    command = ["make", "--no-print-directory", "-C", str(ROOT)]
    command += ["-n"] if dry_run else []
    release = workspace.parent / "release"
    command += [f"WORKSPACE={workspace}", f"STAMP={stamp}", f"DEMO_RELEASE={release}", *targets]
    command += [f"{name}={value}" for name, value in variables.items()]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def touch_in_order(*paths: Path) -> None:
    """Create the files with strictly increasing modification times, oldest first."""
    now = time.time() - 100
    for offset, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        os.utime(path, (now + offset, now + offset))


def shipped_model(tmp_path: Path) -> list[Path]:
    """The files of the shipped model, in the release folder that make() points to."""
    return [tmp_path / "release" / "record.json", tmp_path / "release" / "demo_model.pth"]


@pytest.fixture
def finished_demo(tmp_path: Path) -> tuple[Path, Path]:
    """A workspace where every demo step has left its file, as after a whole `make demo`."""
    workspace, stamp = tmp_path / "data", tmp_path / "installed"
    run = workspace / "runs" / "demo"
    touch_in_order(
        stamp,
        *shipped_model(tmp_path),
        workspace / "synthetic_demo" / "metadata.json",
        run / "summary.json",
        run / "eval_test_queries_v1" / "results.json",
        run / "eval_test_queries_v2" / "results.json",
        run / "index" / "index.faiss",
    )
    return workspace, stamp


@needs_make
def test_fresh_demo_runs_every_step_in_order(tmp_path: Path) -> None:
    touch_in_order(*shipped_model(tmp_path))
    plan = make(tmp_path / "data", tmp_path / "installed", "demo", dry_run=True)
    assert plan.returncode == 0, plan.stderr
    assert "training.train" not in plan.stdout  # the demo model is shipped, never trained here
    steps = [
        "pip install",
        "data_catalog.synthetic --preset demo",
        "data_catalog.ingest",
        "training.release install",
        "--queries_folder queries_v1",
        "--queries_folder queries_v2",
        "training.build_index",
        "demo-app",
    ]
    positions = [plan.stdout.find(step) for step in steps]
    assert -1 not in positions, dict(zip(steps, positions, strict=True))
    assert positions == sorted(positions), dict(zip(steps, positions, strict=True))
    assert "--build_index" in plan.stdout  # the v1 evaluation saves the app's index


@needs_make
def test_second_demo_reuses_every_step(finished_demo: tuple[Path, Path]) -> None:
    workspace, stamp = finished_demo
    # PY=echo: a step that make wrongly thought stale would print, never run
    result = make(workspace, stamp, "demo-eval", "demo-index", PY="echo")
    assert result.returncode == 0, result.stderr
    for step in ("training.train", "training.eval", "training.build_index", "synthetic"):
        assert step not in result.stdout, result.stdout


@needs_make
def test_a_new_release_is_installed_and_evaluated_again(finished_demo: tuple[Path, Path]) -> None:
    workspace, stamp = finished_demo
    touch_in_order(*shipped_model(workspace.parent)[:1])  # git pull brought a new record
    os.utime(workspace.parent / "release" / "record.json")  # now: newer than every step
    result = make(workspace, stamp, "demo-eval", dry_run=True)
    assert result.returncode == 0, result.stderr
    assert "training.release install" in result.stdout
    assert "--queries_folder queries_v2" in result.stdout
    assert "training.train" not in result.stdout


@needs_make
def test_demo_release_trains_the_recipe_then_exports(tmp_path: Path) -> None:
    workspace, stamp = tmp_path / "data", tmp_path / "installed"
    touch_in_order(stamp, workspace / "synthetic_demo" / "metadata.json")
    plan = make(workspace, stamp, "demo-release", dry_run=True)
    assert plan.returncode == 0, plan.stderr
    train_at = plan.stdout.find("training.train --train_set_folder")
    export_at = plan.stdout.find("training.release export")
    assert -1 < train_at < export_at, plan.stdout
    training = plan.stdout[train_at:export_at]
    assert "--weather" in training  # never --dataset_folder: training does not see test/
    assert "--dataset_folder" not in training and "synthetic_demo/test" not in training


@needs_make
def test_interrupted_training_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    workspace, stamp = tmp_path / "data", tmp_path / "installed"
    touch_in_order(stamp, workspace / "synthetic_demo" / "metadata.json")
    (workspace / "runs" / "demo_train").mkdir(parents=True)
    (workspace / "runs" / "demo_train" / "last_checkpoint.pth").touch()
    plan = make(workspace, stamp, "demo-train", dry_run=True)
    assert plan.returncode == 0, plan.stderr
    # the recipe decides between --resume_train and --overwrite in the shell; run that test
    line = next(ln for ln in plan.stdout.splitlines() if "last_checkpoint.pth ]" in ln)
    decision = line.strip()[2:-1]  # drop the $( ) around the shell test
    chosen = subprocess.run(["sh", "-c", decision], capture_output=True, text=True)
    assert chosen.stdout.split() == [
        "--resume_train",
        str(workspace / "runs" / "demo_train" / "last_checkpoint.pth"),
    ]


def test_cpu_autocast_is_bf16_only_when_asked() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_dtype(argparse.Namespace(amp_cpu_bf16=False, use_amp16=False), cpu) is None
    assert amp_dtype(argparse.Namespace(amp_cpu_bf16=True, use_amp16=False), cpu) is torch.bfloat16
    assert amp_dtype(argparse.Namespace(amp_cpu_bf16=False, use_amp16=True), cuda) is torch.float16
    assert amp_dtype(argparse.Namespace(amp_cpu_bf16=False, use_amp16=False), cuda) is (
        torch.bfloat16
    )


def test_latency_projections_follow_their_growth_laws() -> None:
    assert project_latency("flat", 2.0, 1_000_000, 41_000_000) == pytest.approx(82.0)
    assert project_latency("flat_fp16", 1.0, 100_000, 2_800_000) == pytest.approx(28.0)
    assert project_latency("ivf_pq", 1.0, 100_000, 10_000_000) == pytest.approx(10.0)
    assert project_latency("hnsw", 1.0, 100_000, 10_000_000) == pytest.approx(1.4)


def test_projected_memory_is_count_times_bytes(capsys: pytest.CaptureFixture) -> None:
    project({"flat": (1_000_000, 2048.0, 10.0)})
    table = capsys.readouterr().out
    assert "| SF-XL test database (2.8M) | flat  | 1,000,000 | 5.34" in table
    assert "| SF-XL raw set (41.2M)      | flat  | 1,000,000 | 78.6" in table

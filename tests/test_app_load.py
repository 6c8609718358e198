"""benchmarks.app_load's plumbing: the workspace it gives the app, and one tiny session."""

from __future__ import annotations

import shutil

import pytest
from app_fixtures import INDEX_FLAGS
from conftest import TINY_RUN_NAME

from benchmarks import app_load
from data_catalog import catalog


def test_the_app_reads_a_copy_of_the_catalog_and_the_run_folders_themselves(tmp_path):
    demo = tmp_path / "data"
    (demo / "runs" / "demo").mkdir(parents=True)
    (demo / "runs" / "demo" / "summary.json").write_text("{}")
    (demo / "city").mkdir()
    catalog.connect(demo / "catalog.duckdb").close()
    (demo / "cache").mkdir()  # the trainings' own, not shared

    workspace = app_load.prepare_workspace(demo, tmp_path / "load")
    assert workspace.name == "data"  # run files' relative paths (data/...) still resolve
    assert (workspace / "runs" / "demo").resolve() == (demo / "runs" / "demo").resolve()
    assert (workspace / "city").resolve() == (demo / "city").resolve()
    assert not (workspace / "cache").exists() and not (workspace / "runs").is_symlink()
    copied = workspace / "catalog.duckdb"
    assert not copied.is_symlink() and copied.read_bytes() == (demo / "catalog.duckdb").read_bytes()


def test_a_workspace_without_a_run_is_refused(tmp_path):
    catalog.connect(tmp_path / "catalog.duckdb").close()
    with pytest.raises(SystemExit, match="no run"):
        app_load.prepare_workspace(tmp_path, tmp_path / "load")


@pytest.mark.slow
def test_one_session_answers_every_step_beside_a_training(tiny_run, tiny_city, tmp_path, capsys):
    from training.build_index import main as build_index_main

    demo = tmp_path / "data"
    shutil.copytree(tiny_run[0], demo)
    run = demo / "runs" / TINY_RUN_NAME
    database = tiny_city / "test" / "database"
    build_index_main(["--run_dir", str(run), "--database_folder", str(database), *INDEX_FLAGS])
    catalog_before = (demo / "catalog.duckdb").read_bytes()

    argv = ["--demo_workspace", str(demo), "--dataset", str(tiny_city), "--run", TINY_RUN_NAME]
    app_load.main([*argv, "--sessions", "1", "--results_page"])

    printed = capsys.readouterr().out
    row = printed.strip().splitlines()[-1].strip("|").split("|")
    sessions, answers, p50, p95, _, rss, failed, _, _ = [
        float(c.replace(",", "")) if c.strip() != "-" else None for c in row
    ]
    # Retrieve: open, upload, k, threshold; Results: open, threshold.
    assert (sessions, answers, failed) == (1, 6, 0), printed
    assert 0 < p50 <= p95 and rss > 0
    # The trainings wrote the copy: the workspace given is as it was.
    assert (demo / "catalog.duckdb").read_bytes() == catalog_before
    assert [p.name for p in (demo / "runs").iterdir()] == [TINY_RUN_NAME]

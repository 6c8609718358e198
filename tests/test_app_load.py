"""benchmarks.app_load's plumbing: the workspace it gives the app, and one tiny session."""

from __future__ import annotations

import shutil
import threading

import pytest
from app_fixtures import INDEX_FLAGS
from conftest import TINY_RUN_NAME

from benchmarks import app_load
from benchmarks.threaded_apptest import script_thread_crashes, sessions_share_one_runtime
from core.errors import UserError
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
    with pytest.raises(UserError, match="no run"):
        app_load.prepare_workspace(tmp_path, tmp_path / "load")


TRIVIAL_PAGE = """
import numpy as np
import streamlit as st

st.selectbox("Run", ["demo", "other"], key="run")
st.image(np.zeros((4, 4, 3), dtype=np.uint8))
st.write("answered")
"""


def test_sessions_in_threads_all_run_their_page(tmp_path):
    """AppTests in threads, as the benchmark's sessions: without one Runtime for all, one
    session's run ending (Runtime._instance = None) killed other sessions' script threads, and
    their AppTest.run raised KeyError '...SCRIPT_RUN_WITHOUT_ERRORS'."""
    from streamlit import config, runtime
    from streamlit.testing.v1 import AppTest

    page = tmp_path / "page.py"
    page.write_text(TRIVIAL_PAGE)
    sessions, runs = 8, 4
    raised, shown = [], []
    barrier = threading.Barrier(sessions)

    def session() -> None:
        barrier.wait()
        for _ in range(runs):  # each a fresh session: its first run is the one that raised
            app = AppTest.from_file(str(page), default_timeout=60)
            try:
                app.run()
                shown.append((app.markdown[0].value, app.selectbox(key="run").value))
                shown.extend(e.value for e in app.exception)
            except Exception as error:
                raised.append(f"{type(error).__name__}: {error}")

    with (
        sessions_share_one_runtime(),
        script_thread_crashes() as crashes,
    ):
        threads = [threading.Thread(target=session) for _ in range(sessions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert (raised, crashes) == ([], [])
    assert shown == [("answered", "demo")] * (sessions * runs)
    # Streamlit as it was: no Runtime outside the sessions, AppTest's option unset.
    assert not runtime.exists() and config.get_option("global.appTest") is False


def test_harness_errors_are_counted_by_kind():
    timeout = "RuntimeError: AppTest script run timed out after 600.0(s)"
    kinds = app_load.error_kinds([timeout, "KeyError: 'k'\nmore", timeout])
    assert kinds == {timeout: 2, "KeyError: 'k'": 1}


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
    sessions, answers, p50, p95, _, rss, failed, harness, _, _ = [
        float(c.replace(",", "")) if c.strip() != "-" else None for c in row
    ]
    # Retrieve: open, upload, k, threshold; Results: open, threshold.
    assert (sessions, answers, failed, harness) == (1, 6, 0, 0), printed
    assert 0 < p50 <= p95 and rss > 0
    # The trainings wrote the copy: the workspace given is as it was.
    assert (demo / "catalog.duckdb").read_bytes() == catalog_before
    assert [p.name for p in (demo / "runs").iterdir()] == [TINY_RUN_NAME]

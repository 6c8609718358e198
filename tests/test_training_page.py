"""Training page: the progress record the trainer writes, the plain functions that read it
(hand-made histories, damaged records), AppTest of the page, a training followed from
another process, and the page in chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import pytest
from conftest import TINY_RUN_NAME, tiny_training_flags
from streamlit.testing.v1 import AppTest

from app import training_view as tv
from data_catalog import runs
from training.progress import ProgressRecord

REPO = Path(__file__).resolve().parents[1]
MAIN = str(REPO / "app" / "main.py")
TIMEOUT = 180
NOW = 1_800_000_000.0
HOST = "this-host"


def entry(epoch: int, wall_s: float | None, loss: float = 1.0, r1: float = 50.0) -> dict:
    """One epoch as training writes it in a history."""
    record = {"epoch": epoch, "group": epoch % 2, "loss": loss, "seconds": 10.0,
              "images_per_s": 32.0, "val": {"R@1": r1}}  # fmt: skip
    return record | ({"wall_s": wall_s} if wall_s is not None else {})


def view(history, current=None, epochs_num=10, iterations_per_epoch=100, state=tv.TRAINING):
    epochs, notes = tv.clean_history(history, "progress.json")
    assert not notes
    current, _ = tv.clean_current(current, "progress.json")
    return tv.TrainingView("run", state, "", epochs, epochs_num, iterations_per_epoch, 32, current)


def progress_record(history, updated=NOW, state="training", current=None, **extra) -> dict:
    return {"format": 1, "state": state, "updated": updated, "pid": 4242, "host": HOST,
            "epochs_num": 4, "iterations_per_epoch": 10, "batch_size": 8, "every_s": 5.0,
            "longest_gap_s": 2.0, "history": history, "current": current} | extra  # fmt: skip


def write_run(workspace: Path, name: str, progress=None, summary=None, args=None) -> Path:
    folder = workspace / "runs" / name
    folder.mkdir(parents=True, exist_ok=True)
    runs.write_args(folder, Namespace(**(args or {"epochs_num": 4})))
    if progress is not None:
        runs.write_progress(folder, progress)
    if summary is not None:
        runs.write_summary(folder, summary)
    return folder


# --- time left, pace, iterations -------------------------------------------------------------


def test_time_left_from_a_hand_made_history():
    # Epochs took 100, 120 and 120 s (wall_s is cumulative); the 4th is half done.
    history = [entry(0, 100.0), entry(1, 220.0), entry(2, 340.0)]
    live = view(history, {"epoch": 3, "iterations_done": 50, "seconds": 5.0})
    assert tv.epoch_pace_s(live.epochs) == pytest.approx(340 / 3)
    assert tv.time_left_s(live) == pytest.approx(340 / 3 * (10 - 3 - 0.5))
    assert tv.time_left_s(live, recent=2) == pytest.approx(120 * 6.5)
    assert tv.iterations(live) == (350, 1000)


def test_time_left_in_the_first_epoch_comes_from_its_iterations():
    live = view([], {"epoch": 0, "iterations_done": 20, "seconds": 40.0}, epochs_num=5)
    # 2 s per iteration, 100 iterations an epoch: 200 s an epoch, 4.8 epochs to go
    assert tv.time_left_s(live) == pytest.approx(200 * 4.8)
    assert tv.time_left_s(view([], None, epochs_num=5)) is None  # nothing to go by yet


def test_time_left_without_wall_time_uses_the_training_seconds():
    live = view([entry(0, None), entry(1, None)], epochs_num=4)
    assert tv.time_left_s(live) == pytest.approx(10.0 * 2)


def test_a_finished_or_stopped_run_has_no_time_left():
    history = [entry(0, 100.0)]
    assert tv.time_left_s(view(history, state=tv.FINISHED)) is None
    assert tv.time_left_s(view(history, state=tv.STOPPED)) is None


def test_images_per_s_is_the_current_epochs_while_it_trains():
    history = [entry(0, 100.0)]
    current = {"epoch": 1, "iterations_done": 5, "seconds": 2.0, "images_per_s": 80.0}
    assert tv.images_per_s(view(history, current)) == 80.0
    assert tv.images_per_s(view(history)) == 32.0


@pytest.mark.parametrize(
    "seconds, text", [(42, "42 s"), (125, "2 min 05 s"), (3 * 3600 + 7 * 60, "3 h 07 min")]
)
def test_format_duration(seconds, text):
    assert tv.format_duration(seconds) == text


# --- damaged and partial records ------------------------------------------------------------


def test_malformed_history_entries_are_named_and_skipped():
    history = [entry(0, 10.0), "text", {"epoch": 1}, {"epoch": -1, "loss": 1.0},
               {"epoch": 2, "loss": float("nan")}, entry(3, 40.0)]  # fmt: skip
    epochs, notes = tv.clean_history(history, "runs/x/progress.json")
    assert epochs["epoch"].tolist() == [0, 3]
    assert len(notes) == 4
    assert all(n.startswith("runs/x/progress.json: history entry") for n in notes)
    assert [n.split()[3] for n in notes] == ["1", "2", "3", "4"]
    _, notes = tv.clean_history({"epoch": 0}, "summary.json")
    assert notes == ["summary.json: its history is not a list; no epochs read from it"]


def test_a_damaged_progress_record_is_named_and_the_summary_still_shows(tmp_path):
    folder = write_run(tmp_path, "run", summary={"history": [entry(0, 10.0), entry(1, 20.0)]})
    (folder / runs.PROGRESS).write_text('{"state": "training", "history": [')  # cut short
    found = tv.read_training(folder, NOW)
    assert found.state == tv.FINISHED
    assert found.epochs["epoch"].tolist() == [0, 1]
    assert len(found.notes) == 1
    assert found.notes[0].startswith(f"{folder / runs.PROGRESS} (not readable JSON")


def test_a_current_epoch_without_a_number_is_named(tmp_path):
    record = progress_record([entry(0, 10.0)], current={"phase": "training", "epoch": "x"})
    folder = write_run(tmp_path, "run", progress=record)
    found = tv.read_training(folder, NOW, host=HOST, alive=lambda pid: True)
    assert found.state == tv.TRAINING and found.current is None
    assert found.notes == [
        f"{folder / runs.PROGRESS}: the current epoch's record has no epoch number; not shown"
    ]


# --- alive or not ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "age, host, alive, extra, state",
    [
        (10, HOST, True, {}, tv.TRAINING),
        (10, HOST, False, {}, tv.STOPPED),  # its process has ended
        (10, "other-host", False, {}, tv.TRAINING),  # another host's pid says nothing here
        (tv.STALE_MIN_S + 1, HOST, True, {}, tv.STOPPED),  # killed long ago, pid reused
        (400, HOST, True, {"longest_gap_s": 200.0}, tv.TRAINING),  # long validations
        (700, HOST, True, {"longest_gap_s": 200.0}, tv.STOPPED),
        (-60, HOST, True, {}, tv.TRAINING),  # a clock ahead of ours
    ],
)
def test_a_training_record_is_alive_only_while_fresh(tmp_path, age, host, alive, extra, state):
    record = progress_record([entry(0, 10.0)], updated=NOW - age, host=host, **extra)
    folder = write_run(tmp_path, "run", progress=record)
    found = tv.read_training(folder, NOW, host=HOST, alive=lambda pid: alive)
    assert found.state == state, found.detail


def test_pid_alive_on_this_process_and_an_ended_one():
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert tv.pid_alive(os.getpid())
    assert not tv.pid_alive(ended.pid)


def test_training_runs_lists_live_runs_first_and_skips_runs_without_a_history(tmp_path):
    write_run(tmp_path, "a_finished", summary={"history": [entry(0, 10.0)]})
    write_run(tmp_path, "b_eval_only", summary={"kind": "eval"})
    write_run(tmp_path, "c_args_only")
    write_run(tmp_path, "d_live", progress=progress_record([], updated=time.time(),
              host=socket.gethostname(), pid=os.getpid()))  # fmt: skip
    table = tv.training_runs(tmp_path, time.time())
    assert table["run"].tolist() == ["d_live", "a_finished"]
    assert table["state"].tolist() == [tv.TRAINING, tv.FINISHED]


# --- the trainer's record --------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_record_writes_within_an_epoch_at_most_every_few_seconds(tmp_path):
    clock = FakeClock()
    args = Namespace(epochs_num=2, iterations_per_epoch=10, batch_size=8)
    history: list[dict] = []
    record = ProgressRecord(tmp_path, args, history, every_s=5.0, clock=clock)
    record.start()
    for done in range(1, 11):  # one iteration a second
        clock.now += 1.0
        record.iteration(0, 0, done, 2.0, float(done))
    assert record.writes == 3  # start, then after 5 and 10 s
    written = runs.read_progress(tmp_path)
    assert written["current"]["iterations_done"] == 10
    assert written["current"]["images_per_s"] == pytest.approx(8.0)
    clock.now += 30.0  # a long validation
    record.phase("validating", 0)
    history.append(entry(0, 41.0))
    record.epoch_done(history)
    record.finish()
    written = runs.read_progress(tmp_path)
    assert written["state"] == "finished" and written["current"] is None
    assert written["history"] == history and written["longest_gap_s"] == 30.0
    assert written["pid"] == os.getpid() and written["epochs_num"] == 2


def test_a_disabled_record_writes_nothing(tmp_path):
    args = Namespace(epochs_num=2, iterations_per_epoch=10, batch_size=8)
    record = ProgressRecord(tmp_path, args, [], enabled=False)
    record.start()
    record.iteration(0, 0, 1, 1.0, 1.0)
    record.finish()
    assert not (tmp_path / runs.PROGRESS).exists()


def test_training_leaves_a_finished_record_with_the_summarys_history(tiny_run):
    _, folder, summary = tiny_run
    written = runs.read_progress(folder)
    assert written["state"] == "finished"
    assert written["history"] == json.loads(json.dumps(summary["history"]))
    found = tv.read_training(folder, time.time())
    assert found.state == tv.FINISHED and tv.epochs_done(found.epochs) == 2


def test_a_folder_with_only_args_and_progress_has_nothing_to_lose(tmp_path):
    folder = write_run(tmp_path, "run", progress=progress_record([]))
    assert runs.run_contents(folder) == []


# --- the page (AppTest) ----------------------------------------------------------------------


def open_page(monkeypatch, workspace: Path, **params) -> AppTest:
    monkeypatch.setenv("COSPLACE_WORKSPACE", str(workspace))
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    for key, value in params.items():
        at.query_params[key] = str(value)
    at.run()
    at.switch_page("views/training.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_page_shows_a_finished_tiny_run_as_its_history(monkeypatch, tiny_run):
    workspace, _, _ = tiny_run
    at = open_page(monkeypatch, workspace, run=TINY_RUN_NAME)
    shown = metrics(at)
    assert shown["State"] == "finished" and shown["Epochs"] == "2 of 2"
    assert shown["Iterations of 6"] == "6"
    assert len(at.get("plotly_chart")) == 3
    assert at.dataframe[0].value["epoch"].tolist() == [0, 1]
    best = max(range(2), key=lambda e: (tiny_run[2]["history"][e]["val"]["R@1"], -e))
    assert f"at epoch {best}." in at.caption[0].value
    assert at.session_state["run"] == TINY_RUN_NAME


def test_page_follows_a_live_record_and_refuses_a_hostile_link(monkeypatch, tmp_path):
    history = [entry(0, 100.0, loss=3.0), entry(1, 220.0, loss=2.0)]
    current = {"phase": "training", "epoch": 2, "iterations_done": 5, "loss": 1.5,
               "seconds": 40.0, "images_per_s": 1.0}  # fmt: skip
    record = progress_record(history, updated=time.time(), current=current,
                             host=socket.gethostname(), pid=os.getpid())  # fmt: skip
    write_run(tmp_path, "live", progress=record)
    write_run(tmp_path, "old", summary={"history": [entry(0, 10.0)]})
    at = open_page(monkeypatch, tmp_path, run="../../etc")
    assert at.session_state["run"] == "live"  # not an option: the run training now
    shown = metrics(at)
    assert shown["State"] == "training" and shown["Epochs"] == "2 of 4"
    assert shown["Iterations of 40"] == "25"
    assert shown["Time left"] == tv.format_duration(110 * 1.5)
    assert "Epoch 2: training, 5 of 10 iterations, loss 1.500" in at.get("progress")[0].proto.text
    at.selectbox(key="run").select("old").run()
    assert metrics(at)["State"] == "finished"
    assert at.query_params["run"] == "old"


def test_page_names_a_damaged_record_and_shows_the_rest(monkeypatch, tmp_path):
    folder = write_run(tmp_path, "run", summary={"history": [entry(0, 10.0), "bad"]})
    at = open_page(monkeypatch, tmp_path)
    assert f"{folder / runs.SUMMARY} (history[1] is not a JSON object" in at.warning[0].value
    assert metrics(at)["Epochs"] == "1 of 4"


def test_page_without_training_runs_says_how_to_start_one(monkeypatch, tmp_path):
    at = open_page(monkeypatch, tmp_path)
    assert "python -m training.train" in at.info[0].value


# --- a training followed from another process ------------------------------------------------


@pytest.mark.slow
def test_the_page_sees_the_epochs_of_a_training_in_another_process(
    monkeypatch, tmp_path, tiny_city
):
    epochs_num = 3
    flags = tiny_training_flags(
        tmp_path, "--dataset_folder", str(tiny_city), "--save_dir", "live",
        epochs_num=epochs_num, iterations_per_epoch=4,
    )  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "train.log").open("w")
    trainer = subprocess.Popen(
        [sys.executable, "-m", "training.train", *flags], cwd=REPO, env=env, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    folder = tmp_path / "runs" / "live"
    seen: list[int] = []
    try:
        for _ in range(3000):  # bounded poll: 0.1 s waits on the trainer, at most 300 s
            if (folder / runs.PROGRESS).is_file():
                seen.append(tv.epochs_done(tv.read_training(folder, time.time()).epochs))
                if seen[-1] >= 1:
                    break
            try:
                trainer.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
        assert trainer.poll() is None, (tmp_path / "train.log").read_text()
        trainer.send_signal(signal.SIGSTOP)  # hold it mid-training while the page reads
        live = tv.read_training(folder, time.time())
        assert live.state == tv.TRAINING and 1 <= tv.epochs_done(live.epochs) < epochs_num
        shown = metrics(open_page(monkeypatch, tmp_path, run="live"))
        assert shown["State"] == "training"
        assert shown["Epochs"] == f"{tv.epochs_done(live.epochs)} of {epochs_num}"
        trainer.send_signal(signal.SIGCONT)
        assert trainer.wait(timeout=300) == 0, (tmp_path / "train.log").read_text()
    finally:
        trainer.send_signal(signal.SIGCONT)
        trainer.kill()
        trainer.wait()
    done = tv.read_training(folder, time.time())
    assert done.state == tv.FINISHED and tv.epochs_done(done.epochs) == epochs_num
    assert seen == sorted(seen)  # the epochs only grow
    assert metrics(open_page(monkeypatch, tmp_path, run="live"))["Epochs"] == "3 of 3"


# --- chromium --------------------------------------------------------------------------------


def test_training_page_in_chromium(tiny_run, tmp_path):
    from test_browser import (
        chromium_page,
        free_port,
        start_app,
        wait_idle,
        wait_until_serving,
    )

    workspace = tmp_path / "workspace"
    shutil.copytree(tiny_run[1], workspace / "runs" / TINY_RUN_NAME)

    def live_record(epochs: int) -> dict:  # a training in this very process, on this host
        history = [entry(e, 100.0 * (e + 1)) for e in range(epochs)]
        return progress_record(history, updated=time.time(), host=socket.gethostname(),
                               pid=os.getpid())  # fmt: skip

    live = write_run(workspace, "live", progress=live_record(1))
    port = free_port()
    process = start_app(workspace, port, tmp_path / "streamlit.log")
    try:
        wait_until_serving(process, port, tmp_path / "streamlit.log")
        with chromium_page(1200) as page:
            page.goto(f"http://127.0.0.1:{port}/training?run={TINY_RUN_NAME}")
            wait_idle(page)
            main = page.get_by_test_id("stMain")
            assert main.get_by_test_id("stException").count() == 0
            text = main.inner_text()
            assert "finished" in text and "2 of 2" in text
            assert page.locator(".js-plotly-plot").count() == 3
            # A run training now: the page rereads its record every few seconds.
            page.goto(f"http://127.0.0.1:{port}/training?run=live")
            wait_idle(page)
            assert "1 of 4" in main.inner_text()
            runs.write_progress(live, live_record(2))
            page.get_by_text("2 of 4").wait_for(timeout=(tv.REFRESH_S + 30) * 1000)
            assert "training" in main.inner_text()
    finally:
        process.terminate()
        process.wait(timeout=30)

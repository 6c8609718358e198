"""The app under load: N sessions at once while a training run writes the catalog.

Each session is a streamlit.testing.v1.AppTest of the app's own pages, in its own thread of
one process, as the Streamlit server runs its sessions (one process, one st.cache_resource:
the model and the index are loaded once for all). No browser and no websocket: the pages'
scripts run as the server runs them. A session opens Retrieve, uploads --photos query photos
of the demo city (other photos for every session and round), moves the k slider and the
threshold; with --results_page it then opens Results and moves its threshold slider (the
page that reads the catalog; each of its reruns recomputes every evaluation's recall, so it
is opt-in: it makes the default run many times longer). Every one of these is one answer (a
rerun of the page), timed from the change to the finished page.

Meanwhile a training run with tiny flags trains, evaluates and records its result in the
catalog the sessions read, again and again, in its own process (--no_training: without it).

The app reads a temporary workspace: a copy of the demo workspace's catalog (the trainings
write it) and links to its run folders and datasets, which nothing writes. Each N runs in a
fresh process after one untimed session (model, index and page caches loaded, as on a server
that has been up for a while) and reports the p50/p95 answer time, that process's peak RSS
(the server's memory), the sessions that saw an exception on a page (must be 0), the harness
errors (must be 0 for the rest to mean anything), the answers that found the catalog busy and
the trainings that recorded a result meanwhile.

A page exception is one the page shows (AppTest's `exception` elements). A harness error is
an exception raised by AppTest itself (a run past --timeout, a widget not found: the session
stops there) or a thread of the process that died; they are printed by kind under the table.
Why the sessions need benchmarks.threaded_apptest to share one process: see that module.

    nice -n 5 python -m benchmarks.app_load [--demo_workspace data] [--sessions 1 4 16]
        [--rounds 1] [--photos 2] [--results_page] [--no_training]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.workspace import DEFAULT_WORKSPACE, WORKSPACE_ENV
from benchmarks.table import peak_rss_mb, print_table
from benchmarks.threaded_apptest import script_thread_crashes, sessions_share_one_runtime
from core.errors import UserError, user_errors
from data_catalog import runs

REPOSITORY = Path(__file__).resolve().parents[1]
VIEWS = REPOSITORY / "app" / "views"
RETRIEVE_PAGE = VIEWS / "retrieve.py"
RESULTS_PAGE = VIEWS / "results.py"
# Part of CatalogBusyError's sentence, which the pages show when the catalog stays locked.
BUSY_MARK = "locked by another process"
K_STEPS = (10, 3, 20, 1)
RETRIEVE_THRESHOLDS = (50, 10, 100, 25)
RESULTS_THRESHOLDS = (10, 50, 5, 100)
# Like the tests' tiny training: one epoch of 2 iterations of 4 crops at 64 px, 32-D.
TRAINING_FLAGS = [
    "--image_size", "64", "--batch_size", "4", "--iterations_per_epoch", "2",
    "--epochs_num", "1", "--groups_num", "1", "--min_images_per_class", "2",
    "--device", "cpu", "--num_workers", "0", "--fc_output_dim", "32",
    "--infer_batch_size", "32", "--resize_test_imgs",
]  # fmt: skip
TRAINING_RUN_PREFIX = "app_load_training"


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--demo_workspace",
        default=DEFAULT_WORKSPACE,
        help="workspace with the demo run and city (only read)",
    )
    parser.add_argument("--run", default="demo", help="the run Retrieve serves (its index built)")
    parser.add_argument(
        "--dataset",
        default="synthetic_demo",
        help="the city under --demo_workspace (trainings, query photos)",
    )
    parser.add_argument(
        "--queries", default="test/queries_v1", help="folder of the city whose images are uploaded"
    )
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="upload, k, threshold, Results threshold: rounds per session",
    )
    parser.add_argument("--photos", type=int, default=2, help="photos per upload")
    parser.add_argument(
        "--results_page", action="store_true", help="sessions also use Results (slow reruns)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds one answer may take")
    parser.add_argument(
        "--no_training", action="store_true", help="no training beside the sessions"
    )
    parser.add_argument(
        "--training_flags",
        nargs=argparse.REMAINDER,
        default=[],
        help="more flags for training.train (last on the line)",
    )
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("sessions", "rounds", "photos"):
        values = args.sessions if name == "sessions" else [getattr(args, name)]
        if min(values) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


# --- the workspace the app reads --------------------------------------------------------------


def prepare_workspace(demo: Path, folder: Path) -> Path:
    """folder/<demo's name>: the demo's catalog copied, everything else linked (never written:
    the trainings write the catalog copy and their own run folders only)."""
    if not (demo / "catalog.duckdb").is_file() or not runs.run_folders(demo):
        raise UserError(f"{demo} holds no catalog.duckdb or no run: run make demo first")
    workspace = folder / demo.name
    (workspace / "runs").mkdir(parents=True)
    shutil.copy2(demo / "catalog.duckdb", workspace / "catalog.duckdb")
    for entry in runs.runs_folder(demo).iterdir():
        (workspace / "runs" / entry.name).symlink_to(entry.resolve())
    for entry in demo.iterdir():
        if entry.name not in ("runs", "cache") and not entry.name.startswith("catalog.duckdb"):
            (workspace / entry.name).symlink_to(entry.resolve())
    return workspace


def query_photos(folder: Path) -> list[Path]:
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if not photos:
        raise UserError(f"no photo in {folder}: give --queries a folder of query images")
    return photos


# --- the training that writes the catalog meanwhile -------------------------------------------


class TrainingLoop:
    """Tiny trainings one after another in their own process, each recording its result in
    the workspace's catalog, until stop()."""

    def __init__(self, workspace: Path, dataset: Path, extra_flags: list[str]) -> None:
        self.workspace, self.dataset, self.extra_flags = workspace, dataset, extra_flags
        self.finished = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._process: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> TrainingLoop:
        self._thread.start()
        return self

    def _loop(self) -> None:
        number = 0
        while not self._stop.is_set():
            command = [
                sys.executable, "-m", "training.train", *TRAINING_FLAGS,
                "--dataset_folder", str(self.dataset), "--workspace", str(self.workspace),
                "--save_dir", f"{TRAINING_RUN_PREFIX}_{number}", *self.extra_flags,
            ]  # fmt: skip
            self._process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            _, errors = self._process.communicate()
            if self._process.returncode == 0:
                self.finished += 1
            elif not self._stop.is_set():
                self.failures.append(errors.strip().splitlines()[-1] if errors.strip() else "?")
                self._stop.wait(5)  # a training that cannot run is not retried in a loop
            number += 1

    def stop(self) -> None:
        self._stop.set()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
        self._thread.join(timeout=60)


@dataclass
class SessionLog:
    seconds: list[float] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)  # shown by a page
    harness_errors: list[str] = field(default_factory=list)  # raised by AppTest: it stopped
    busy_answers: int = 0


def answer(log: SessionLog, app, change) -> None:
    """One rerun of a page after `change` (a widget set, or the page itself), timed."""
    start = time.perf_counter()
    change(app).run()
    log.seconds.append(time.perf_counter() - start)
    log.page_errors.extend(str(e.value) for e in app.exception)
    log.busy_answers += any(BUSY_MARK in str(e.value) for e in app.info)


def run_session(
    number: int, args: argparse.Namespace, photos: list[Path], log: SessionLog, barrier=None
) -> None:
    from streamlit.testing.v1 import AppTest

    chooser = random.Random(number)
    try:
        retrieve = AppTest.from_file(str(RETRIEVE_PAGE), default_timeout=args.timeout)
        # A link naming the run: the trainings' runs (no index) are listed beside it.
        retrieve.query_params["run"] = args.run
        results = AppTest.from_file(str(RESULTS_PAGE), default_timeout=args.timeout)
        if barrier is not None:
            barrier.wait()
        answer(log, retrieve, lambda at: at)
        for step in range(args.rounds):
            chosen = chooser.sample(photos, args.photos)
            uploads = [(p.name, p.read_bytes(), "image/jpeg") for p in chosen]
            changes = [
                (retrieve, lambda at, v=uploads: at.file_uploader(key="uploads").set_value(v)),
                (retrieve, lambda at, v=K_STEPS[step % 4]: at.slider(key="k").set_value(v)),
                (retrieve, lambda at, v=RETRIEVE_THRESHOLDS[step % 4]: at.number_input(
                    key="threshold").set_value(v)),
            ]  # fmt: skip
            if args.results_page:
                if step == 0:
                    changes.append((results, lambda at: at))  # opens Results
                value = RESULTS_THRESHOLDS[step % 4]
                changes.append(
                    (results, lambda at, v=value: at.slider(key="threshold").set_value(v))
                )
            for app, change in changes:
                answer(log, app, change)
    except Exception as error:  # raised by AppTest (a timeout, a missing widget): it stopped
        shown = [str(e.value) for e in (*retrieve.warning, *retrieve.info, *retrieve.error)]
        said = f" (the page said: {' / '.join(shown)})" if shown else ""
        if not retrieve.title:  # the page's first line is its title: the run drew nothing
            said += " (the run drew nothing, not even the page's title)"
        log.harness_errors.append(f"{type(error).__name__}: {error}{said}")


def serve(sessions: int, args: argparse.Namespace, photos: list[Path]) -> dict:
    """Run in the worker process: one untimed session, then `sessions` at once."""
    with sessions_share_one_runtime(), script_thread_crashes() as crashes:
        warm_up = SessionLog()
        run_session(-1, args, photos, warm_up)
        logs = [SessionLog() for _ in range(sessions)]
        barrier = threading.Barrier(sessions)
        threads = [
            threading.Thread(target=run_session, args=(n, args, photos, log, barrier))
            for n, log in enumerate(logs)
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall_s = time.perf_counter() - start
    every = [warm_up, *logs]
    harness_errors = [e for log in every for e in log.harness_errors] + [
        f"a script thread died: {crash}" for crash in crashes
    ]
    return {
        "wall_s": wall_s,
        "seconds": [s for log in logs for s in log.seconds],
        "page_exception_sessions": sum(bool(log.page_errors) for log in every),
        "page_errors": [e for log in every for e in log.page_errors][:5],
        "harness_errors": harness_errors,
        "busy_answers": sum(log.busy_answers for log in logs),
        "peak_rss_mb": peak_rss_mb(),  # the most this process (the "server") ever held
    }


def run_worker(sessions: int, args: argparse.Namespace, workspace: Path) -> dict:
    """serve() in a fresh process (its own peak RSS), run where the workspace's relative
    paths (data/...) resolve, as `make demo-app` runs the app from the repository. This
    checkout comes first on its path: outside the repository `benchmarks` is not importable,
    and the editable install may point at another checkout's app."""
    command = [
        sys.executable, "-m", "benchmarks.app_load", "--worker", str(sessions),
        "--demo_workspace", str(workspace), "--run", args.run, "--dataset", args.dataset,
        "--queries", args.queries, "--rounds", str(args.rounds), "--photos", str(args.photos),
        "--timeout", str(args.timeout), *(["--results_page"] if args.results_page else []),
    ]  # fmt: skip
    path = [str(REPOSITORY), *filter(None, [os.environ.get("PYTHONPATH")])]
    environment = {**os.environ, WORKSPACE_ENV: str(workspace), "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run(
        command, cwd=workspace.parent, env=environment, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"the worker for {sessions} sessions failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def error_kinds(errors: list[str]) -> dict[str, int]:
    """How many of each error, by its first line (a timeout's names its seconds)."""
    return Counter(error.splitlines()[0][:200] if error else "?" for error in errors)


def percentile(seconds: list[float], q: float) -> float:
    return float(np.percentile(seconds, q)) if seconds else float("nan")


def measure(args: argparse.Namespace) -> list[list]:
    """The table's rows, one per N."""
    demo = Path(args.demo_workspace).resolve()
    query_photos(demo / args.dataset / args.queries)  # refused here, before any process
    if not (runs.runs_folder(demo) / args.run / runs.INDEX_DIR).is_dir():
        raise UserError(f"{demo}/runs/{args.run} has no index: build it, or give --run")
    rows = []
    with tempfile.TemporaryDirectory(prefix="app_load_") as folder:
        workspace = prepare_workspace(demo, Path(folder))
        training = None
        if not args.no_training:
            dataset = workspace / args.dataset
            training = TrainingLoop(workspace, dataset, args.training_flags).start()
        try:
            for sessions in args.sessions:
                recorded_before = training.finished if training else 0
                report = run_worker(sessions, args, workspace)
                recorded = (training.finished - recorded_before) if training else "-"
                rows.append([
                    sessions, len(report["seconds"]), percentile(report["seconds"], 50),
                    percentile(report["seconds"], 95), report["wall_s"], report["peak_rss_mb"],
                    report["page_exception_sessions"], len(report["harness_errors"]),
                    report["busy_answers"], recorded,
                ])  # fmt: skip
                for error in report["page_errors"]:
                    print(f"  {sessions} sessions, a page exception: {error[:300]}")
                for kind, count in error_kinds(report["harness_errors"]).items():
                    print(f"  {sessions} sessions, harness error x{count}: {kind}")
        finally:
            if training is not None:
                training.stop()
                for failure in training.failures[:3]:
                    print(f"  a training failed: {failure}")
    return rows


@user_errors
def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    if args.worker is not None:
        photos = query_photos(Path(args.demo_workspace) / args.dataset / args.queries)
        print(json.dumps(serve(args.worker, args, photos)))
        return
    rows = measure(args)
    print(
        f"App under load: {args.rounds} round(s) per session of {args.photos} uploaded photos, "
        "k, threshold"
        + (", the Results threshold" if args.results_page else "")
        + "; "
        + ("no training beside" if args.no_training else "tiny trainings writing the catalog")
    )
    print_table(
        ["sessions", "answers", "p50 s", "p95 s", "wall s", "peak RSS MB",
         "sessions with a page exception", "harness errors", "answers with catalog busy",
         "trainings recorded"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()

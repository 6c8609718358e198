"""The running app in a real browser: Debian's chromium, headless, driven by Playwright.

Opens every page, uploads a query on Retrieve, checks that results appear and saves a
screenshot of each page. It waits on the app's own state (script not running, no skeleton
placeholders), never on sleeps.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from app_fixtures import EVALUATED_QUERIES, evaluated_workspace_once, workspace_once

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = ["map", "retrieve", "dataset", "results", "training", "space", "failures"]
NAVIGATION = [
    *("Map", "Retrieve", "Dataset", "Results", "Training", "Descriptor", "space", "Failures")
]
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"
LOAD_TIMEOUT_MS = 120_000


def chromium_path() -> str | None:
    candidates = ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    return None


@contextlib.contextmanager
def chromium_page(height: int = 1000):
    """A page of headless chromium (skips the test without chromium) that fails the test on
    any JavaScript error the app raised while it was open."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium not found (make test installs it: apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page
            assert not errors, errors
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(workspace: Path, port: int, log: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"),
        "--server.port", str(port), "--server.address", "127.0.0.1",
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--", "--workspace", str(workspace),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env
    )


def wait_until_serving(process: subprocess.Popen, port: int, log: Path) -> None:
    """Block on the health endpoint's socket (a connect either succeeds or is refused)."""
    import urllib.request

    for _ in range(600):
        if process.poll() is not None:
            pytest.fail(f"streamlit exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1):
                return
        except OSError:
            try:
                process.wait(timeout=0.2)  # a bounded wait on the process, not a sleep
            except subprocess.TimeoutExpired:
                pass
    pytest.fail(f"streamlit did not answer on port {port}:\n{log.read_text()}")


def wait_idle(page) -> None:
    """The script has finished its run, no element is still a loading skeleton, and every
    map canvas has been laid out and painted (two animation frames after that)."""
    page.wait_for_selector(IDLE, timeout=LOAD_TIMEOUT_MS)
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=stSkeleton]').length === 0",
        timeout=LOAD_TIMEOUT_MS,
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stDeckGlJsonChart]')]"
        ".every(chart => { const c = chart.querySelector('canvas'); return c && c.width > 0; })",
        timeout=LOAD_TIMEOUT_MS,
    )
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def serve(tmp_path_factory, workspace: Path):
    port = free_port()
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    process = start_app(workspace, port, log)
    try:
        wait_until_serving(process, port, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def running_app(tmp_path_factory, tiny_city):
    yield from serve(tmp_path_factory, workspace_once(tmp_path_factory, tiny_city))


@pytest.fixture(scope="module")
def app_with_evaluations(tmp_path_factory, tiny_city, tiny_run):
    model = tiny_run[1] / "best_model.pth"
    workspace = evaluated_workspace_once(tmp_path_factory, tiny_city, model)
    # Without the repo's recorded claims the Results page (visited once) opens quickly.
    before = os.environ.get("COSPLACE_RECORDED_CLAIMS")
    os.environ["COSPLACE_RECORDED_CLAIMS"] = str(workspace / "no_records")
    try:
        for url in serve(tmp_path_factory, workspace):
            yield url, workspace
    finally:
        os.environ.pop("COSPLACE_RECORDED_CLAIMS")
        if before is not None:
            os.environ["COSPLACE_RECORDED_CLAIMS"] = before


def test_every_page_in_chromium(running_app, tmp_path, tiny_city):
    shots = Path(os.environ.get("APP_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    query = sorted((tiny_city / "test" / "queries_v1").iterdir())[0]
    with chromium_page(1000) as page:
        for name in PAGES:
            # Map is the default page: its address is the app's root.
            # Retrieve opens with the heat maps of its first match (issue 18, section 3) and
            # its map over the streets of the dataset's own images (section 5).
            path = {"map": "?min_images=1", "retrieve": "retrieve?heat=1&base=always"}.get(
                name, name
            )
            url = f"{running_app}/{path}"
            page.goto(url)
            wait_idle(page)
            main = page.get_by_test_id("stMain")
            assert page.get_by_text("Page not found").count() == 0, url
            navigation = page.get_by_test_id("stSidebarNav").inner_text()
            assert navigation.split() == NAVIGATION, navigation
            assert main.get_by_test_id("stException").count() == 0, name
            if name == "map":
                page.get_by_test_id("stDeckGlJsonChart").first.wait_for()
                assert "Classes kept" in main.inner_text()
            if name == "dataset":
                assert page.locator(".js-plotly-plot").count() >= 3
            if name == "retrieve":
                page.locator("input[type=file]").set_input_files(str(query))
                page.get_by_text("Top-1 position error").wait_for(timeout=LOAD_TIMEOUT_MS)
                wait_idle(page)
                text = main.inner_text()
                assert "Run tiny" in text and "sim " in text
                assert page.get_by_test_id("stImage").count() >= 2  # query + results
                assert "What match #1 rests on" in text
                assert "Faint grey dots: the dataset's own images" in text
            page.screenshot(path=str(shots / f"app_{name}.png"), full_page=True)
            assert (shots / f"app_{name}.png").stat().st_size > 10_000


def test_descriptor_space_selects_with_a_box_in_chromium(running_app, tmp_path):
    """The space page draws the index's sample; a box dragged over the plot selects points,
    and their images and map appear (plotly's selection event reaches the app)."""

    with chromium_page(1000) as page:
        page.goto(f"{running_app}/space?points=1000")
        wait_idle(page)
        main = page.get_by_test_id("stMain")
        assert main.get_by_test_id("stException").count() == 0
        assert "database descriptors of run tiny" in main.inner_text()
        area = page.locator(".js-plotly-plot .nsewdrag").first
        area.wait_for()
        box = area.bounding_box()
        page.mouse.move(box["x"] + 2, box["y"] + 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] - 2, steps=8)
        page.mouse.up()
        selected = page.get_by_text(re.compile(r"^[0-9,]+ selected$"))
        selected.wait_for(timeout=LOAD_TIMEOUT_MS)
        wait_idle(page)
        assert page.get_by_test_id("stImage").count() >= 1
        assert page.get_by_test_id("stDeckGlJsonChart").count() == 1
        page.screenshot(path=str(tmp_path / "app_space.png"), full_page=True)


def test_failure_map_in_chromium(app_with_evaluations, tmp_path):
    """The Failures page of a trained, evaluated run: its map is drawn, the threshold goes
    with the visitor to the Results page, and a query's link opens its retrieval."""
    import urllib.parse

    from app import failure_map as fm
    from app import results_view as rv

    url, workspace = app_with_evaluations
    evaluation = workspace / "runs" / "trained" / f"eval_test_{EVALUATED_QUERIES}"
    frame = fm.query_outcomes(rv.load_predictions(evaluation / "predictions.csv"), 25).frame
    query = frame.sort_values("top1_error_m").iloc[-1]["query"]
    shots = Path(os.environ.get("APP_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with chromium_page(1100) as page:
        page.goto(f"{url}/failures?run=trained&threshold=60&base=always")
        wait_idle(page)
        main = page.get_by_test_id("stMain")
        assert main.get_by_test_id("stException").count() == 0
        assert page.get_by_test_id("stDeckGlJsonChart").count() == 1
        text = main.inner_text()
        assert "Queries on the map" in text and "Recall@1 at 60 m" in text
        page.screenshot(path=str(shots / "app_failures.png"), full_page=True)
        assert (shots / "app_failures.png").stat().st_size > 10_000
        # The Results page, reached from the sidebar, keeps the threshold.
        page.get_by_test_id("stSidebarNav").get_by_text("Results").click()
        page.wait_for_url("**/results**")
        wait_idle(page)
        assert page.get_by_role("slider").first.get_attribute("aria-valuetext") == "60"
        # A query's link (what a click on it in the map shows) opens its retrieval.
        params = urllib.parse.urlencode({"run": "trained", "failure": query})
        page.goto(f"{url}/failures?{params}")
        wait_idle(page)
        page.get_by_text("Open its retrieval by trained").click()
        page.wait_for_url("**/retrieve?**")
        page.get_by_text("Top-1 position error").wait_for(timeout=LOAD_TIMEOUT_MS)
        wait_idle(page)
        assert "Run trained" in page.get_by_test_id("stMain").inner_text()
        assert urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)["query"] == [query]

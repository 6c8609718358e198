"""Screenshots of each page of the app on a workspace, for the README (docs/images/app_*.png).

    .venv/bin/python tests/app_screenshots.py --workspace data --run demo --out docs/images
        [--training_run demo_train] [--pages training ...]

Starts the app on a free port, opens each page in headless chromium (as tests/test_browser.py
does, waiting on the app's own state), shows a group's Fig. 4 and a cell's images on the map,
a test-set query on Retrieve (and what its first match rests on), a box selected in
the descriptor space, a run's failure map, and saves one full-page PNG per page.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_browser import (  # noqa: E402
    CHROMIUM_ARGS,
    chromium_path,
    free_port,
    start_app,
    wait_idle,
    wait_until_serving,
)


def page_urls(
    base: str,
    run: str,
    query: str | None,
    cell: str | None,
    group: int,
    training_run: str,
    failures: str = "",
) -> dict:
    map_params = {"group": group} | ({"cell": cell} if cell else {})
    retrieve = {"run": run, "source": "Test-set query"} | ({"query": query} if query else {})
    failure_params = {"run": run} | dict(urllib.parse.parse_qsl(failures))
    return {
        "map": f"{base}/?{urllib.parse.urlencode(map_params)}",
        "retrieve": f"{base}/retrieve?{urllib.parse.urlencode(retrieve)}",
        "dataset": f"{base}/dataset",
        "results": f"{base}/results",
        "training": f"{base}/training?{urllib.parse.urlencode({'run': training_run})}",
        "space": f"{base}/space?{urllib.parse.urlencode({'run': run, 'colour': 'position'})}",
        "match_heatmap": f"{base}/retrieve?{urllib.parse.urlencode(retrieve | {'heat': 1})}",
        "failures": f"{base}/failures?{urllib.parse.urlencode(failure_params)}",
    }


def select_middle_of_plot(page) -> None:
    """Drag a box over the middle of the descriptor-space plot and wait for its images."""
    box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    x, y, width, height = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x + 0.4 * width, y + 0.35 * height)
    page.mouse.down()
    page.mouse.move(x + 0.6 * width, y + 0.6 * height, steps=8)
    page.mouse.up()
    page.get_by_text(re.compile(r"^[0-9,]+ selected$")).wait_for(timeout=120_000)
    wait_idle(page)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="data")
    parser.add_argument("--run", default="demo")
    parser.add_argument("--query", default=None, help="test query, e.g. queries_v1/@...jpg")
    parser.add_argument("--cell", default=None, help="map cell to open, e.g. 54907_418008")
    parser.add_argument("--group", type=int, default=0)
    parser.add_argument("--training_run", default="demo_train", help="run on the Training page")
    parser.add_argument("--pages", nargs="+", default=None, help="only these pages, e.g. training")
    parser.add_argument(
        "--failures", default="", help="Failures page state, e.g. run_b=x&failure=q"
    )
    parser.add_argument("--out", default="docs/images")
    args = parser.parse_args()
    executable = chromium_path()
    if executable is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = Path(tempfile.mkdtemp()) / "streamlit.log"
    process = start_app(Path(args.workspace).resolve(), port, log)
    try:
        wait_until_serving(process, port, log)
        base = f"http://127.0.0.1:{port}"
        urls = page_urls(
            base, args.run, args.query, args.cell, args.group, args.training_run, args.failures
        )
        urls = {name: url for name, url in urls.items() if name in (args.pages or urls)}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 2300})
            for name, url in urls.items():
                if args.pages and name not in args.pages:
                    continue
                page.goto(url)
                wait_idle(page)
                if name == "space":
                    page.get_by_role("button", name=re.compile("^Extract")).click()
                    page.get_by_text(re.compile("^Queries of eval_")).wait_for(timeout=120_000)
                    wait_idle(page)
                    select_middle_of_plot(page)
                page.screenshot(path=str(out / f"app_{name}.png"), full_page=True)
                print(f"{out / f'app_{name}.png'}  <- {url}")
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()

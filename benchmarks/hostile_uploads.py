"""What a hostile upload costs the Retrieve page: seconds and peak memory, one process a case.

Each case uploads its file(s) to the Retrieve page of a workspace's default run through
streamlit.testing's AppTest (the page exactly as served, without a browser), in a process of
its own, and reports: what the page answered (or the exception that stopped it), the seconds
of the run that answered the upload, the seconds of one more run after moving the k slider,
the process's peak resident memory, and that peak above the page opened without an upload.
The script uses only the page's widget keys, so it measures an older checkout as well:

    python -m benchmarks.hostile_uploads --workspace data [--keep DIR]
    PYTHONPATH=OLD_CHECKOUT python -m benchmarks.hostile_uploads ...   # the same, older code

The files are generated (and kept in --keep, reused): a photo for reference, a JPEG whose EXIF
GPS latitude reference is a number, an SF-XL name at 85 N (outside UTM), a 70,000 x 8 line,
a 65,500 x 45 PNG, a 65,500 x 512 strip, a 7,700 x 7,700 16-bit grey PNG (59 MP, under the
60 MP cap) and a batch of 40 photos.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.table import peak_rss_mb, print_table, work_folder

POLAR_NAME = "@0549697.84@4180105.34@11@X@085.00000@-122.43573@pano@@@@@@201610@x@.jpg"
BATCH = 40


def _encoded(pixels: np.ndarray, kind: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, kind, **options)
    return buffer.getvalue()


def _photo(seed: int) -> bytes:
    """A noisy 640 x 480 JPEG (noise, so that it costs what a real photo costs to decode)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return _encoded(pixels, "JPEG", quality=85)


def _tiled(height: int, width: int, seed: int) -> np.ndarray:
    """Grey texture repeated every 64 px along a row: compresses to little, decodes to much."""
    tile = np.random.default_rng(seed).integers(0, 256, (height, 64), dtype=np.uint8)
    return np.tile(tile, (1, width // 64 + 1))[:, :width]


def build_cases(folder: Path) -> dict[str, list[Path]]:
    """Each case's files, written once into folder."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from app_fixtures import jpeg_with_numeric_gps_reference

    makers = {
        "photo 640 x 480 (reference)": {"photo.jpg": lambda: _photo(0)},
        "EXIF GPS reference a number": {"gps_ref_78.jpg": jpeg_with_numeric_gps_reference},
        "SF-XL name at 85 N (outside UTM)": {POLAR_NAME: lambda: _photo(1)},
        "70,000 x 8 PNG": {"line.png": lambda: _encoded(_tiled(8, 70_000, 2))},
        "65,500 x 45 PNG": {"strip45.png": lambda: _encoded(_tiled(45, 65_500, 3))},
        "65,500 x 512 PNG": {"strip512.png": lambda: _encoded(_tiled(512, 65_500, 4))},
        "7,700 x 7,700 16-bit grey PNG": {
            "grey16.png": lambda: _encoded(
                (np.add.outer(np.arange(7700), np.arange(7700)) * 4).astype(np.uint16)
            )
        },
        f"{BATCH} photos in one request": {
            f"batch_{i:02d}.jpg": (lambda i=i: _photo(100 + i)) for i in range(BATCH)
        },
    }
    cases = {}
    for case, files in makers.items():
        paths = []
        for name, make in files.items():
            path = folder / name
            if not path.exists():
                path.write_bytes(make())
            paths.append(path)
        cases[case] = paths
    return cases


def measure(paths: list[Path], workspace: str) -> dict:
    """In this process: open the page, upload, time the answer and a k-slider rerun."""
    from streamlit.testing.v1 import AppTest

    os.environ["COSPLACE_WORKSPACE"] = workspace
    main = str(Path(__import__("app").__file__).resolve().parent / "main.py")
    at = AppTest.from_file(main, default_timeout=900)
    at.switch_page("views/retrieve.py").run()  # straight to Retrieve: no other page's memory
    base_mb = peak_rss_mb()
    uploads = [(p.name, p.read_bytes(), "image/png") for p in paths]
    start = time.perf_counter()
    at.file_uploader(key="uploads").set_value(uploads).run()
    seconds = time.perf_counter() - start
    stopped = [e.value for e in at.exception]
    rerun = float("nan")
    if not stopped:
        start = time.perf_counter()
        at.slider(key="k").set_value(3).run()
        rerun = time.perf_counter() - start
        stopped = [e.value for e in at.exception]
    answered = sum(str(m.value).startswith("**Run") for m in at.markdown)
    if stopped:
        outcome = f"page stopped: {' '.join(str(stopped[0]).split())[:60]}"
    else:
        outcome = f"{answered} answered, {len(at.error)} refused"
    return {
        "outcome": outcome,
        "seconds": seconds,
        "rerun": rerun,
        "peak_mb": peak_rss_mb(),
        "extra_mb": peak_rss_mb() - base_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="data", help="workspace with a served run")
    parser.add_argument("--keep", default=None, help="folder for the generated files (reused)")
    parser.add_argument("--only", default=None, help="run the cases whose name contains this")
    parser.add_argument("--case_files", nargs="*", help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.case_files:
        print(json.dumps(measure([Path(p) for p in args.case_files], args.workspace)))
        return
    rows = []
    with work_folder(args.keep, "hostile_uploads_") as folder:
        for case, paths in build_cases(folder).items():
            if args.only and args.only not in case:
                continue
            command = [sys.executable, "-m", "benchmarks.hostile_uploads"]
            command += ["--workspace", args.workspace, "--case_files", *map(str, paths)]
            done = subprocess.run(command, capture_output=True, text=True)
            lines = done.stdout.strip().splitlines()
            if done.returncode != 0 or not lines:
                nan = dict.fromkeys(("seconds", "rerun", "peak_mb", "extra_mb"), float("nan"))
                result = {"outcome": f"process failed ({done.returncode})", **nan}
            else:
                result = json.loads(lines[-1])
            kb = sum(p.stat().st_size for p in paths) / 1024
            seconds = [f"{result[key]:.2f}" for key in ("seconds", "rerun")]
            mb = [f"{result[key]:,.0f}" for key in ("peak_mb", "extra_mb")]
            rows.append([case, f"{kb:,.0f}", result["outcome"], *seconds, *mb])
            print(f"{case}: {result}", file=sys.stderr, flush=True)
    print_table(
        ["upload", "KB", "page", "answer s", "rerun s (k moved)", "peak MB", "MB over page"],
        rows,
    )


if __name__ == "__main__":
    main()

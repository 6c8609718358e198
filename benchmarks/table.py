"""What the benchmark scripts share: their plain-text tables (pasted into the README as they
print), timing, peak memory and work folders."""

from __future__ import annotations

import contextlib
import resource
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\n".join(lines))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def best_time(function: Callable[[], object], repeats: int = 3) -> float:
    """Fastest of several runs: the least disturbed by other work on a shared machine."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def timed(function: Callable[[], object]) -> tuple[object, float]:
    """The function's value and the seconds one call took."""
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def single_query_ms(
    search_one: Callable[[np.ndarray], object], queries: np.ndarray
) -> tuple[float, float]:
    """Median (wall, CPU) milliseconds of search_one on one query at a time.

    The CPU time of this process is what one idle core would take when faiss runs one
    thread (OMP_NUM_THREADS=1); on a shared machine the wall time also counts waiting."""
    wall, cpu = [], []
    for row in range(len(queries)):
        start, cpu_start = time.perf_counter(), time.process_time()
        search_one(queries[row : row + 1])
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return 1000 * float(np.median(wall)), 1000 * float(np.median(cpu))


def peak_rss_mb() -> float:
    """The most memory this process has held, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def work_folder(keep: str | Path | None, prefix: str) -> Iterator[Path]:
    """`keep` (made if missing, left there), else a temporary folder removed afterwards."""
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep)
        return
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as folder:
        yield Path(folder)

"""Plain-text tables for the benchmark scripts (pasted into the README as they print)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


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

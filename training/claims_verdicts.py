"""Verdicts of the paper's claims over seeds: mean and spread per point, decided by margin.

A difference between two points counts only when it is larger than the seeds' spread: the
gap between their means must exceed the sum of their standard deviations (sample std over
seeds). Smaller gaps leave the claim undecided, with the numbers; one seed decides nothing.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from data_catalog.runs import VERDICTS

# The recalls each point is evaluated on: where the model learns at a small budget (val,
# test/queries_v2, another year) and the hard photos of other domains (test/queries_v1).
EVAL_SETS = (("val", "queries"), ("test", "queries_v2"), ("test", "queries_v1"))
# Each claim is decided on the split the paper used for it: Table 5 on val, Table 6 and
# Fig. 5 on test sets (queries_v2: the test set where these small models learn).
HEADLINE = {"groups": "val_queries_r1", "dimension": "test_queries_v2_r1"}
HEADLINE["train_size"] = "test_queries_v2_r1"


def metric_name(subset: str, queries: str, n: int = 1) -> str:
    return f"{subset}_{queries}_r{n}"


METRICS = tuple(metric_name(s, q) for s, q in EVAL_SETS)


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float
    seeds: int

    def as_dict(self) -> dict:
        return {"mean": round(self.mean, 2), "std": round(self.std, 2), "seeds": self.seeds}


def stat(rows: list[dict], metric: str) -> Stat | None:
    values = [float(r[metric]) for r in rows if r.get(metric) is not None]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return Stat(statistics.fmean(values), std, len(values))


def compare(a: Stat | None, b: Stat | None) -> int | None:
    """+1 if a is above b by more than their spread, -1 if below, 0 if within; None when a
    point is missing or has fewer than two seeds (no spread to judge by)."""
    if a is None or b is None or min(a.seeds, b.seeds) < 2:
        return None
    margin = a.std + b.std
    if a.mean - b.mean > margin:
        return 1
    if b.mean - a.mean > margin:
        return -1
    return 0


def point_stats(rows: list[dict]) -> dict:
    return {m: s.as_dict() for m in METRICS if (s := stat(rows, m)) is not None}


def groups_verdict(points: dict[str, list[dict]], cosplace: str) -> dict:
    """Table 5: CosPlace's groups above every naive partition, per metric."""
    others = [name for name in points if name != cosplace]

    def holds(metric: str) -> bool | None:
        best = stat(points.get(cosplace, []), metric)
        outcomes = [compare(best, stat(points[o], metric)) for o in others]
        if not others or None in outcomes:
            return None
        if -1 in outcomes:
            return False
        return True if all(o == 1 for o in outcomes) else None

    rows = [{"point": name, **point_stats(rs)} for name, rs in points.items()]
    return verdict("groups", rows, {m: holds(m) for m in METRICS})


def series_verdict(name: str, series: list[tuple[float, list[dict]]], strict: bool) -> dict:
    """Recall along a series (x ascending). strict: every step rises (Table 6); otherwise no
    step falls and the last point is above the first (Fig. 5: rises, then saturates)."""
    series = sorted(series, key=lambda item: item[0])

    def holds(metric: str) -> bool | None:
        stats = [stat(rows, metric) for _, rows in series]
        steps = [compare(b, a) for a, b in zip(stats, stats[1:], strict=False)]
        if len(stats) < 2 or None in steps:
            return None
        if -1 in steps:
            return False
        if strict:
            return True if all(s == 1 for s in steps) else None
        return True if compare(stats[-1], stats[0]) == 1 else None

    rows = [{"x": x, **point_stats(rows)} for x, rows in series]
    return verdict(name, rows, {m: holds(m) for m in METRICS})


def verdict(name: str, rows: list[dict], by_metric: dict[str, bool | None]) -> dict:
    metric = HEADLINE[name]
    holds = by_metric[metric]
    return {
        "metric": f"{metric} (mean ± std over seeds; decided when the gap exceeds both stds)",
        "rows": rows,
        "holds": holds,
        "verdict": VERDICTS[holds],
        "by_metric": {m: VERDICTS[h] for m, h in by_metric.items()},
    }


def verdict_memory(measured: list[dict], train_images: int | None, dim: int) -> dict:
    by = {m["config"]: m for m in measured}
    cosplace, triplet = by.get("cosplace"), by.get("triplet_equal_queries")
    holds = None
    if cosplace and triplet:
        holds = bool(cosplace["step_rss_mib"] < triplet["step_rss_mib"])
    cache_mib = None if train_images is None else train_images * dim * 4 / 2**20
    return {
        "metric": "peak RSS rise of a training step, MiB",
        "rows": measured,
        "triplet_cache_mib": cache_mib,
        "holds": holds,
        "verdict": VERDICTS[holds],
    }


def by_base(rows: dict[str, dict]) -> dict[str, list[dict]]:
    """A grid's rows gathered by point, across seeds."""
    out: dict[str, list[dict]] = {}
    for row in rows.values():
        out.setdefault(row.get("base_point", row["point"]), []).append(row)
    return out

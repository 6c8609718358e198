"""Positives within a radius and recall@N, as the reference implementation defines them.

Recall@N is the percentage of queries with at least one positive (a database image within
`radius` metres, Euclidean in UTM) among their first N predictions. Queries with no positive
in the database count as misses, as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

RECALL_VALUES = (1, 5, 10, 20)
DEFAULT_POSITIVE_DIST_THRESHOLD = 25.0


def find_positives(
    database_utm: np.ndarray,
    queries_utm: np.ndarray,
    radius: float = DEFAULT_POSITIVE_DIST_THRESHOLD,
) -> list[np.ndarray]:
    """For each query, the sorted indices of database images within `radius` metres."""
    database_utm = np.asarray(database_utm, dtype=np.float64).reshape(-1, 2)
    queries_utm = np.asarray(queries_utm, dtype=np.float64).reshape(-1, 2)
    tree = cKDTree(database_utm)
    neighbours = tree.query_ball_point(queries_utm, r=radius)
    return [np.array(sorted(found), dtype=np.int64) for found in neighbours]


def recall_at_n(
    predictions: np.ndarray,
    positives: Sequence[np.ndarray],
    recall_values: Sequence[int] = RECALL_VALUES,
) -> dict[int, float]:
    """{N: percentage of queries with a positive among their first N predictions}."""
    predictions = np.asarray(predictions)
    if len(predictions) != len(positives):
        raise ValueError(f"{len(predictions)} prediction rows for {len(positives)} queries")
    if len(predictions) == 0:
        raise ValueError("recall needs at least one query")
    # Rank of the first correct prediction per query (inf when there is none in the list).
    first_hit = np.full(len(predictions), np.inf)
    for query, (row, query_positives) in enumerate(zip(predictions, positives, strict=True)):
        hits = np.flatnonzero(np.isin(row, query_positives))
        if len(hits):
            first_hit[query] = hits[0]
    return recall_from_first_hits(first_hit, recall_values)


def is_positive(distance_m, radius: float = DEFAULT_POSITIVE_DIST_THRESHOLD) -> np.ndarray:
    """Whether a prediction this many metres from its query is a positive (NaN: unknown, a
    miss); the same rule as find_positives, whose ball includes its edge."""
    return np.asarray(distance_m, dtype=np.float64) <= radius


def recall_from_first_hits(
    first_hit: np.ndarray, recall_values: Sequence[int] = RECALL_VALUES
) -> dict[int, float]:
    """{N: percentage of queries whose first positive has rank < N} (inf: no positive)."""
    first_hit = np.asarray(first_hit, dtype=np.float64)
    return {n: float(np.mean(first_hit < n) * 100.0) for n in recall_values}


def format_recalls(recalls: dict[int, float]) -> str:
    """The reference's print format: `R@1: 67.7, R@5: 77.8, R@10: 81.8, R@20: 85.0`."""
    return ", ".join(f"R@{n}: {value:.1f}" for n, value in recalls.items())

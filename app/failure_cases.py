"""The Results page's failure browser, without Streamlit: the queries whose top-1 is wrong
(worst first, with the positives they missed) and the pairs that look like label errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from app.results_view import utm_of_names
from core.recall import find_positives
from data_catalog.name_source import walk_images


def database_utm(test_set: str | Path) -> tuple[list[str], np.ndarray]:
    """Relative paths (database/...) and UTM of a test set's database images."""
    folder = Path(test_set) / "database"
    if not folder.is_dir():
        return [], np.zeros((0, 2))
    paths = [f"database/{p}" for p in walk_images(folder)[0]]
    utm = utm_of_names(pd.Series(paths, dtype=object))
    keep = ~np.isnan(utm).any(axis=1)
    return [p for p, k in zip(paths, keep, strict=True) if k], utm[keep]


def failures(
    predictions: pd.DataFrame,
    threshold_m: float,
    database: tuple[list[str], np.ndarray] | None = None,
    top: int = 5,
) -> pd.DataFrame:
    """Queries whose top-1 is farther than threshold_m, worst top-1 error first.

    Each row: the query, its top-1 error in metres, its first `top` predictions with their
    errors, and the positives it missed (database images within threshold_m, from `database`).
    """
    first = predictions[predictions["rank"] == 0]
    wrong = first[~(first["geo_m"] <= threshold_m)].sort_values(
        "geo_m", ascending=False, na_position="first"
    )
    missed_of: list[list[str]] = [[] for _ in range(len(wrong))]
    if database is not None and len(database[0]):
        query_utm = utm_of_names(wrong["query"])
        placed = np.flatnonzero(~np.isnan(query_utm).any(axis=1))
        found = find_positives(database[1], query_utm[placed], threshold_m)
        for row, near in zip(placed, found, strict=True):
            missed_of[row] = sorted(database[0][i] for i in near)
    rows = []
    for query, top1_error, missed in zip(wrong["query"], wrong["geo_m"], missed_of, strict=True):
        mine = predictions[predictions["query"] == query].head(top)
        rows.append(
            {
                "query": query,
                "top1_error_m": top1_error,
                "predictions": mine["prediction"].tolist(),
                "prediction_errors_m": [round(float(v), 1) for v in mine["geo_m"]],
                "missed_positives": missed,
                "num_missed_positives": len(missed),
            }
        )
    columns = ["query", "top1_error_m", "predictions", "prediction_errors_m"]
    return pd.DataFrame(rows, columns=[*columns, "missed_positives", "num_missed_positives"])


def possible_label_errors(
    predictions: pd.DataFrame, threshold_m: float, limit: int = 50
) -> pd.DataFrame:
    """Pairs the model finds as similar as its typical correct match, yet farther than the
    threshold: a wrong position label (or a look-alike place) worth a look.

    "As similar": at least the median similarity of the correct top-1 matches (of all
    top-1 matches when none is correct). Most similar first.
    """
    first = predictions[predictions["rank"] == 0]
    correct = first[first["geo_m"] <= threshold_m]["similarity"]
    bar = float((correct if len(correct) else first["similarity"]).median())
    far = predictions[(predictions["geo_m"] > threshold_m) & (predictions["similarity"] >= bar)]
    out = far.sort_values("similarity", ascending=False).head(limit)
    out = out[["query", "prediction", "rank", "similarity", "geo_m"]].reset_index(drop=True)
    out.attrs["similarity_bar"] = bar
    return out

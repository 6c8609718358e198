"""The paper's reference numbers (Tables 3 to 10) as data: data_catalog/paper_results.csv.

One row per value, transcribed from the paper text, with the settings that make a number
comparable: test set and query folder, distance threshold, test-image resizing, backbone,
descriptor dimension, train set (and train size for Table 6), M/alpha/N/L (Table 5), pooling
(Table 7), and whether the value is a mean over seeds (True, False, or empty where the paper
does not say). Tables 7-10 are the appendix's (supplementary Tables 1-4).

Conventions of the file:
- threshold_m is 25 everywhere: Table 3's caption states it, and it is the paper's protocol.
- test_resize is "native": the paper does not resize test images (the reference's default).
- Table 3's SPE-VLAD row is left out: in the text it has 18 cells for 12 columns, so which
  dataset its two numbers belong to cannot be read.
- `note` says where a setting is not in the table's caption but taken from the paper's text.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PAPER_RESULTS = Path(__file__).with_name("paper_results.csv")
COLUMNS = (
    "table", "source", "method", "backbone", "descriptor_dim", "train_set", "train_images",
    "test_set", "queries", "threshold_m", "test_resize", "metric", "value", "std",
    "mean_over_seeds", "seeds", "M", "alpha", "N", "L", "pooling", "note",
)  # fmt: skip
METRICS = ("R@1", "R@5", "R@10", "R@20")
# The SF-XL test sets of the paper, by the query folder of an SF-XL layout.
SFXL_QUERIES = {
    "queries_v1": "SF-XL test v1",
    "queries_v2": "SF-XL test v2",
    "queries": "SF-XL val",
}
INTEGER_COLUMNS = ("table", "descriptor_dim", "train_images", "seeds", "M", "alpha", "N", "L")
FLOAT_COLUMNS = ("value", "std", "threshold_m")


def load_paper_results(path: str | Path = PAPER_RESULTS) -> pd.DataFrame:
    """Every transcribed value, typed: integers as nullable Int64, mean_over_seeds as boolean."""
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    frame = frame.astype(
        {**dict.fromkeys(INTEGER_COLUMNS, "Int64"), **dict.fromkeys(FLOAT_COLUMNS, float)}
    )
    frame["mean_over_seeds"] = (
        frame["mean_over_seeds"].map({True: True, False: False}).astype("boolean")
    )
    text = [c for c in COLUMNS if c not in (*INTEGER_COLUMNS, *FLOAT_COLUMNS, "mean_over_seeds")]
    frame[text] = frame[text].fillna("")
    return frame[list(COLUMNS)]


def paper_table(number: int, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The long rows of one table (3 to 10)."""
    frame = load_paper_results() if frame is None else frame
    rows = frame[frame["table"] == number]
    if rows.empty:
        raise ValueError(f"no paper Table {number}; the file holds Tables 3 to 10")
    return rows.reset_index(drop=True)


def sfxl_query_set(test_set: str | Path, queries: str) -> str | None:
    """The SF-XL query set (SFXL_QUERIES) that an evaluation of `queries` in the folder
    `test_set` stands for. None when there is none, or when the folder's name says another
    split: the synthetic city's val/queries_v1 is not SF-XL test v1."""
    name = SFXL_QUERIES.get(queries)
    split = Path(str(test_set)).name
    if name is None or (split in ("test", "val") and not name.startswith(f"SF-XL {split}")):
        return None
    return name


def sfxl_reference(queries: str, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's SF-XL results for a query folder (queries_v1, queries_v2 or val queries)."""
    frame = load_paper_results() if frame is None else frame
    return frame[frame["test_set"] == SFXL_QUERIES.get(queries)].reset_index(drop=True)

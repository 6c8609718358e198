"""The paper's Tables 3-10 as data: values checked against the paper text, and the schema."""

import re
from pathlib import Path

import pandas as pd
import pytest

from core.model import POOLINGS
from data_catalog.paper import (
    COLUMNS,
    METRICS,
    load_paper_results,
    paper_table,
    sfxl_query_set,
    sfxl_reference,
)

PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper" / "cosplace-paper.txt"
if not PAPER.is_file():
    PAPER = Path("/work/shared/paper/cosplace-paper.txt")
POPULAR = ["Pitts250k", "Pitts30k", "Tokyo 24/7", "MSLS", "St Lucia"]


@pytest.fixture(scope="module")
def paper_lines():
    if not PAPER.is_file():
        pytest.skip(f"the paper text {PAPER} is not on this machine")
    return PAPER.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def frame():
    return load_paper_results()


def text_row(lines, table: int, prefix: str) -> list[float | None]:
    """The numbers of the row starting with `prefix` in the table above 'Table N.' caption."""
    caption = next(i for i, line in enumerate(lines) if line.startswith(f"Table {table}."))
    for line in reversed(lines[:caption]):
        if line.startswith(prefix):
            cells = [c.strip() for c in line[len(prefix) :].split("\t")]
            return [None if c == "-" else float(re.split(r"\\pm|±", c)[0]) for c in cells if c]
    raise AssertionError(f"no row {prefix!r} above Table {table}'s caption")


def csv_values(frame, table, test_sets, metrics, **where) -> list[float | None]:
    rows = frame[frame["table"] == table]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    out = []
    for test_set in test_sets:
        for metric in metrics:
            found = rows[(rows["test_set"] == test_set) & (rows["metric"] == metric)]["value"]
            assert len(found) <= 1, (table, where, test_set, metric)
            out.append(float(found.iloc[0]) if len(found) else None)
    return out


SAMPLE_POPULAR = [  # (table, text prefix, method, train set, dim)
    (3, "NetVLAD [1]\t32768\tSF-XL**\t", "NetVLAD", "SF-XL**", 32768),
    (3, "SFRS [18]\t4096\tPitts30k\t", "SFRS", "Pitts30k", 4096),
    (3, "APPSVR [37] \\dagger\t4096\tPitts30k\t", "APPSVR", "Pitts30k", 4096),
    (3, "CosPlace (Ours)\t512\tSF-XL\t", "CosPlace", "SF-XL", 512),
    (8, "NetVLAD [1]\t512\tMSLS\t", "NetVLAD", "MSLS", 512),
    (8, "CosPlace (Ours)\t512\tSF-XL\t", "CosPlace", "SF-XL", 512),
]


@pytest.mark.parametrize(("table", "prefix", "method", "train_set", "dim"), SAMPLE_POPULAR)
def test_popular_dataset_rows_match_the_paper_text(
    paper_lines, frame, table, prefix, method, train_set, dim
):
    sets = POPULAR + (["Average"] if table == 3 else [])
    expected = text_row(paper_lines, table, prefix)[: 2 * len(sets)]
    found = csv_values(
        frame, table, sets, ["R@1", "R@5"], method=method, train_set=train_set, descriptor_dim=dim
    )
    assert found == expected


@pytest.mark.parametrize(
    ("table", "prefix", "method", "train_set"),
    [
        (4, "SARE [32]\t4096\tPitts30k\t", "SARE", "Pitts30k"),
        (4, "CosPlace (Ours)\t512\tSF-XL\t", "CosPlace", "SF-XL"),
        (9, "NetVLAD\t512\tSF-XL*\t", "NetVLAD", "SF-XL*"),
        (9, "CosPlace (Ours)\t512\tSF-XL\t", "CosPlace", "SF-XL"),
    ],
)
def test_sfxl_rows_match_the_paper_text(paper_lines, frame, table, prefix, method, train_set):
    expected = text_row(paper_lines, table, prefix)
    found = csv_values(
        frame,
        table,
        ["SF-XL test v1", "SF-XL test v2"],
        ["R@1", "R@5", "R@10"],
        method=method,
        train_set=train_set,
    )
    assert found == expected


def test_ablation_size_pooling_and_landmark_tables_match_the_paper_text(paper_lines, frame):
    for m, alpha, n, el in [(10, 360, 1, 1), (10, 30, 1, 2), (10, 30, 5, 2)]:
        (expected,) = text_row(paper_lines, 5, f"{m}\t{alpha}\t{n}\t{el}\t")
        row = paper_table(5, frame).query("M == @m and alpha == @alpha and N == @n and L == @el")
        assert row["value"].tolist() == [expected]
    for label, images in [("5.6M", 5_600_000), ("1.2k", 1_200)]:
        expected = text_row(paper_lines, 6, f"{label}\t")
        assert csv_values(frame, 6, POPULAR, ["R@1"], train_images=images) == expected
    for label, pooling in [("Average", "avg"), ("GeM", "gem")]:
        expected = text_row(paper_lines, 7, f"{label}\t")
        assert csv_values(frame, 7, POPULAR, ["R@1"], pooling=pooling) == expected
    expected = text_row(paper_lines, 10, "GLD\tResNet-101\t")
    assert csv_values(frame, 10, POPULAR, ["R@1"], train_set="GLD", backbone="ResNet-101") == (
        expected
    )


def test_values_read_by_hand_from_the_paper(frame):
    """A few numbers people quote, typed in from the paper (not parsed)."""
    cosplace_v1 = sfxl_reference("queries_v1", frame).query("method == 'CosPlace' and table == 4")
    assert dict(zip(cosplace_v1["metric"], cosplace_v1["value"], strict=True)) == {
        "R@1": 64.7,
        "R@5": 73.3,
        "R@10": 76.6,
    }
    table5 = paper_table(5, frame)
    assert table5["value"].tolist() == [85.8, 88.5, 88.2, 77.1, 90.9]
    sfrs = frame.query("table == 3 and method == 'SFRS' and test_set == 'Tokyo 24/7'")
    assert sfrs.set_index("metric")[["value", "std"]].to_dict("index") == {
        "R@1": {"value": 78.5, "std": 0.8},
        "R@5": {"value": 87.3, "std": 0.5},
    }


def test_schema_and_settings(frame):
    assert tuple(frame.columns) == COLUMNS
    assert sorted(frame["table"].unique()) == list(range(3, 11))
    assert frame["metric"].isin(METRICS).all()
    assert frame["value"].between(0, 100).all()
    assert (frame["threshold_m"] == 25).all() and (frame["test_resize"] == "native").all()
    key = ["table", "method", "backbone", "descriptor_dim", "train_set", "train_images"]
    key += ["test_set", "metric", "M", "alpha", "N", "L", "pooling"]
    assert not frame.duplicated(key).any()
    # A std only comes with a mean over seeds.
    assert frame.loc[frame["std"].notna(), "mean_over_seeds"].all()
    assert frame.loc[frame["table"] == 3, "mean_over_seeds"].notna().all()
    table5 = paper_table(5, frame)
    assert table5[["M", "alpha", "N", "L"]].notna().all().all()
    assert (table5["test_set"] == "SF-XL val").all()
    assert set(paper_table(6, frame)["train_images"]) == {5_600_000, 120_000, 12_000, 1_200}
    assert set(paper_table(7, frame)["pooling"]) == set(POOLINGS)
    sfxl = frame[frame["test_set"].str.startswith("SF-XL test")]
    assert set(sfxl["queries"]) == {"queries_v1", "queries_v2"}
    assert len(frame) == 454


def test_an_unknown_table_is_one_sentence():
    with pytest.raises(ValueError, match="Tables 3 to 10"):
        paper_table(2)


def test_loader_types(frame):
    assert isinstance(frame, pd.DataFrame)
    assert str(frame["descriptor_dim"].dtype) == "Int64"
    assert str(frame["mean_over_seeds"].dtype) == "boolean"


def test_an_evaluation_stands_for_the_sfxl_query_set_of_its_split_only():
    assert sfxl_query_set("data/sf_xl/processed/test", "queries_v1") == "SF-XL test v1"
    assert sfxl_query_set("data/sf_xl/processed/test", "queries_v2") == "SF-XL test v2"
    assert sfxl_query_set("data/sf_xl/processed/val", "queries") == "SF-XL val"
    assert sfxl_query_set("my_test_folder", "queries_v1") == "SF-XL test v1"  # no split name
    # The synthetic city's val split has a queries_v1 too: it is not SF-XL test v1.
    assert sfxl_query_set("data/synthetic_demo/val", "queries_v1") is None
    assert sfxl_query_set("data/sf_xl/processed/test", "queries") is None
    assert sfxl_query_set("data/sf_xl/processed/test", "my_queries") is None

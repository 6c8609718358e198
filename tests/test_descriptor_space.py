"""The Descriptor space page: sampling, descriptors back from the index, PCA, colours, the page."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from app_fixtures import TINY_DIM, copy_run, workspace_once
from streamlit.testing.v1 import AppTest

from app import descriptor_space as space
from app.space_colours import PALETTE, colour_points
from core.index import build_index
from core.partition import PartitionParams

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")
NAME = "@0549700.00@4180100.00@10@S@037.76695@-122.43570@pano{}@@{}@@@@{}06@@.jpg"


def points_of(east, north, heading, year) -> space.SpacePoints:
    count = len(east)
    return space.SpacePoints(
        "database",
        [f"{i}.jpg" for i in range(count)],
        np.zeros((count, 4), np.float32),
        np.asarray(east, float),
        np.asarray(north, float),
        np.asarray(heading, float),
        np.asarray(year),
    )


# --- logic ----------------------------------------------------------------------------------


def test_sample_rows_are_distinct_sorted_and_repeatable():
    rows = space.sample_rows(2_800_000, 20_000)
    assert len(rows) == len(np.unique(rows)) == 20_000
    assert np.all(np.diff(rows) > 0) and rows[-1] < 2_800_000
    np.testing.assert_array_equal(rows, space.sample_rows(2_800_000, 20_000))
    np.testing.assert_array_equal(space.sample_rows(7, 20_000), np.arange(7))


@pytest.mark.parametrize("index_type", ["flat", "ivf_flat", "hnsw", "flat_fp16"])
def test_index_gives_back_the_sampled_descriptors(index_type):
    rng = np.random.default_rng(0)
    descriptors = rng.standard_normal((400, 16)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    index, _ = build_index(descriptors, index_type, nlist=4)
    rows = np.array([0, 17, 399])
    exact = index_type != "flat_fp16"  # fp16 storage decodes to within 1e-3
    np.testing.assert_allclose(
        space.index_descriptors(index, rows), descriptors[rows], atol=1e-6 if exact else 1e-3
    )


def test_pca_finds_the_direction_of_largest_spread():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((2000, 8)) * np.array([0.1, 5, 0.1, 0.1, 2, 0.1, 0.1, 0.1])
    projection = space.fit_pca(data + 3.0)
    np.testing.assert_allclose(np.abs(projection.axes[:, 0]), np.eye(8)[1], atol=0.02)
    np.testing.assert_allclose(np.abs(projection.axes[:, 1]), np.eye(8)[4], atol=0.02)
    xy = projection(data + 3.0)
    assert xy.shape == (2000, 2) and abs(xy.mean()) < 0.2
    assert 0.8 < projection.explained.sum() <= 1.0
    assert np.std(xy[:, 0]) == pytest.approx(5, rel=0.1)


def test_group_colours_follow_the_partition():
    params = PartitionParams(M=10, alpha=30, N=2, L=2)
    # Images 0 and 2 are N cells apart (same group), image 1 one cell over (another group).
    points = points_of([5.0, 15.0, 25.0], [5.0] * 3, [0.0] * 3, [2013] * 3)
    groups = colour_points(points, "group", params, (0.0, 0.0))
    assert groups.codes[0] == groups.codes[2] != groups.codes[1]
    assert groups.palette == list(PALETTE)
    classes = colour_points(points, "class", params, (0.0, 0.0))
    assert len(set(classes.codes.tolist())) == 3  # three cells, three classes
    assert (classes.codes >= 0).all() and (classes.codes < len(PALETTE)).all()


def test_unknown_heading_or_year_is_grey():
    points = points_of([0.0, 1.0], [0.0, 1.0], [np.nan, 90.0], [-1, 2017])
    for colour_by in ("group", "heading", "year"):
        colouring = colour_points(points, colour_by, PartitionParams(), (0.0, 0.0))
        assert colouring.codes[0] == -1 and colouring.codes[1] >= 0, colour_by


def test_heading_and_position_wheels_and_years():
    points = points_of(
        [100.0, -100.0, 0.0], [0.0, 0.0, 100.0], [0.0, 180.0, 359.0], [2013, 2017, 2013]
    )
    position = colour_points(points, "position", PartitionParams(), (0.0, 0.0))
    assert len(set(position.codes.tolist())) == 3  # east, west, north: three hues
    heading = colour_points(points, "heading", PartitionParams(), (0.0, 0.0))
    assert heading.codes.tolist() == [0, 6, 11]  # 30-degree steps
    year = colour_points(points, "year", PartitionParams(), (0.0, 0.0))
    assert year.codes.tolist() == [0, 1, 0] and len(year.palette) == 2
    assert "2013 (blue) to 2017 (red)" in year.legend


def test_figure_sends_numbers_not_strings_per_point():
    count = 3000
    points = points_of(np.arange(count, dtype=float), np.zeros(count), np.zeros(count),
                       np.full(count, 2013))  # fmt: skip
    projection = space.fit_pca(np.random.default_rng(0).standard_normal((count, 4)))
    points.descriptors = np.random.default_rng(1).standard_normal((count, 4)).astype(np.float32)
    colouring = colour_points(points, "position", PartitionParams(), (0.0, 0.0))
    figure = space.space_figure([(points, projection(points.descriptors), colouring)], projection)
    trace = json.loads(figure.to_json())["data"][0]
    np.testing.assert_array_equal(decoded(trace["marker"]["color"]), colouring.codes)
    assert len(decoded(trace["x"])) == count
    assert len(figure.to_json()) < 40 * count  # about 30 bytes a point


def test_selection_event_maps_to_points_and_ignores_garbage():
    database = points_of([0.0, 10.0], [0.0, 10.0], [0.0, 0.0], [2013, 2013])
    queries = points_of([5.0], [5.0], [np.nan], [-1])
    queries.kind = "query"
    event = {
        "selection": {
            "points": [
                {"curve_number": 0, "point_index": 1},
                {"curve_number": 1, "point_index": 0},
                {"curve_number": 1, "point_index": 5},  # no such query
                {"curve_number": "0", "point_index": 0},  # not a number
            ]
        }
    }
    chosen = space.selected(type("Event", (), event)(), [database, queries])
    assert [(p.kind, row) for p, row in chosen] == [("database", 1), ("query", 0)]
    deck = json.loads(space.selection_deck(chosen, _zone()).to_json())
    assert len(deck["layers"][0]["data"]) == 2
    assert space.selected(None, [database]) == []


def _zone():
    from core.geo import UTMZone

    return UTMZone(10, "S")


def test_name_fields_read_heading_and_year_and_leave_malformed_names_empty():
    fields = space.name_fields(["database/" + NAME.format("a", 80, 2015), "database/x.jpg"])
    assert fields["heading"][0] == 80 and fields["year"][0] == 2015
    assert np.isnan(fields["heading"][1]) and fields["year"][1] == -1


def test_run_partition_reads_args_json(tmp_path):
    (tmp_path / "args.json").write_text(json.dumps({"M": 20, "alpha": 45, "N": 3, "L": 4}))
    params, source = space.run_partition(tmp_path)
    assert (params.M, params.alpha, params.N, params.L) == (20, 45, 3, 4)
    assert "args.json" in source
    assert "defaults" in space.run_partition(tmp_path / "missing")[1]


# --- the page -------------------------------------------------------------------------------


def decoded(values) -> np.ndarray:
    """A plotly array from the chart's JSON: a list, or base64 typed-array bytes."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values)


def add_evaluation(run: Path, test_set: Path, queries_folder: str = "queries_v1") -> list[str]:
    """A recorded evaluation of the run (results.json and predictions.csv), as training.eval
    writes them, for the queries of one folder."""
    queries = sorted(
        f"{queries_folder}/{p.name}" for p in (test_set / queries_folder).glob("*.jpg")
    )
    folder = run / f"eval_{test_set.name}_{queries_folder}"
    folder.mkdir()
    results = {"test_set": str(test_set), "queries_folder": queries_folder, "recalls": {"R@1": 0}}
    (folder / "results.json").write_text(json.dumps(results))
    table = pd.DataFrame({"query": queries, "rank": 0, "prediction": "x", "distance": 1.0})
    table.assign(correct=0).to_csv(folder / "predictions.csv", index=False)
    return queries


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_city):
    return workspace_once(tmp_path_factory, tiny_city)


def open_space(monkeypatch, workspace: Path, **params) -> AppTest:
    monkeypatch.setenv("COSPLACE_WORKSPACE", str(workspace))
    at = AppTest.from_file(MAIN, default_timeout=180)
    for key, value in params.items():
        at.query_params[key] = str(value)
    at.run()
    at.switch_page("views/space.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart_traces(at: AppTest) -> list[dict]:
    return json.loads(at.get("plotly_chart")[0].proto.spec)["data"]


def test_space_page_draws_a_sample_of_the_index(monkeypatch, workspace):
    count = len(pd.read_parquet(workspace / "runs" / "tiny" / "index" / "database.parquet"))
    at = open_space(monkeypatch, workspace, points=1000, colour="heading")
    traces = chart_traces(at)
    assert len(traces) == 1  # no evaluation: the database alone
    assert len(decoded(traces[0]["x"])) == min(1000, count)
    assert f"of the {count:,} database descriptors of run tiny" in "\n".join(
        c.value for c in at.caption
    )
    assert "heading as hue" in "\n".join(c.value for c in at.caption)
    assert at.query_params["colour"] == "heading"


def test_space_page_adds_the_queries_of_an_evaluation(monkeypatch, tmp_path, workspace, tiny_city):
    copy_run(workspace / "runs" / "tiny", tmp_path / "runs" / "tiny")
    queries = add_evaluation(tmp_path / "runs" / "tiny", tiny_city / "test")
    at = open_space(monkeypatch, tmp_path)
    assert len(chart_traces(at)) == 1  # the evaluation saved none: nothing extracted unasked
    assert "saved no query descriptors" in at.info[0].value
    at.button(key="extract_queries").click().run()
    assert not at.exception, [e.value for e in at.exception]
    traces = chart_traces(at)
    assert [t["name"].split(" ")[0] for t in traces] == ["database", "query"]
    assert len(decoded(traces[1]["x"])) == len(queries)
    assert "extracted by the app" in "\n".join(c.value for c in at.caption)
    assert at.query_params["evaluation"] == "eval_test_queries_v1"


def test_space_page_reuses_query_descriptors_the_evaluation_saved(
    monkeypatch, tmp_path, workspace, tiny_city
):
    copy_run(workspace / "runs" / "tiny", tmp_path / "runs" / "tiny")
    queries = add_evaluation(tmp_path / "runs" / "tiny", tiny_city / "test")
    folder = tmp_path / "runs" / "tiny" / "eval_test_queries_v1"
    saved = np.random.default_rng(0).standard_normal((len(queries), TINY_DIM)).astype(np.float32)
    np.save(folder / "queries_descriptors.npy", saved)  # as training.eval --save_descriptors
    (folder / "queries_paths.txt").write_text("\n".join(queries) + "\n")
    at = open_space(monkeypatch, tmp_path)
    traces = chart_traces(at)
    assert len(decoded(traces[1]["x"])) == len(queries)
    assert "saved by the evaluation" in "\n".join(c.value for c in at.caption)
    assert not at.button  # nothing to extract


def test_space_page_names_the_command_when_the_run_has_no_index(monkeypatch, tmp_path, workspace):
    copy_run(workspace / "runs" / "tiny", tmp_path / "runs" / "bare")
    for file in (tmp_path / "runs" / "bare" / "index").iterdir():
        file.unlink()
    at = open_space(monkeypatch, tmp_path)
    assert "python -m training.build_index" in at.warning[0].value

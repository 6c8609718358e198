"""The failure map's plain functions, the offline street layer and images described by place.

Predictions are written as predictions.csv with SF-XL names at known UTM positions and read
by the Results page's reader, as the Failures page reads them.
"""

from __future__ import annotations

import csv
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app import failure_map as fm
from app import image_places, street_layer
from app import results_view as rv
from core.geo import UTMZone
from core.recall import find_positives, recall_at_n
from data_catalog import map_views
from data_catalog.names import make_name

ZONE = UTMZone(10, "S")
EAST, NORTH = 550_000.0, 4_180_000.0


def name(east: float, north: float, tag: str, heading: int | None = None, year: int = 2013):
    return make_name(EAST + east, NORTH + north, 10, "S", 37.76, -122.43, pano_id=tag,
                     heading=heading, timestamp=f"{year}06")  # fmt: skip


def write_predictions(path: Path, queries: dict, database: list, ranked: dict) -> pd.DataFrame:
    """predictions.csv of queries {tag: (east, north)} against database [(east, north)],
    ranked {tag: [database rows, best first]}; read back as the app reads it."""
    rows = []
    for tag, (east, north) in queries.items():
        for rank, row in enumerate(ranked[tag]):
            prediction = f"database/{name(*database[row], f'd{row}')}"
            rows.append([f"queries_v1/{name(east, north, tag)}", rank, prediction, 0.5, 0])
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["query", "rank", "prediction", "distance", "correct"])
        writer.writerows(rows)
    return rv.load_predictions(path)


def test_recall_per_square_equals_core_recall_on_each_squares_queries(tmp_path):
    rng = np.random.default_rng(0)
    database = [(float(e), float(n)) for e, n in rng.uniform(0, 400, (60, 2))]
    queries = {
        f"q{i}": (float(e), float(n)) for i, (e, n) in enumerate(rng.uniform(0, 400, (40, 2)))
    }
    # Each query's 5 predictions: its true nearest database image now and then, else any.
    ranked = {}
    for tag, (east, north) in queries.items():
        order = np.argsort(np.hypot(*(np.array(database) - (east, north)).T))
        ranked[tag] = list(order[:5] if rng.random() < 0.5 else rng.permutation(60)[:5])
    predictions = write_predictions(tmp_path / "predictions.csv", queries, database, ranked)
    threshold, side = 40.0, 100.0
    outcomes = fm.query_outcomes(predictions, threshold)
    squares = fm.recall_per_square(outcomes.frame, side)
    assert squares["queries"].sum() == len(queries)
    origin = np.array([EAST, NORTH])
    positives = find_positives(
        np.array(database) + origin, np.array(list(queries.values())) + origin, threshold
    )
    tags = list(queries)
    expected_hits = 0
    for square in squares.itertuples():
        members = [
            i for i, (east, north) in enumerate(queries.values())
            if (np.floor((EAST + east) / side), np.floor((NORTH + north) / side))
            == (square.sq_e, square.sq_n)
        ]  # fmt: skip
        assert len(members) == square.queries
        core = recall_at_n(np.array([ranked[tags[i]] for i in members]),
                           [positives[i] for i in members], (1,))  # fmt: skip
        assert square.recall_1 == pytest.approx(core[1])
        expected_hits += round(core[1] * len(members) / 100)
    assert squares["hits"].sum() == expected_hits
    every = recall_at_n(np.array([ranked[t] for t in tags]), positives, (1,))[1]
    assert fm.recall_at_1(outcomes.frame) == pytest.approx(every)
    assert 0 < every < 100  # the draw gives both hits and misses


def outcomes_frame(correct: dict[str, bool]) -> pd.DataFrame:
    """A frame of outcomes as query_outcomes makes it, from right/wrong per query."""
    return pd.DataFrame(
        {
            "query": list(correct),
            "east": EAST + np.arange(len(correct)) * 10.0,
            "north": np.full(len(correct), NORTH),
            "correct": list(correct.values()),
            "first_hit": [0.0 if ok else np.inf for ok in correct.values()],
            "top1_error_m": [5.0 if ok else 500.0 for ok in correct.values()],
        }
    )


def test_run_b_fixes_and_breaks_run_as_answers():
    a = outcomes_frame({"q0": True, "q1": True, "q2": False, "q3": False, "q4": False, "qa": True})
    b = outcomes_frame({"q0": True, "q1": False, "q2": True, "q3": True, "q4": False, "qb": True})
    comparison = fm.compare_runs(a, b)
    assert comparison.counts == {"fixed": 2, "broken": 1, "both right": 1, "both wrong": 1}
    assert (comparison.only_a, comparison.only_b) == (1, 1)
    changes = dict(zip(comparison.frame["query"], comparison.frame["change"], strict=True))
    assert changes == {"q0": "both right", "q1": "broken", "q2": "fixed", "q3": "fixed",
                       "q4": "both wrong"}  # fmt: skip
    # Per square, B's Recall@1 and the fixes add up to the whole.
    squares = fm.change_per_square(comparison.frame, 1_000.0)
    assert squares[["queries", "fixed", "broken"]].sum().tolist() == [5, 2, 1]
    (square,) = squares.itertuples()
    assert (square.recall_1, square.recall_1_b) == (40.0, 60.0)


def test_outcomes_at_a_threshold_colour_and_link(tmp_path):
    database = [(10.0, 0.0), (300.0, 0.0), (0.0, 30.0)]
    queries = {"near": (0.0, 0.0), "far": (1000.0, 0.0)}
    ranked = {"near": [2, 0], "far": [1, 0]}
    predictions = write_predictions(tmp_path / "p.csv", queries, database, ranked)
    outcomes = fm.query_outcomes(predictions, 25.0, {name(0.0, 0.0, "near"): "night"})
    by_tag = {row.query.split("@")[7]: row for row in outcomes.frame.itertuples()}  # pano id
    assert by_tag["near"].first_hit == 1 and not by_tag["near"].correct  # 30 m, then 10 m
    assert by_tag["far"].top1_error_m == pytest.approx(700.0)
    assert by_tag["near"].condition == "night" and by_tag["far"].condition == ""
    assert fm.query_outcomes(predictions, 30.0).frame["correct"].tolist().count(True) == 1
    colours = fm.error_colours(outcomes.frame, "graded", 25.0)
    assert colours.shape == (2, 4) and not (colours[:, :3] == fm.GREEN).all(axis=1).any()
    link = fm.retrieve_link("demo", "queries_v1/x.jpg", 25)
    assert link == {"run": "demo", "source": "Test-set query", "query": "queries_v1/x.jpg",
                    "threshold": "25"}  # fmt: skip


def test_above_the_point_limit_only_squares_are_sent_until_one_is_focused(tmp_path, monkeypatch):
    database = [(float(i) * 50, 0.0) for i in range(8)]
    queries = {f"q{i}": (float(i) * 50, 0.0) for i in range(8)}
    ranked = {f"q{i}": [i] for i in range(8)}
    outcomes = fm.query_outcomes(
        write_predictions(tmp_path / "p.csv", queries, database, ranked), 25.0
    )
    monkeypatch.setattr(fm, "MAX_QUERY_POINTS", 3)
    layers = fm.failure_deck(outcomes, outcomes.frame, fm.FailureMapOptions(square_m=100.0))
    ids = [layer.id for layer in layers.deck.layers]
    assert ids == ["squares"] and layers.queries_drawn == 0 and layers.squares_drawn == 4
    assert "too many to draw" in layers.notes[0]
    focus = (int(np.floor(EAST / 100)), int(np.floor(NORTH / 100)))
    focused = fm.failure_deck(
        outcomes, outcomes.frame, fm.FailureMapOptions(square_m=100, focus=focus)
    )
    assert [layer.id for layer in focused.deck.layers] == ["squares", "top1", "queries"]
    assert focused.queries_drawn == 2


# --- the offline street layer -----------------------------------------------------------------


def test_street_squares_merge_positions_until_few_enough_remain():
    rng = np.random.default_rng(1)
    east = EAST + rng.uniform(0, 1000, 5000)
    north = NORTH + np.repeat([0.0, 100.0, 200.0, 300.0, 400.0], 1000)  # five streets
    fine = map_views.street_squares(east, north, ZONE, limit=10_000)
    assert fine.side_m == map_views.BASE_SIDE_M and fine.images.sum() == 5000
    coarse = map_views.street_squares(east, north, ZONE, limit=100)
    assert len(coarse) <= 100 and coarse.side_m > fine.side_m and coarse.images.sum() == 5000
    # Weights: squares counted elsewhere (the catalog) merge into the same totals.
    merged = map_views.street_squares(fine.east, fine.north, ZONE, fine.images, limit=100)
    assert merged.side_m == coarse.side_m and merged.images.sum() == 5000
    layer = street_layer.base_layer(coarse)
    assert len(layer.data) == len(coarse) and not layer.pickable


def test_a_small_map_gets_only_the_streets_around_its_points():
    east = EAST + np.arange(0.0, 10_000.0, 4.0)  # one street, 10 km long
    squares = map_views.street_squares(east, np.full(len(east), NORTH), ZONE, limit=10_000)
    points_e, points_n = np.array([EAST + 5_000.0, EAST + 5_100.0]), np.array([NORTH, np.nan])
    near = street_layer.squares_around(squares, points_e, points_n, margin_m=300.0)
    assert 0 < len(near) < len(squares) / 10
    assert near.east.min() >= EAST + 4_700 and near.east.max() <= EAST + 5_400
    assert near.side_m == squares.side_m and near.images.sum() == len(near)
    assert len(street_layer.squares_around(squares, [], [])) == 0


def test_the_base_layer_is_drawn_when_tiles_cannot_load_or_when_asked():
    assert street_layer.draw_base("auto", reachable=False)
    assert not street_layer.draw_base("auto", reachable=True)
    assert street_layer.draw_base("always", reachable=True)
    assert not street_layer.draw_base("never", reachable=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert street_layer.tiles_reachable(server.getsockname(), timeout_s=2.0)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: refused
    assert not street_layer.tiles_reachable(("127.0.0.1", port), timeout_s=2.0)


# --- images by place --------------------------------------------------------------------------


def test_results_are_described_by_distance_heading_and_year_not_file_names():
    paths = [name(12.0, 0.0, "a", heading=80, year=2019), "not-a-name.jpg"]
    results = pd.DataFrame(
        {
            "rank": [1, 2],
            "path": paths,
            "file": ["/x/" + p for p in paths],
            "similarity": [0.9, 0.5],
            "east": [EAST + 12.0, np.nan],
            "north": [NORTH, np.nan],
            "distance_m": [12.0, np.nan],
            "correct": [True, False],
        }
    )
    described = image_places.describe_results(results, ZONE)
    assert "path" not in described and "file" not in described
    assert described["place"].tolist() == ["12 m away · heading 80° · 2019", "position unknown"]
    assert described["year"].tolist() == [2019, -1]
    lat, lon = image_places.latlon_columns([EAST], [NORTH], ZONE)
    without = image_places.describe_results(results.drop(columns=["distance_m", "correct"]), ZONE)
    assert without["place"][0].startswith(f"{without['lat'][0]:.5f}, ")
    assert abs(lat[0] - 37.76) < 0.01 and abs(lon[0] + 122.43) < 0.01


def test_photo_conditions_name_every_synthetic_query_and_none_elsewhere(tiny_city, tmp_path):
    from data_catalog.synthetic.conditions import QUERY_DOMAINS
    from data_catalog.synthetic.domains import condition_label, photo_conditions

    for folder in ("test/queries_v1", "test/queries_v2"):
        conditions = photo_conditions(tiny_city, folder)
        names = {p.name for p in (tiny_city / folder).iterdir()}
        assert names and set(conditions) == names, folder
    v1 = photo_conditions(tiny_city, "test/queries_v1")
    assert {condition_label(c).split("+")[0] for c in v1.values()} <= set(QUERY_DOMAINS)
    (tmp_path / "metadata.json").write_text('{"synthetic": false}')
    assert photo_conditions(tmp_path, "test/queries_v1") is None
    (tmp_path / "metadata.json").write_text("not json")
    assert photo_conditions(tmp_path, "test/queries_v1") is None
    assert photo_conditions(tmp_path / "missing", "test/queries_v1") is None

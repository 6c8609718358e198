"""The Failures page's logic: where in the city a run's evaluation fails, without Streamlit.

From an evaluation's saved predictions (RUN/eval_*/predictions.csv, read by
app.results_view.load_predictions): each query at its true position (from its SF-XL name),
whether its top-1 is correct at the page's threshold (core.recall's first hits, through
results_view.first_hit_ranks) and how far off it is; Recall@1 per map square; and, for two
runs evaluated on the same queries, which answers run B fixes or breaks. Above
MAX_QUERY_POINTS queries only the squares are sent to the browser (aggregated here, as the
partition map does); clicking a square shows its queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pydeck as pdk

from app.image_places import latlon_columns, name_details, place_text
from app.map_layers import fitted_view, light_deck, polygon_layer, scatter_layer, square_rings
from app.results_view import first_hit_ranks
from core.geo import UTMZone, single_zone
from core.recall import recall_from_first_hits

MAX_QUERY_POINTS = 5_000  # points + lines + tooltips: ~1.5 MB of JSON at this many
DEFAULT_SQUARE_M = 100.0
GRADED_MAX_M = 1_000.0  # the graded colour is darkest red from here on
CHANGES = ("fixed", "broken", "both right", "both wrong")

GREEN, RED, GREY = [30, 160, 60], [215, 40, 40], [130, 130, 130]
CHANGE_COLOURS = {
    "fixed": [30, 160, 60, 235],
    "broken": [215, 40, 40, 235],
    "both right": [120, 180, 130, 110],
    "both wrong": [110, 110, 110, 130],
}


@dataclass
class QueryOutcomes:
    """One row per query with a position: query (path), east, north, top1 (path), top1_east,
    top1_north, top1_error_m, first_hit (rank of the first correct prediction, inf: none),
    correct (top-1 within the threshold), lat, lon, heading, year, condition."""

    frame: pd.DataFrame
    zone: UTMZone | None
    threshold_m: float
    unplaced: int = 0  # queries whose name carries no position: not on the map


def query_outcomes(
    predictions: pd.DataFrame, threshold_m: float, conditions: dict[str, str] | None = None
) -> QueryOutcomes:
    """Each query's top-1 outcome at threshold_m (predictions as results_view loads them);
    `conditions` maps a query's file name to its photo condition, where the dataset says it."""
    hits = first_hit_ranks(predictions, threshold_m)
    first = predictions.drop_duplicates("query").set_index("query").loc[hits.index]
    details = name_details([*hits.index, *first["prediction"]])
    query, top1 = details.iloc[: len(hits)], details.iloc[len(hits) :]
    frame = pd.DataFrame(
        {
            "query": hits.index.astype(str),
            "east": query["east"].to_numpy(),
            "north": query["north"].to_numpy(),
            "top1": first["prediction"].astype(str).to_numpy(),
            "top1_east": top1["east"].to_numpy(),
            "top1_north": top1["north"].to_numpy(),
            "top1_error_m": first["geo_m"].to_numpy(np.float64),
            "first_hit": hits.to_numpy(np.float64),
            "heading": query["heading"].to_numpy(),
            "year": query["year"].to_numpy(),
        }
    )
    frame["correct"] = frame["first_hit"] < 1
    names = frame["query"].str.rsplit("/", n=1).str[-1]
    frame["condition"] = [(conditions or {}).get(n, "") for n in names]
    placed = np.isfinite(frame["east"]) & np.isfinite(frame["north"])
    zones = query.loc[placed.to_numpy(), ["zone_number", "zone_letter"]].drop_duplicates()
    zone = single_zone(zones.itertuples(index=False), "the queries") if len(zones) else None
    frame = frame[placed.to_numpy()].reset_index(drop=True)
    if zone is not None:
        frame["lat"], frame["lon"] = latlon_columns(frame["east"], frame["north"], zone)
    else:
        frame["lat"], frame["lon"] = np.nan, np.nan
    return QueryOutcomes(frame, zone, float(threshold_m), int((~placed).sum()))


def recall_at_1(frame: pd.DataFrame) -> float:
    """Recall@1 (core.recall) of the queries of a frame of outcomes; NaN for none."""
    if frame.empty:
        return float("nan")
    return recall_from_first_hits(frame["first_hit"].to_numpy(), (1,))[1]


def square_keys(frame: pd.DataFrame, side_m: float) -> pd.DataFrame:
    """(sq_e, sq_n): the side_m x side_m UTM square each query lies in."""
    return pd.DataFrame(
        {
            "sq_e": np.floor(frame["east"].to_numpy() / side_m).astype(np.int64),
            "sq_n": np.floor(frame["north"].to_numpy() / side_m).astype(np.int64),
        },
        index=frame.index,
    )


def _per_square(frame: pd.DataFrame, side_m: float, counted: dict, recalls: dict) -> pd.DataFrame:
    """Per side_m square holding queries: sq_e, sq_n, queries, the sum of each `counted` mask
    and the Recall@1 (percent, core.recall) of each `recalls` first-hit column."""
    keys = square_keys(frame, side_m).to_numpy()
    squares, inverse = np.unique(keys.reshape(-1, 2), axis=0, return_inverse=True)
    inverse, count = inverse.ravel(), len(squares)
    order = np.argsort(inverse, kind="stable")
    members = np.split(order, np.cumsum(np.bincount(inverse, minlength=count))[:-1])
    members = members if len(frame) else []
    table = {"sq_e": squares[:, 0], "sq_n": squares[:, 1]}
    table["queries"] = np.bincount(inverse, minlength=count)
    for name, mask in counted.items():
        table[name] = np.bincount(inverse, mask, count).astype(np.int64)
    for name, column in recalls.items():
        first_hit = frame[column].to_numpy()
        table[name] = [recall_from_first_hits(first_hit[rows], (1,))[1] for rows in members]
    return pd.DataFrame(table)


def recall_per_square(frame: pd.DataFrame, side_m: float) -> pd.DataFrame:
    """Per side_m square holding queries: sq_e, sq_n, queries, hits and recall_1."""
    return _per_square(frame, side_m, {"hits": frame["correct"]}, {"recall_1": "first_hit"})


# --- two runs -------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Run B against run A on the queries both answered: `frame` is run A's outcomes with
    correct_b, top1_error_b, first_hit_b and change (one of CHANGES)."""

    frame: pd.DataFrame
    counts: dict[str, int]
    only_a: int
    only_b: int


def compare_runs(a: pd.DataFrame, b: pd.DataFrame) -> Comparison:
    """Which of run A's answers run B fixes (A wrong, B right) or breaks (A right, B wrong)."""
    theirs = b.set_index("query")[["correct", "top1_error_m", "first_hit"]].rename(
        columns={"correct": "correct_b", "top1_error_m": "top1_error_b", "first_hit": "first_hit_b"}
    )
    both = a.join(theirs, on="query", how="inner")
    right_a, right_b = both["correct"].to_numpy(bool), both["correct_b"].to_numpy(bool)
    change = np.select(
        [~right_a & right_b, right_a & ~right_b, right_a & right_b],
        ["fixed", "broken", "both right"],
        "both wrong",
    )
    both = both.assign(change=change).reset_index(drop=True)
    counts = {name: int((change == name).sum()) for name in CHANGES}
    shared = set(both["query"])
    only_a = int((~a["query"].isin(shared)).sum())
    only_b = int((~b["query"].isin(shared)).sum())
    return Comparison(both, counts, only_a, only_b)


def change_per_square(frame: pd.DataFrame, side_m: float) -> pd.DataFrame:
    """Per square of a Comparison's frame: queries, fixed, broken, recall_1 of run A and
    recall_1_b of run B."""
    change = frame["change"].to_numpy()
    counted = {"fixed": change == "fixed", "broken": change == "broken"}
    return _per_square(
        frame, side_m, counted, {"recall_1": "first_hit", "recall_1_b": "first_hit_b"}
    )


# --- the map --------------------------------------------------------------------------------


@dataclass
class FailureMapOptions:
    colour: str = "correct"  # "correct" (right/wrong) or "graded" (metres of top-1 error)
    square_m: float = DEFAULT_SQUARE_M
    focus: tuple[int, int] | None = None  # one square (sq_e, sq_n) of square_m, or all
    selected: str | None = None  # a query (path) to ring
    base: pdk.Layer | None = None  # the offline street layer (app.street_layer)


@dataclass
class FailureLayers:
    deck: pdk.Deck
    queries_drawn: int
    squares_drawn: int
    notes: list[str] = field(default_factory=list)


def error_colours(frame: pd.DataFrame, mode: str, threshold_m: float) -> np.ndarray:
    """[n, 4] colours: green/red by correctness, or graded from green (within the threshold)
    through yellow to dark red (GRADED_MAX_M off and more) on a log scale; grey: unknown."""
    error = frame["top1_error_m"].to_numpy(np.float64)
    correct = frame["correct"].to_numpy(bool)
    colours = np.where(correct[:, None], GREEN, RED).astype(np.int64)
    if mode == "graded":
        span = math.log(max(GRADED_MAX_M, threshold_m * 2) / threshold_m)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.clip(np.log(np.maximum(error, 1e-9) / threshold_m) / span, 0.0, 1.0)
        ramp = np.stack([np.full_like(t, 250) - 80 * t, 200 * (1 - t), np.zeros_like(t)], axis=1)
        colours = np.where(correct[:, None], GREEN, ramp.astype(np.int64))
    colours[~np.isfinite(error)] = GREY
    return np.concatenate([colours, np.full((len(frame), 1), 230)], axis=1)


def _square_layer(squares: pd.DataFrame, side_m: float, zone: UTMZone, diff: bool) -> pdk.Layer:
    rings = square_rings(squares["sq_e"] * side_m, squares["sq_n"] * side_m, side_m, zone)
    if diff:
        delta = (squares["recall_1_b"] - squares["recall_1"]).to_numpy() / 100.0
        shade = np.clip(np.abs(delta) * 3, 0.15, 1.0)
        rgb = np.where((delta > 0)[:, None], GREEN, np.where((delta < 0)[:, None], RED, GREY))
        alpha = np.where(delta == 0, 50, (60 + 120 * shade).astype(int))
        tips = [
            f"{r.queries} queries: R@1 {r.recall_1:.0f}% -> {r.recall_1_b:.0f}% "
            f"({r.fixed} fixed, {r.broken} broken)"
            for r in squares.itertuples()
        ]
    else:
        recall = squares["recall_1"].to_numpy() / 100.0
        rgb = (np.outer(1 - recall, RED) + np.outer(recall, GREEN)).astype(int)
        alpha = np.full(len(squares), 80)
        tips = [
            f"R@1 {r.recall_1:.0f}% of {r.queries} queries in this {side_m:g} m square"
            for r in squares.itertuples()
        ]
    colours = np.concatenate([rgb, alpha[:, None]], axis=1)
    return polygon_layer(
        rings, colours, squares[["sq_e", "sq_n"]].assign(tip=tips), "squares",
        get_line_color=[80, 80, 80, 120], line_width_min_pixels=1, stroked=True, filled=True,
        pickable=True, auto_highlight=True,
    )  # fmt: skip


def _query_tips(frame: pd.DataFrame, diff: bool) -> list[str]:
    tips = []
    for r in frame.itertuples():
        place = place_text(r.lat, r.lon, r.heading, r.year)
        error = "unknown" if not np.isfinite(r.top1_error_m) else f"{r.top1_error_m:,.0f} m"
        tip = f"query at {place}: top-1 {error} off"
        if diff:
            error_b = r.top1_error_b
            tip += f", run B {error_b:,.0f} m off ({r.change})" if np.isfinite(error_b) else ""
        else:
            tip += " (correct)" if r.correct else " (wrong)"
        if r.condition:
            tip += f" · {r.condition}"
        tips.append(tip + " · click for its retrieval")
    return tips


def failure_deck(
    outcomes: QueryOutcomes,
    frame: pd.DataFrame,
    options: FailureMapOptions,
    comparison: Comparison | None = None,
) -> FailureLayers:
    """The pydeck map of the queries of `frame` (outcomes.frame filtered, or comparison.frame):
    squares of Recall@1 (or of B's change), each query coloured by its outcome with a line to
    its top-1, the base layer under them. Too many queries: squares only, unless focused."""
    zone, notes = outcomes.zone, []
    layers = [] if options.base is None else [options.base]
    diff = comparison is not None
    if zone is None or frame.empty:
        deck = light_deck(layers, fitted_view([], []), tooltip=True)
        return FailureLayers(deck, 0, 0, ["No query with a position to draw."])
    side = float(options.square_m)
    squares = change_per_square(frame, side) if diff else recall_per_square(frame, side)
    shown = frame
    if options.focus is not None:
        keys = square_keys(frame, side)
        inside = (keys["sq_e"] == options.focus[0]) & (keys["sq_n"] == options.focus[1])
        shown = frame[inside.to_numpy()]
        focus = (squares["sq_e"] == options.focus[0]) & (squares["sq_n"] == options.focus[1])
        squares = squares[focus.to_numpy()]
    # The squares go under the streets (faint dots that the squares' fill would hide).
    layers.insert(0, _square_layer(squares, side, zone, diff))
    drawn = 0
    if len(shown) > MAX_QUERY_POINTS:
        notes.append(
            f"{len(shown):,} queries are too many to draw one by one: shown as Recall@1 per "
            f"{side:g} m square; click a square to see its queries."
        )
    elif len(shown):
        drawn = len(shown)
        if diff:
            colours = [CHANGE_COLOURS[c] for c in shown["change"]]
        else:
            colours = error_colours(shown, options.colour, outcomes.threshold_m).tolist()
        top_lat, top_lon = latlon_columns(shown["top1_east"], shown["top1_north"], zone)
        data = pd.DataFrame(
            {
                "lon": shown["lon"].to_numpy(),
                "lat": shown["lat"].to_numpy(),
                "colour": colours,
                "query": shown["query"].to_numpy(),
                "tip": _query_tips(shown, diff),
            }
        )
        if not diff:  # a line from each query to where its top-1 put it
            lines = pd.DataFrame(
                {
                    "from": np.stack([shown["lon"], shown["lat"]], axis=1).tolist(),
                    "to": np.stack([top_lon, top_lat], axis=1).tolist(),
                    "colour": [[*c[:3], 80] for c in colours],
                }
            )[np.isfinite(top_lat)]
            layers.append(pdk.Layer(
                "LineLayer", data=lines, id="top1", get_source_position="from",
                get_target_position="to", get_color="colour", get_width=1,
                width_min_pixels=1,
            ))  # fmt: skip
        layers.append(scatter_layer(
            data, "queries", get_fill_color="colour", get_line_color=[255, 255, 255, 200],
            stroked=True, line_width_min_pixels=1, get_radius=3, radius_min_pixels=4,
            radius_max_pixels=9, pickable=True,
        ))  # fmt: skip
    if options.selected is not None:
        chosen = frame[frame["query"] == options.selected]
        if len(chosen):
            ring = chosen[["lon", "lat"]].assign(tip="the query shown below")
            layers.append(scatter_layer(
                ring, "selected", get_line_color=[255, 140, 0, 255], stroked=True, filled=False,
                line_width_min_pixels=3, get_radius=10, radius_min_pixels=11,
            ))  # fmt: skip
    framed = shown if len(shown) else frame
    view = fitted_view(framed["lon"].to_numpy(), framed["lat"].to_numpy(), 1.15, 900, 560)
    deck = light_deck(layers, view)
    return FailureLayers(deck, drawn, len(squares), notes)


def test_set_folder(test_set: str, workspace: Path) -> Path:
    """The folder of an evaluation's test set. results.json keeps the path as given to
    training.eval, often relative to where it ran (the repo, beside the workspace `data/`):
    tried from here, then beside the workspace, then inside it."""
    path = Path(test_set)
    if path.is_absolute():
        return path
    for base in (Path.cwd(), Path(workspace).parent, Path(workspace)):
        if (base / path).is_dir():
            return base / path
    return path


def retrieve_link(run: str, query: str, threshold_m: float) -> dict[str, str]:
    """The Retrieve page's query parameters that open this test query's retrieval by run."""
    return {
        "run": run,
        "source": "Test-set query",
        "query": query,
        "threshold": str(int(threshold_m)),
    }

"""Failures: where in the city a run's evaluation fails, and where another run fixes it.

The logic lives in app/failure_map.py; this file only lays it out.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pandas as pd
import streamlit as st

from app import failure_map as fm
from app import resources, street_layer, view_state
from app import results_view as rv
from app.image_places import place_text
from app.workspace import catalog_path, workspace_dir
from data_catalog import runs as run_files
from data_catalog.synthetic.domains import condition_label, photo_conditions

COLOUR_MODES = {"correct": "correct or wrong", "graded": "metres off (graded)"}
MAX_SQUARE_M = 5_000.0
WORST_SHOWN = 50

st.title("Where the model fails")
workspace = workspace_dir()
evaluations = [e for e in rv.list_evaluations(workspace) if e.predictions is not None]
if not evaluations:
    st.info(f"The failure map needs an evaluation's saved predictions: run `{rv.EVAL_COMMAND}`.")
    st.stop()


def query_set(evaluation: rv.Evaluation) -> str:
    return f"{Path(evaluation.test_set).name}/{evaluation.queries}"


def test_set_of(evaluation: rv.Evaluation) -> Path:
    return fm.test_set_folder(evaluation.test_set, workspace)


@st.cache_data(max_entries=16, show_spinner="Replaying the city's photo conditions…")
def cached_conditions(dataset_folder: str, folder: str, stamp: float) -> dict[str, str] | None:
    found = photo_conditions(dataset_folder, folder)
    return None if found is None else {n: condition_label(c) for n, c in found.items()}


def conditions_key(evaluation: rv.Evaluation) -> tuple[str, str, float]:
    """cached_conditions' arguments for an evaluation: its dataset, folder and metadata's
    time (the conditions are replayed again when the city is rendered again)."""
    dataset = test_set_of(evaluation).parent
    metadata = dataset / "metadata.json"
    stamp = metadata.stat().st_mtime if metadata.is_file() else 0.0
    return str(dataset), query_set(evaluation), stamp


@st.cache_data(max_entries=16, show_spinner="Placing the queries on the map…")
def cached_outcomes(
    path: str, stamp: float, threshold: int, conditions_key: tuple
) -> fm.QueryOutcomes:
    predictions = rv.load_predictions(path)
    return fm.query_outcomes(predictions, threshold, cached_conditions(*conditions_key))


def outcomes_of(evaluation: rv.Evaluation, threshold: int) -> fm.QueryOutcomes | None:
    """None when the predictions cannot be read right now (a command is rewriting them)."""
    try:
        path = evaluation.predictions
        return cached_outcomes(
            str(path), path.stat().st_mtime, threshold, conditions_key(evaluation)
        )
    except (OSError, ValueError, pd.errors.ParserError):
        return None


with st.sidebar:
    st.header("Evaluation")
    names = sorted({e.run for e in evaluations})
    run = view_state.choice(
        "Run", names, "run", "demo" if "demo" in names else rv.default_runs(names)[0]
    )
    mine = [e for e in evaluations if e.run == run]
    sets = sorted({query_set(e) for e in mine})
    chosen_set = view_state.choice("Query set", sets, "queries")
    evaluation = next(e for e in mine if query_set(e) == chosen_set)
    threshold = view_state.number(
        "Correct within (m)", 1, 100, "threshold", 25, st.slider, step=1,
        help="The same threshold as the Results page's slider (and its link).",
    )  # fmt: skip
    colour = view_state.choice(
        "Colour queries by", list(COLOUR_MODES), "colour", "correct", st.radio,
        format_func=COLOUR_MODES.get,
    )  # fmt: skip
    square = view_state.number(
        "Map square for Recall@1 (m)", 10.0, MAX_SQUARE_M, "square", fm.DEFAULT_SQUARE_M, step=10.0
    )
    # The same test set however each evaluation was given it (relative or absolute path).
    here = test_set_of(evaluation).resolve()
    same_queries = {}  # run -> its first evaluation on these queries
    for e in evaluations:
        if e.run != run and e.queries == evaluation.queries and test_set_of(e).resolve() == here:
            same_queries.setdefault(e.run, e)
    others = ["(none)", *sorted(same_queries)]
    run_b = view_state.choice("Compare with run B", others, "run_b", "(none)")
    base_mode = resources.base_toggle()

outcomes = outcomes_of(evaluation, threshold)
if outcomes is None:
    st.warning(f"{evaluation.predictions} cannot be read right now (being rewritten?).")
    st.stop()
frame = outcomes.frame
# "night+grey" (a grey camera at night) is a night photo: the filter offers the conditions.
condition_of = frame["condition"].str.split("+").str[0]
conditions = sorted(c for c in condition_of.unique() if c)
chosen_conditions: list[str] = []
if conditions:
    view_state.initial("conditions", [], lambda raw: raw.split(","))
    st.session_state["conditions"] = [c for c in st.session_state["conditions"] if c in conditions]
    chosen_conditions = st.multiselect(
        "Photo conditions (from the synthetic city's plan)", conditions, key="conditions",
        placeholder="all conditions",
    )  # fmt: skip
    if chosen_conditions:
        frame = frame[condition_of.isin(chosen_conditions).to_numpy()]

comparison = None
if run_b != "(none)":
    other = same_queries[run_b]
    outcomes_b = outcomes_of(other, threshold)
    if outcomes_b is None:
        st.warning(f"{other.predictions} cannot be read right now (being rewritten?).")
    else:
        frame_b = outcomes_b.frame
        if chosen_conditions:
            frame_b = frame_b[frame_b["query"].isin(frame["query"])]
        comparison = fm.compare_runs(frame, frame_b)

columns = st.columns(4)
columns[0].metric("Queries on the map", f"{len(frame):,}")
columns[1].metric(f"Recall@1 at {threshold} m", f"{fm.recall_at_1(frame):.1f}%")
if comparison is None:
    columns[2].metric("Top-1 wrong", f"{int((~frame['correct']).sum()):,}")
else:
    counts = comparison.counts
    columns[2].metric(f"Fixed by {run_b}", f"{counts['fixed']:,}")
    columns[3].metric(
        f"Broken by {run_b}", f"{counts['broken']:,}",
        f"{(counts['fixed'] - counts['broken']) / max(len(comparison.frame), 1) * 100:+.1f} "
        "points of R@1", delta_color="normal",
    )  # fmt: skip
    st.caption(
        f"Of {len(comparison.frame):,} queries both runs answered: {counts['both right']:,} "
        f"right in both, {counts['both wrong']:,} wrong in both"
        + (
            f"; {comparison.only_a + comparison.only_b:,} answered by one run only"
            if comparison.only_a + comparison.only_b
            else ""
        )
        + "."
    )
if outcomes.unplaced:
    st.caption(f"{outcomes.unplaced:,} queries have no position in their name: not on the map.")

drawn_frame = frame if comparison is None else comparison.frame
known = set(drawn_frame["query"])
view_state.initial("failure", None)
if st.session_state["failure"] not in known:
    st.session_state["failure"] = None
focus = view_state.remembered_tuple("failure_focus", 2)
dataset = resources.catalogued_dataset(catalog_path(workspace), test_set_of(evaluation))
base = resources.street_base_layer(catalog_path(workspace), dataset, base_mode)
options = fm.FailureMapOptions(colour, float(square), focus, st.session_state["failure"], base)
layers = fm.failure_deck(outcomes, drawn_frame, options, comparison)
for note in layers.notes:
    st.caption(note)
if focus is not None and st.button("Show every square"):
    st.session_state["failure_focus"] = None
    st.rerun()
event = st.pydeck_chart(
    layers.deck, on_select="rerun", selection_mode="single-object", key="failure_map", height=600
)
obj = view_state.new_pick(event, "failure_last_pick")
if obj is not None:
    if "query" in obj:
        st.session_state["failure"] = str(obj["query"])
        st.rerun()
    if "sq_e" in obj and layers.queries_drawn == 0:
        st.session_state["failure_focus"] = (int(obj["sq_e"]), int(obj["sq_n"]))
        st.rerun()
if comparison is None:
    legend = (
        "green: top-1 correct, red: wrong"
        if colour == "correct"
        else f"green: within {threshold} m, yellow to dark red: {fm.GRADED_MAX_M:g} m off or more"
    )
    legend += (
        "; lines go to where the top-1 put the query; squares: Recall@1 (red 0% to green 100%)."
    )
else:
    legend = (
        f"green: fixed by {run_b}, red: broken by {run_b}, pale: right in both, grey: wrong in "
        f"both; squares: green where {run_b}'s Recall@1 is higher, red where lower."
    )
st.caption(
    f"Each query at its true position. Colours: {legend} Click a query to see it and open its "
    "retrieval." + (f" {street_layer.BASE_CAPTION}" if base is not None else "")
)

view_state.publish(
    run=run,
    queries=chosen_set,
    threshold=threshold,
    colour=colour,
    square=f"{float(square):g}",
    run_b=None if run_b == "(none)" else run_b,
    base=base_mode,
    conditions=",".join(chosen_conditions) or None,
    failure=st.session_state["failure"],
    failure_focus="_".join(map(str, focus)) if focus else None,
)


def retrieve_url(query: str) -> str:
    return "retrieve?" + urllib.parse.urlencode(fm.retrieve_link(run, query, threshold))


has_model = (workspace / "runs" / run / run_files.BEST_MODEL).is_file()
root = test_set_of(evaluation)
selected = st.session_state["failure"]
if selected is not None:
    row = drawn_frame[drawn_frame["query"] == selected].iloc[0]
    st.subheader("The query")
    st.markdown(
        f"Taken at {place_text(row.lat, row.lon, row.heading, row.year)}"
        + (f" ({row.condition})" if row.condition else "")
        + f"; the top-1 of {run} is {row.top1_error_m:,.0f} m away ("
        + ("correct" if row.correct else "wrong")
        + ")."
    )
    tiles = [(selected, "query"), (row.top1, f"top-1 of {run}: {row.top1_error_m:,.0f} m")]
    resources.thumbnail_columns(st.columns(len(tiles) + 1), root, tiles, 160)
    if has_model:
        st.page_link(
            "views/retrieve.py",
            label=f"Open its retrieval by {run} on the Retrieve page",
            query_params=fm.retrieve_link(run, selected, threshold),
        )
        st.caption(f"Link to share: `{retrieve_url(selected)}` (after the app's address).")
    else:
        st.caption(f"Run {run} has no {run_files.BEST_MODEL}: the Retrieve page cannot rerun it.")

st.subheader("Worst failures" if comparison is None else f"Answers {run_b} changes")
if comparison is None:
    table = drawn_frame[~drawn_frame["correct"]].sort_values("top1_error_m", ascending=False)
else:
    table = drawn_frame[drawn_frame["change"].isin(["fixed", "broken"])]
table = table.head(WORST_SHOWN)
shown = pd.DataFrame(
    {
        "taken at": [place_text(r.lat, r.lon, r.heading, r.year) for r in table.itertuples()],
        "condition": table["condition"].to_numpy(),
        "top-1 off (m)": table["top1_error_m"].round(0).to_numpy(),
        **({"change": table["change"].to_numpy()} if comparison is not None else {}),
        "retrieval": [retrieve_url(q) for q in table["query"]] if has_model else None,
    }
)
if not conditions:
    shown = shown.drop(columns=["condition"])
st.dataframe(
    shown, hide_index=True, key="failure_table",
    column_config={"retrieval": st.column_config.LinkColumn("retrieval", display_text="open")},
)  # fmt: skip
with st.expander(f"Recall@1 per {float(square):g} m square"):
    per_square = fm.recall_per_square(frame, float(square))
    st.dataframe(per_square, hide_index=True)

"""Descriptor space: a run's database descriptors (and an evaluation's queries) in 2-D by PCA."""

import numpy as np
import streamlit as st

from app import descriptor_space as space
from app import resources, view_state
from app.retrieval import ServingError
from app.space_colours import COLOUR_BY, colour_points

st.title("Descriptor space")
runs_folder, runs = resources.trained_runs_or_stop()

with st.sidebar:
    st.header("Descriptor space")
    run = view_state.choice("Run", runs, "run", "demo")
    points_wanted = view_state.number(
        "Database points (sampled)", 1000, 100_000, "points", space.DEFAULT_POINTS, step=1000
    )
    colour_by = view_state.choice("Colour by", COLOUR_BY, "colour", "group")

run_dir = runs_folder / run
try:
    serving = resources.run_serving(run_dir)
except ServingError as error:
    st.warning(str(error))
    st.stop()
test_set = serving.database.root.parent
evaluations = ["(none)", *space.evaluations_of(run_dir, test_set.name)]
with st.sidebar:
    evaluation = view_state.choice(
        "Queries of the evaluation", evaluations, "evaluation", evaluations[-1]
    )
view_state.publish(run=run, points=points_wanted, colour=colour_by, evaluation=evaluation)

database = resources.space_database_points(run_dir, int(points_wanted))
traces = [database]
if evaluation != "(none)":
    folder = run_dir / evaluation
    saved = space.saved_query_descriptors(folder)
    if saved is not None:
        keep = space.sample_rows(len(saved[0]), space.MAX_QUERY_POINTS)
        paths, descriptors = [saved[0][i] for i in keep.tolist()], saved[1][keep]
        note = f"query descriptors saved by the evaluation ({folder.name})"
    else:
        paths = space.evaluation_queries(folder)
        count = len(paths)
        paths = [paths[i] for i in space.sample_rows(count, space.MAX_EXTRACTED_QUERIES).tolist()]
        descriptors = resources.extracted_queries(run_dir, folder.name)
        note = (
            f"{len(paths):,} of its {count:,} queries, extracted by the app and kept in memory "
            "only (the app does not write into run folders); to draw all of them, evaluate with "
            "python -m training.eval ... --save_descriptors, which saves them in the evaluation "
            "folder"
        )
        if descriptors is None:
            st.info(
                f"The evaluation {folder.name} saved no query descriptors. The app can extract "
                f"those of {len(paths):,} sampled queries (a few seconds at 96 px; about 1-2 s a "
                "query at SF-XL's native size on a CPU), or save them all with python -m "
                "training.eval ... --save_descriptors."
            )
            if st.button(f"Extract {len(paths):,} query descriptors", key="extract_queries"):
                bar = st.progress(0.0, text=f"Extracting {len(paths):,} query descriptors…")
                try:
                    descriptors = space.extract_query_descriptors(
                        serving.model,
                        [str(test_set / p) for p in paths],
                        serving.database.resize_shorter_side,
                        lambda share: bar.progress(
                            share, text=f"{len(paths):,} queries: {share:.0%}"
                        ),
                    )
                except ValueError as error:
                    st.warning(f"{error}; the queries are left out.")
                bar.empty()
                if descriptors is not None:
                    resources.keep_extracted_queries(run_dir, folder.name, descriptors)
    if descriptors is not None:
        traces.append(space.query_points(test_set, paths, descriptors))
        st.caption(f"Queries of {evaluation}: {note}.")

projection = space.fit_pca(database.descriptors)
params, params_source = space.run_partition(run_dir)
centre = (float(np.nanmean(database.east)), float(np.nanmean(database.north)))
drawn = []
for points in traces:
    colouring = colour_points(points, colour_by, params, centre)
    drawn.append((points, projection(points.descriptors), colouring))
figure = space.space_figure(drawn, projection)

st.caption(
    f"{len(database):,} of the {serving.index.ntotal:,} database descriptors of run {run} "
    f"({serving.manifest.index_type} index), projected on the two principal axes of the "
    f"sample (PCA). Groups and classes by the partition M={params.M:g} m, "
    f"alpha={params.alpha:g}°, N={params.N}, L={params.L} from {params_source}. Draw a box or "
    "a lasso to see the images and where they are."
)
st.caption(f"Colour: {colouring.legend}; grey: the file name does not say.")
event = st.plotly_chart(
    figure,
    on_select="rerun",
    selection_mode=("box", "lasso"),
    key=f"space_{run}_{colour_by}_{evaluation}_{len(database)}",
)
chosen = sorted(space.selected(event, traces), key=lambda item: item[0].kind != "query")
if not chosen:
    st.caption("Nothing selected yet.")
    st.stop()
st.subheader(f"{len(chosen):,} selected")
left, right = st.columns([3, 2])
with left:
    shown = chosen[:24]
    files = [points.files[row] for points, row in shown]
    captions = [space.describe(points, row) for points, row in shown]
    resources.thumbnail_grid(files, captions, 120, 110)
    if len(chosen) > len(shown):
        st.caption(f"The first {len(shown)} of {len(chosen):,} shown.")
with right:
    deck = space.selection_deck(chosen, serving.database.zone)
    if deck is not None:
        st.pydeck_chart(deck, height=360, key="space_selection_map")

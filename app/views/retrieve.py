"""Retrieve: upload photos (or pick a test query) and see what a run's model retrieves."""

from pathlib import Path

import streamlit as st

from app import resources, street_layer, view_state
from app.image_places import describe_results, latlon_columns, name_details, place_text
from app.match_section import show_match
from app.results_view import run_provenance
from app.retrieval import (
    Query,
    ServingError,
    query_in_zone,
    retrieval_deck,
    retrieve,
    test_query_files,
)
from app.uploads import UPLOAD_TYPES, failure_answer, first_files, position_caption
from app.workspace import catalog_path

st.title("Retrieve")
runs_folder, runs = resources.trained_runs_or_stop()

with st.sidebar:
    st.header("Retrieval")
    run = view_state.choice("Run", runs, "run", "demo")
    others = ["(none)", *[r for r in runs if r != run]]
    run2 = view_state.choice("Compare with run", others, "run2", "(none)")
    k = view_state.number("Results per query (k)", 1, 20, "k", 5, st.slider)
    threshold = view_state.number("Correct within (m)", 1, 1000, "threshold", 25)
    heat_rank = view_state.number("What a match rests on: result # (0: none)", 0, 20, "heat", 0)
    base_mode = resources.base_toggle()

chosen = [run] + ([run2] if run2 != "(none)" else [])
servings = []
for name in chosen:
    try:
        servings.append(resources.run_serving(runs_folder / name))
    except ServingError as error:
        st.warning(str(error))
if not servings:
    st.stop()
first = servings[0]
st.caption(f"Model of run {run}: {run_provenance(runs_folder / run)}")

view_state.initial("source", "Upload photos")
source = st.radio("Query", ["Upload photos", "Test-set query"], key="source", horizontal=True)
raw_queries: list[tuple[str, bytes]] = []
if source == "Upload photos":
    uploads = st.file_uploader(
        "Photos (jpg, png, webp)", type=UPLOAD_TYPES, accept_multiple_files=True, key="uploads"
    )
    answered, not_read = first_files(list(uploads or []))
    if not_read:
        st.warning(not_read)
    raw_queries = [(upload.name, upload.getvalue()) for upload in answered]
    query_choice = None
else:
    files = test_query_files(first.database)
    if not files:
        st.info(f"No queries* folder beside {first.database.root}: upload a photo instead.")
        st.stop()
    labels = [str(f.relative_to(first.database.root.parent)) for f in files]
    query_choice = view_state.choice("Test-set query", labels, "query")
    raw_queries = [
        (Path(query_choice).name, (first.database.root.parent / query_choice).read_bytes())
    ]

view_state.publish(
    run=run,
    run2=None if run2 == "(none)" else run2,
    k=k,
    threshold=threshold,
    source=source,
    query=query_choice,
    heat=heat_rank or None,
    base=base_mode,
)
if not raw_queries:
    st.caption("Upload one or more photos, or pick a test-set query, to see the top results.")
    st.stop()

# Each run's database as faint streets under its maps, when the catalog holds its dataset.
catalog = catalog_path()
streets = {
    serving.name: resources.street_base_squares(
        catalog, resources.catalogued_dataset(catalog, serving.database.root), base_mode
    )
    for serving in servings
}


def query_caption(name: str, query: Query) -> str:
    """A test query by its position, heading and year; an upload by its file name."""
    if query.position_source != "SF-XL file name":
        return name
    details = name_details([name]).iloc[0]
    lat, lon = latlon_columns([query.position[0]], [query.position[1]], first.database.zone)
    return "query · " + place_text(lat[0], lon[0], details["heading"], details["year"])


def show_results(query: Query, serving, descriptor, container, slot: str) -> None:
    outcome = retrieve(serving, query, k=k, threshold_m=float(threshold), descriptor=descriptor)
    results = outcome.results
    with container:
        st.markdown(
            f"**Run {serving.name}** ({serving.manifest.index_type}, "
            f"{serving.manifest.count:,} images, {outcome.seconds * 1000:.0f} ms)"
        )
        if outcome.top1_error_m is not None:
            hits = int(results["correct"].sum())
            st.metric(
                "Top-1 position error",
                f"{outcome.top1_error_m:,.0f} m",
                f"{hits} of {len(results)} results within {threshold} m",
                delta_color="off",
            )
        # Each result by where, which way and when it was taken, not by its file name.
        described = describe_results(results, serving.database.zone)
        captions = [
            f"#{row.rank} sim {row.similarity:.3f} · {row.place}"
            + ((" · correct" if row.correct else " · wrong") if "correct" in described else "")
            for row in described.itertuples()
        ]
        resources.thumbnail_grid(results["file"], captions, 160, 150)
        st.dataframe(described, hide_index=True, key=f"table_{serving.name}_{slot}")
        with st.expander("File names"):
            st.code("\n".join(f"#{r.rank} {r.path}" for r in results.itertuples()), language=None)
        squares = streets[serving.name]
        base = None
        if squares is not None:  # only the streets around this map's points are sent
            east, north = list(results["east"]), list(results["north"])
            if query.position is not None:
                east.append(query.position[0])
                north.append(query.position[1])
            near = street_layer.squares_around(squares, east, north)
            base = street_layer.base_layer(near)
        st.pydeck_chart(
            retrieval_deck(query, outcome, serving.database.zone, base),
            height=320,
            key=f"map_{serving.name}_{slot}",
        )
        if base is not None:
            st.caption(street_layer.BASE_CAPTION)
        if heat_rank:
            show_match(serving, query, results, heat_rank)


def answer(name: str, data: bytes, slot: str) -> None:
    """One photo: decoded once (cached by its bytes), its descriptor cached per run. `slot`
    tells its widgets apart from those of another file of the same name (two phones' IMG_1.jpg)."""
    prepared = resources.prepared_upload(name, data)
    st.divider()
    left, right = st.columns([1, 3])
    caption = query_caption(name, query_in_zone(prepared, first.database.zone))
    left.image(prepared.preview, caption=caption, width="stretch")
    if prepared.fitted:
        left.caption(f"Shown as the model sees it: {prepared.fitted}.")
    columns = right.columns(len(servings))
    for number, (serving, column) in enumerate(zip(servings, columns, strict=True)):
        query = query_in_zone(prepared, serving.database.zone)
        if number == 0:
            left.caption(
                position_caption(query.position, query.position_source, query.position_notes)
            )
        descriptor = resources.upload_descriptor(runs_folder / serving.name, serving, prepared)
        show_results(query, serving, descriptor, column, slot)


progress = st.progress(0.0, text="Retrieving…") if len(raw_queries) > 1 else None
for number, (name, data) in enumerate(raw_queries):
    if progress is not None:
        progress.progress(
            number / len(raw_queries), text=f"Query {number + 1} of {len(raw_queries)}"
        )
    try:
        answer(name, data, f"{number}_{name}")
    except Exception as error:  # one file's failure is its answer; the batch goes on
        st.error(failure_answer(name, error))
if progress is not None:
    progress.empty()

"""Map: the CosPlace partition (cells, classes, groups) of a catalogued dataset."""

import warnings

import pandas as pd
import streamlit as st

from app import resources, street_layer, view_state
from app.catalog_reader import CatalogBusyError
from app.group_separation import fig4_figure, group_separation
from app.map_layers import MapSelection, build_map_layers, cell_images, group_label
from core.partition import (
    DEFAULT_ALPHA,
    DEFAULT_L,
    DEFAULT_M,
    DEFAULT_MIN_IMAGES_PER_CLASS,
    DEFAULT_N,
    PartitionParams,
)

MAX_M = 10_000.0  # a cell side beyond 10 km holds a whole city

st.title("Partition map")
catalog, datasets = resources.catalogued_datasets_or_stop()

with st.sidebar:
    st.header("Partition")
    dataset = view_state.choice("Dataset", datasets, "dataset")
    try:
        splits = resources.dataset_splits(catalog, dataset)
    except CatalogBusyError as error:
        st.warning(str(error))
        st.stop()
    if not splits:
        st.info(f"Dataset {dataset} has no images with a heading: the partition needs them.")
        st.stop()
    split = view_state.choice("Split", splits, "split", "train")
    M = view_state.number("M: cell side (m)", 1.0, MAX_M, "M", DEFAULT_M, step=1.0)
    alpha = view_state.number(
        "alpha: heading bin (deg)", 1.0, 360.0, "alpha", DEFAULT_ALPHA, step=5.0
    )
    N = view_state.number("N: cells between classes of a group", 1, 50, "N", DEFAULT_N)
    L = view_state.number("L: heading bins between them", 1, 36, "L", DEFAULT_L)
    min_images = view_state.number(
        "min_images_per_class", 1, 1000, "min_images", DEFAULT_MIN_IMAGES_PER_CLASS
    )
    base_mode = resources.base_toggle()

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shown once below, from the cached partition
        params = PartitionParams(M, alpha, int(N), int(L), int(min_images))
except ValueError as error:
    st.error(f"{error}; change it in the sidebar.")
    st.stop()

try:
    view = resources.partition_view(catalog, dataset, params, split)
except CatalogBusyError as error:
    st.warning(str(error))
    st.stop()
except (KeyError, ValueError) as error:
    st.error(f"The partition of {dataset}/{split} cannot be computed: {error}.")
    st.stop()
for message in view.warnings:
    st.warning(message)

non_empty = view.groups[view.groups["classes"] > 0]
columns = st.columns(4)
columns[0].metric("Images", f"{int(view.cells['images'].sum()):,}")
columns[1].metric("Cells", f"{len(view.cells):,}")
columns[2].metric("Classes kept", f"{len(view.classes):,}")
columns[3].metric("Groups with classes", f"{len(non_empty)} of {params.num_groups}")
if view.classes.empty:
    st.info(
        f"No class has {params.min_images_per_class} images: lower min_images_per_class "
        "in the sidebar to see classes and groups."
    )

group = view_state.choice(
    "Group",
    [-1, *non_empty["group"].astype(int).tolist()],
    "group",
    -1,
    cast=int,
    format_func=lambda g: "All groups" if g == -1 else group_label(view.groups, g),
)
group = None if group == -1 else group

focus = view_state.remembered_tuple("focus", 3)  # (east, north, level)
selected = view_state.remembered_tuple("cell", 2)  # (east, north)
base = resources.street_base_layer(catalog, dataset, base_mode)
layers = build_map_layers(view, MapSelection(group, focus, selected), base)
for note in layers.notes:
    st.caption(note)
if focus is not None and st.button("Show the whole dataset"):
    st.session_state["focus"] = None
    st.rerun()
event = st.pydeck_chart(
    layers.deck,
    on_select="rerun",
    selection_mode="single-object",
    key="partition_map",
    height=560,
)
obj = view_state.new_pick(event, "last_pick")
if obj is not None:
    if int(obj.get("level", 1)) > 1:
        st.session_state["focus"] = (int(obj["cell_e"]), int(obj["cell_n"]), int(obj["level"]))
        st.session_state["cell"] = None
        st.rerun()
    selected = (int(obj["cell_e"]), int(obj["cell_n"]))
    st.session_state["cell"] = selected
st.caption(
    "Cells are true M x M UTM squares coloured by (e mod N, n mod N); wedges are classes, "
    "coloured by group. Click a cell to see its images."
    + (f" {street_layer.BASE_CAPTION}" if base is not None else "")
)

view_state.publish(
    dataset=dataset,
    split=split,
    M=f"{params.M:g}",
    alpha=f"{params.alpha:g}",
    N=params.N,
    L=params.L,
    min_images=params.min_images_per_class,
    base=base_mode,
    group=group,
    focus="_".join(map(str, focus)) if focus else None,
    cell="_".join(map(str, selected)) if selected else None,
)

if group is not None:
    st.subheader(f"Group {group_label(view.groups, group)}: paper Fig. 4")
    separation = group_separation(view, group)
    columns = st.columns(2)
    if separation.min_gap_m is None:
        columns[0].metric("Closest two cells of the group", "one cell only")
    else:
        columns[0].metric(
            "Closest two cells of the group",
            f"{separation.min_gap_m:g} m apart",
            f">= M(N-1) = {separation.bound_m:g} m",
            delta_color="off",
            help=f"Squares {separation.min_gap_m:g} m apart, centres {separation.min_centre_m:g} m",
        )
    if separation.min_heading_deg is None:
        columns[1].metric("Closest two headings in one cell", "one heading per cell")
    else:
        columns[1].metric(
            "Closest two headings in one cell",
            f"{separation.min_heading_deg:g} deg apart",
            f">= alpha(L-1) = {separation.heading_bound_deg:g} deg",
            delta_color="off",
        )
    st.plotly_chart(fig4_figure(view, group), key="fig4")

if selected is not None:
    st.subheader(f"Cell ({selected[0]}, {selected[1]})")
    try:
        images = cell_images(catalog, view, selected)
    except CatalogBusyError as error:
        st.warning(str(error))
        st.stop()
    if images.empty:
        st.info("No image of this split lies in that cell.")
        st.stop()
    by_heading, by_year = st.tabs(["By heading", "By year"])

    def show(frame: pd.DataFrame, caption_column: str) -> None:
        shown = resources.thumbnail_grid(frame["file"], frame[caption_column], 128, 110)
        if shown < len(frame):
            st.caption(f"{len(frame) - shown} image files could not be read.")

    with by_heading:
        for heading_class, frame in images.groupby("heading_class"):
            low = heading_class * params.alpha
            st.markdown(f"**Heading {low:g}-{low + params.alpha:g} deg** ({len(frame)} images)")
            show(frame.head(12), "year")
    with by_year:
        for year, frame in images.groupby(images["year"].fillna(-1).astype(int)):
            st.markdown(f"**{year if year >= 0 else 'no date'}** ({len(frame)} images)")
            show(frame.head(12), "heading")

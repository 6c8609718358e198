"""Dataset: splits, panoramas per cell and per year, coverage and malformed names."""

import streamlit as st

from app import resources, view_state
from app.catalog_reader import CatalogBusyError
from app.dataset_stats import (
    coverage_deck,
    panoramas_per_cell_figure,
    panoramas_per_year_figure,
    splits_figure,
)
from core.partition import PartitionParams

st.title("Dataset")
catalog, datasets = resources.catalogued_datasets_or_stop()

with st.sidebar:
    dataset = view_state.choice("Dataset", datasets, "dataset")
view_state.publish(dataset=dataset)

try:
    stats = resources.dataset_statistics(catalog, dataset)
    splits = resources.dataset_splits(catalog, dataset)
except CatalogBusyError as error:
    st.warning(str(error))
    st.stop()

total = int(stats.splits["images"].sum())
columns = st.columns(3)
columns[0].metric("Images", f"{total:,}")
columns[1].metric("Splits", ", ".join(sorted(set(stats.splits["split"]))))
columns[2].metric("Malformed names", f"{stats.malformed_total:,}")

left, right = st.columns(2)
left.plotly_chart(splits_figure(stats), key="splits")
right.plotly_chart(panoramas_per_year_figure(stats), key="years")

# Panoramas per cell at the paper's M, over the split the map uses by default.
cell_split = "train" if "train" in splits else (splits[0] if splits else None)
if cell_split is None:
    st.info("No split has headings, so there are no cells to count.")
else:
    params = PartitionParams()
    try:
        view = resources.partition_view(catalog, dataset, params, cell_split)
        left.plotly_chart(panoramas_per_cell_figure(view.cells, params.M), key="per_cell")
        left.caption(f"Split {cell_split}, cells of M = {params.M:g} m (supplementary Fig. 1).")
    except CatalogBusyError as error:
        left.warning(str(error))

with right:
    st.markdown(f"**Coverage** (images per {stats.coverage_side_m:g} m square)")
    st.pydeck_chart(coverage_deck(stats), height=380, key="coverage")

st.subheader("Malformed names")
if stats.malformed_total == 0:
    st.success("Every file name in this dataset is a valid SF-XL name.")
else:
    shown = len(stats.malformed)
    st.caption(
        f"{stats.malformed_total:,} files were not catalogued"
        + (f"; the first {shown:,} are listed" if shown < stats.malformed_total else "")
        + ". Rename them and ingest again to include them."
    )
    st.dataframe(stats.malformed, hide_index=True, key="malformed")

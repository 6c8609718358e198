"""The Retrieve page's section "What a match rests on": the query and one result, heat maps
side by side (app.match_heatmap computes them)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.match_heatmap import EXPLANATION, match_overlays
from core.images import ImageError


def show_match(serving, query, results: pd.DataFrame, rank: int) -> None:
    """Heat maps of the query and its result of this rank (1-based)."""
    chosen = results[results["rank"] == rank]
    if chosen.empty:
        st.caption(f"No result #{rank} for this query.")
        return
    row = chosen.iloc[0]
    try:
        shown = match_overlays(
            serving.model, query.image, row["file"], serving.database.resize_shorter_side
        )
    except ImageError as error:
        st.warning(f"{error}; the result's image cannot be shown, pick another result.")
        return
    st.markdown(f"**What match #{rank} rests on** (similarity {shown.similarity:.3f})")
    # Drawn at 3x the demo's 96 px (not stretched to the column): the map has 3x3 cells.
    st.image(
        [shown.query, shown.match],
        caption=[
            f"query: {shown.share_query:.0%} of the heat",
            f"result #{rank}: {1 - shown.share_query:.0%} of the heat",
        ],
        width=300,
    )
    st.caption(EXPLANATION)

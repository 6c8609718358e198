"""Training: a run's loss, val recall, images/s and time left, followed while it trains.

The logic lives in app/training_view.py; this file only lays it out. While the chosen run
trains, the part below the run's name reruns every few seconds (st.fragment) and reads the
run folder again; a finished run shows the same page as its history.
"""

from __future__ import annotations

import time

import plotly.express as px
import streamlit as st

from app import training_view as tv
from app import view_state
from app.workspace import runs_dir, workspace_dir

st.title("Training")
workspace = workspace_dir()
table = tv.training_runs(workspace, time.time())
if table.empty:
    st.info(
        f"No training run in {runs_dir(workspace)} yet. Start one with `python -m training.train "
        f"--dataset_folder DIR --workspace {workspace} --save_dir NAME`: it shows here from its "
        "first iterations."
    )
    st.stop()

labels = {row["run"]: tv.run_label(row) for row in table.to_dict("records")}
run = view_state.choice("Run", list(labels), "run", table["run"].iloc[0], format_func=labels.get)
view_state.publish(run=run)
run_folder = runs_dir(workspace) / run
opened_as = table.set_index("run").loc[run, "state"]


TABLE_FORMAT = {
    "loss": st.column_config.NumberColumn(format="%.3f"),
    "val_r1": st.column_config.NumberColumn("val R@1", format="%.1f"),
    "images_per_s": st.column_config.NumberColumn("images/s", format="%.1f"),
    "seconds": st.column_config.NumberColumn("train s", format="%.0f"),
    "wall_s": st.column_config.NumberColumn("wall s (run)", format="%.0f"),
}
# (column, title, chart key) of the three curves
CURVES = [
    ("loss", "Loss per epoch", "training_loss"),
    ("val_r1", "Val R@1 per epoch", "training_val"),
    ("images_per_s", "Images/s per epoch", "training_speed"),
]


@st.fragment(run_every=tv.REFRESH_S if opened_as == tv.TRAINING else None)
def follow() -> None:
    view = tv.read_training(run_folder, time.time())
    if view.state != opened_as:
        st.rerun()  # started, finished or stopped: the whole page (and its refresh) follows
    for note in view.notes:
        st.warning(note)
    for column, (label, value) in zip(st.columns(5), tv.metrics(view).items(), strict=True):
        column.metric(label, value)
    st.caption(tv.caption(view))
    if view.current:
        st.progress(tv.current_fraction(view), text=tv.current_text(view))
    if view.epochs.empty:
        st.info("No epoch has finished yet: the curves appear after the first one.")
        return
    for column, (y, title, key) in zip(st.columns(3), CURVES, strict=True):
        figure = px.line(view.epochs, x="epoch", y=y, markers=True, title=title, height=300)
        column.plotly_chart(figure, key=key)
    st.dataframe(view.epochs, hide_index=True, column_config=TABLE_FORMAT)


follow()

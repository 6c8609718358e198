"""Training: a run's loss, val recall, images/s and time left, followed while it trains.

The logic lives in app/training_view.py; this file only lays it out. While the chosen run
trains, the part below the run's name reruns every few seconds (st.fragment) and reads the
run folder again; a finished run shows the same page as its history.
"""

from __future__ import annotations

import datetime
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
view_state.initial_choice("run", list(labels), table["run"].iloc[0])
run = st.selectbox("Run", list(labels), key="run", format_func=labels.get)
view_state.publish(run=run)
run_folder = runs_dir(workspace) / run
opened_as = table.set_index("run").loc[run, "state"]


def line_chart(frame, y: str, title: str, key: str) -> None:
    figure = px.line(frame, x="epoch", y=y, markers=True, title=title, height=300)
    st.plotly_chart(figure, key=key)


@st.fragment(run_every=tv.REFRESH_S if opened_as == tv.TRAINING else None)
def follow() -> None:
    view = tv.read_training(run_folder, time.time())
    if view.state != opened_as:
        st.rerun()  # started, finished or stopped: the whole page (and its refresh) follows
    for note in view.notes:
        st.warning(note)
    done = tv.epochs_done(view.epochs)
    steps = tv.iterations(view)
    columns = st.columns(6)
    columns[0].metric("State", view.state)
    columns[1].metric("Epochs", f"{done} of {view.epochs_num or '?'}")
    columns[2].metric("Iterations", f"{steps[0]:,} of {steps[1]:,}" if steps else "not recorded")
    rate = tv.images_per_s(view)
    columns[3].metric("Images/s", f"{rate:.1f}" if rate else "unknown")
    left = tv.time_left_s(view)
    columns[4].metric("Time left", tv.format_duration(left) if left is not None else "–")
    when = (
        datetime.datetime.fromtimestamp(view.updated, datetime.UTC).strftime("%H:%M:%S UTC")
        if view.updated
        else "–"
    )
    columns[5].metric("Last record", when)
    st.caption(
        f"{view.detail.capitalize()}. Time left is the remaining epochs at the pace of the last "
        f"{tv.RECENT_EPOCHS} (validation included)."
        + (f" Refreshed every {tv.REFRESH_S} s." if view.state == tv.TRAINING else "")
    )
    if view.current:
        current = view.current
        text = f"Epoch {current['epoch']}: {current['phase']}"
        if current["phase"] == "training" and view.iterations_per_epoch:
            loss = f", loss {current['loss']:.3f}" if current["loss"] is not None else ""
            text += f", {current['iterations_done']} of {view.iterations_per_epoch} iterations"
            text += loss
        st.progress(tv.current_fraction(view), text=text)
    if view.epochs.empty:
        st.info("No epoch has finished yet: the curves appear after the first one.")
        return
    left_column, middle_column, right_column = st.columns(3)
    with left_column:
        line_chart(view.epochs, "loss", "Loss per epoch", "training_loss")
    with middle_column:
        line_chart(view.epochs, "val_r1", "Val R@1 per epoch", "training_val")
    with right_column:
        line_chart(view.epochs, "images_per_s", "Images/s per epoch", "training_speed")
    st.dataframe(view.epochs, hide_index=True)


follow()

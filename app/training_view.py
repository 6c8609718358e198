"""The Training page's logic, without Streamlit: a run's epochs, its pace and time left, and
whether it is training now.

It reads only what the run folder records (data_catalog.runs): progress.json while a
training runs (training.progress writes it), summary.json once it has finished (the only
record of runs trained before progress records existed), args.json for the planned epochs.
A record that is damaged or partial is named in a note and the rest is shown.

Alive or not: a killed training cannot say it stopped, so its progress.json keeps state
"training". It counts as training only while its record is fresh: younger than
STALE_MIN_S, or three times the longest quiet spell the trainer has had so far (a long
validation), whichever is longer; and, when the trainer ran on this host, while its
process exists.
"""

from __future__ import annotations

import datetime
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from data_catalog import runs

REFRESH_S = 5  # the page's refresh; the trainer records within an epoch every 5 s
STALE_MIN_S = 180.0
STALE_GAPS = 3
RECENT_EPOCHS = 3  # the pace (seconds per epoch) is the mean of the last few epochs

TRAINING, FINISHED, STOPPED, NO_RECORD = "training", "finished", "stopped", "no record"
EPOCH_COLUMNS = ["epoch", "group", "loss", "val_r1", "images_per_s", "seconds", "wall_s"]


@dataclass
class TrainingView:
    """What the page shows of one run."""

    run: str
    state: str
    detail: str  # one sentence: what the state rests on
    epochs: pd.DataFrame  # EPOCH_COLUMNS, one row per epoch done, by epoch
    epochs_num: int | None = None
    iterations_per_epoch: int | None = None
    batch_size: int | None = None
    current: dict | None = None  # the epoch in progress (training.progress)
    updated: float | None = None  # when the record read was written (seconds since 1970)
    notes: list[str] = field(default_factory=list)


def number(value) -> float | None:
    """A finite number from a record, else None (JSON may hold anything)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def count(value) -> int | None:
    """A whole number >= 0 from a record, else None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def clean_history(entries, source: str) -> tuple[pd.DataFrame, list[str]]:
    """The epochs of a history list; an entry without an epoch number or a loss is skipped
    with a note naming `source` (the file)."""
    notes: list[str] = []
    if not isinstance(entries, list):
        if entries is not None:
            notes.append(f"{source}: its history is not a list; no epochs read from it")
        return pd.DataFrame(columns=EPOCH_COLUMNS), notes
    rows: dict[int, dict] = {}
    for position, entry in enumerate(entries):
        epoch = count(entry.get("epoch")) if isinstance(entry, dict) else None
        loss = number(entry.get("loss")) if isinstance(entry, dict) else None
        if epoch is None or loss is None:
            notes.append(
                f"{source}: history entry {position} has no epoch number or no loss; skipped"
            )
            continue
        val = entry.get("val") if isinstance(entry.get("val"), dict) else {}
        rows[epoch] = {
            "epoch": epoch,
            "group": count(entry.get("group")),
            "loss": loss,
            "val_r1": number(val.get("R@1")),
            "images_per_s": number(entry.get("images_per_s")),
            "seconds": number(entry.get("seconds")),
            "wall_s": number(entry.get("wall_s")),
        }
    frame = pd.DataFrame([rows[e] for e in sorted(rows)], columns=EPOCH_COLUMNS)
    return frame, notes


def clean_current(current, source: str) -> tuple[dict | None, list[str]]:
    """The epoch in progress, or None with a note when it is not usable."""
    if current is None:
        return None, []
    epoch = count(current.get("epoch")) if isinstance(current, dict) else None
    if epoch is None:
        return None, [f"{source}: the current epoch's record has no epoch number; not shown"]
    return {
        "phase": str(current.get("phase") or "training"),
        "epoch": epoch,
        "group": count(current.get("group")),
        "iterations_done": count(current.get("iterations_done")) or 0,
        "loss": number(current.get("loss")),
        "seconds": number(current.get("seconds")),
        "images_per_s": number(current.get("images_per_s")),
    }, []


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # it exists under another user (PermissionError)
        return True
    return True


def stale_after_s(progress: dict) -> float:
    """How long a training may stay quiet before its record counts as abandoned."""
    gaps = [number(progress.get(key)) or 0.0 for key in ("longest_gap_s", "every_s")]
    return max(STALE_MIN_S, STALE_GAPS * max(gaps))


def liveness(progress: dict, now: float, host: str | None = None, alive=pid_alive):
    """(alive, why) for a record whose state is training."""
    updated = number(progress.get("updated"))
    if updated is None:
        return False, "its record has no time"
    age = max(0.0, now - updated)  # another host's clock may run ahead
    pid = count(progress.get("pid"))
    same_host = progress.get("host") == (host or socket.gethostname())
    if same_host and pid and not alive(pid):
        return False, f"its process ({pid}) has ended without finishing"
    limit = stale_after_s(progress)
    if age > limit:
        return False, f"no record for {format_duration(age)} (more than {format_duration(limit)})"
    return True, f"last record {format_duration(age)} ago"


def read_training(run_folder: Path, now: float, host: str | None = None, alive=pid_alive):
    """The run's epochs and state from its progress.json, summary.json and args.json."""
    run_folder = Path(run_folder)
    notes: list[str] = []
    with runs.collect_malformed() as malformed:
        progress, summary = runs.read_progress(run_folder), runs.read_summary(run_folder)
    notes.extend(malformed)
    progress = progress or {}
    args = runs.read_args(run_folder)
    planned = {
        key: count(progress.get(key)) or count(args.get(key))
        for key in ("epochs_num", "iterations_per_epoch", "batch_size")
    }
    if progress.get("state") == TRAINING:
        alive_now, why = liveness(progress, now, host, alive)
        state = TRAINING if alive_now else STOPPED
        detail = why if alive_now else f"{why}: it was killed or crashed"
    elif progress.get("state") == FINISHED or summary is not None:
        state, detail = FINISHED, "the training has finished"
    else:
        state = NO_RECORD
        detail = "no training record yet (progress.json appears once the training starts)"
    from_summary = state == FINISHED and summary is not None and "history" in summary
    source = run_folder / (runs.SUMMARY if from_summary else runs.PROGRESS)
    epochs, history_notes = clean_history(
        (summary if from_summary else progress).get("history"), str(source)
    )
    current, current_notes = (None, [])
    if state == TRAINING:
        current, current_notes = clean_current(progress.get("current"), str(source))
    updated = number(progress.get("updated"))
    if from_summary:
        updated = (run_folder / runs.SUMMARY).stat().st_mtime
    return TrainingView(
        run=run_folder.name,
        state=state,
        detail=detail,
        epochs=epochs,
        current=current,
        updated=updated,
        notes=notes + history_notes + current_notes,
        **planned,
    )


# --- pace and time left -----------------------------------------------------------------


def epochs_done(epochs: pd.DataFrame) -> int:
    return int(epochs["epoch"].max()) + 1 if len(epochs) else 0


def epoch_pace_s(epochs: pd.DataFrame, recent: int = RECENT_EPOCHS) -> float | None:
    """Seconds per epoch over the last `recent` epochs, validation included (wall_s); the
    training seconds alone where the records have no wall time."""
    if epochs.empty:
        return None
    wall = epochs["wall_s"].tolist()
    if all(w is not None and not math.isnan(w) for w in wall):
        # the first epoch's duration is its wall_s (measured from the start of the run)
        durations = [b - a for a, b in zip([0.0, *wall[:-1]], wall, strict=True)]
    else:
        durations = epochs["seconds"].dropna().tolist()
    durations = [d for d in durations[-recent:] if d > 0]
    return sum(durations) / len(durations) if durations else None


def current_fraction(view: TrainingView) -> float:
    """How much of the epoch in progress is done (its iterations), 0 when none is."""
    current = view.current
    if not current or not view.iterations_per_epoch or current["epoch"] != epochs_done(view.epochs):
        return 0.0
    return min(1.0, current["iterations_done"] / view.iterations_per_epoch)


def time_left_s(view: TrainingView, recent: int = RECENT_EPOCHS) -> float | None:
    """Seconds until the last epoch ends at the recent pace; None when unknown or not
    training. Before the first epoch ends, the pace is the current epoch's iterations."""
    if view.state != TRAINING or not view.epochs_num:
        return None
    remaining = view.epochs_num - epochs_done(view.epochs) - current_fraction(view)
    if remaining <= 0:
        return 0.0
    pace = epoch_pace_s(view.epochs, recent)
    current = view.current
    if pace is None and current and current["seconds"] and current["iterations_done"]:
        if view.iterations_per_epoch:
            per_iteration = current["seconds"] / current["iterations_done"]
            pace = per_iteration * view.iterations_per_epoch
    return None if pace is None else pace * remaining


def current_text(view: TrainingView) -> str:
    """One line on the epoch in progress: its phase, iterations and recent loss."""
    current = view.current or {}
    text = f"Epoch {current.get('epoch')}: {current.get('phase')}"
    if current.get("phase") == "training" and view.iterations_per_epoch:
        text += f", {current['iterations_done']} of {view.iterations_per_epoch} iterations"
        if current.get("loss") is not None:
            text += f", loss {current['loss']:.3f}"
    return text


def iterations(view: TrainingView) -> tuple[int, int] | None:
    """(iterations done, iterations planned), None when the record does not say."""
    if not view.iterations_per_epoch or not view.epochs_num:
        return None
    done = epochs_done(view.epochs) * view.iterations_per_epoch
    done += round(current_fraction(view) * view.iterations_per_epoch)
    return done, view.epochs_num * view.iterations_per_epoch


def images_per_s(view: TrainingView) -> float | None:
    """The current epoch's images/s while it trains, else the last epoch's."""
    if view.current and view.current["phase"] == "training" and view.current["images_per_s"]:
        return view.current["images_per_s"]
    rates = view.epochs["images_per_s"].dropna()
    return float(rates.iloc[-1]) if len(rates) else None


def metrics(view: TrainingView) -> dict[str, str]:
    """The page's headline numbers, label -> value."""
    steps = iterations(view)
    rate, left = images_per_s(view), time_left_s(view)
    return {
        "State": view.state,
        "Epochs": f"{epochs_done(view.epochs)} of {view.epochs_num or '?'}",
        f"Iterations of {steps[1]:,}" if steps else "Iterations": (
            f"{steps[0]:,}" if steps else "not recorded"
        ),
        "Images/s": f"{rate:.1f}" if rate else "unknown",
        "Time left": format_duration(left) if left is not None else "–",
    }


def caption(view: TrainingView) -> str:
    """What the state rests on, when the record was written, the best epoch, the wall time."""
    parts = [view.detail[:1].upper() + view.detail[1:] + "."]
    if view.updated is not None:
        when = datetime.datetime.fromtimestamp(view.updated, datetime.UTC)
        parts.append(f"Last record {when:%Y-%m-%d %H:%M:%S} UTC.")
    val = view.epochs["val_r1"].dropna() if len(view.epochs) else []
    if len(val):
        best = view.epochs.loc[val.idxmax()]
        parts.append(f"Best val R@1 {best['val_r1']:.1f} at epoch {int(best['epoch'])}.")
    wall = view.epochs["wall_s"].dropna() if len(view.epochs) else []
    if len(wall):
        so_far = " so far" if view.state == TRAINING else ""
        parts.append(
            f"{format_duration(float(wall.iloc[-1]))} of training{so_far}, validation included."
        )
    if view.state == TRAINING:
        parts.append(
            f"Time left: the remaining epochs at the pace of the last {RECENT_EPOCHS} "
            f"(validation included). Refreshed every {REFRESH_S} s."
        )
    return " ".join(parts)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# --- the runs -----------------------------------------------------------------------------


def training_runs(workspace: str | Path, now: float) -> pd.DataFrame:
    """Every run with a training record (progress.json or a summary with a history): the
    ones training now first, then the most recently recorded."""
    rows = []
    for folder in runs.run_folders(workspace):
        if not (folder / runs.PROGRESS).is_file():
            summary = runs.read_summary(folder) or {}
            if not summary.get("history"):
                continue
        view = read_training(folder, now)
        best = view.epochs["val_r1"].max() if len(view.epochs) else None
        rows.append(
            {
                "run": view.run,
                "state": view.state,
                "epochs": epochs_done(view.epochs),
                "epochs_num": view.epochs_num,
                "best_val_r1": None if best is None or math.isnan(best) else float(best),
                "updated": view.updated,
            }
        )
    frame = pd.DataFrame(
        rows, columns=["run", "state", "epochs", "epochs_num", "best_val_r1", "updated"]
    )
    frame["training_now"] = frame["state"] == TRAINING
    frame = frame.sort_values(["training_now", "updated"], ascending=False, na_position="last")
    return frame.drop(columns="training_now").reset_index(drop=True)


def run_label(row) -> str:
    planned = f" of {int(row['epochs_num'])}" if number(row["epochs_num"]) else ""
    return f"{row['run']} ({row['state']}, {row['epochs']}{planned} epochs)"

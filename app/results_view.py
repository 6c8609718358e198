"""The Results page's logic, without Streamlit: runs, recall at any threshold, failures.

The run folders are the source of truth (WORKSPACE/runs/<run>/): summary.json (training
history, best val R@1, test recalls), args.json (every flag), and one folder per evaluation,
eval_<set>_<queries>/ with results.json and predictions.csv (query, rank, prediction,
descriptor distance, correct). Grids of training.ablation and training.claims leave
runs/ablation_<grid>.json and runs/claims.json beside them.

Recall at another threshold needs no model: SF-XL names carry UTM, so the distance from each
query to each of its predictions is read from the two file names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.geo import distances_m
from core.recall import RECALL_VALUES, is_positive, recall_from_first_hits
from data_catalog import runs
from data_catalog.name_table import parse_paths

PAPER_THRESHOLD_M = 25.0
TRAIN_COMMAND = "make demo-model"
EVAL_COMMAND = (
    "python -m training.eval --dataset_folder data/synthetic_demo --workspace data "
    "--save_dir demo --resume_model data/runs/demo/best_model.pth --device cpu"
)
CLAIMS_COMMAND = "python -m training.claims --dataset_folder data/synthetic_demo --workspace data"


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a run on a test set and query folder."""

    run: str
    folder: Path  # eval_<set>_<queries>, or the run folder for a train summary's test
    test_set: str
    queries: str
    recalls: dict[str, float]
    settings: dict  # the flags of the evaluation (threshold, resizing, image size...)
    predictions: Path | None
    num_queries: int | None = None

    @property
    def label(self) -> str:
        return evaluation_label(self.run, self.test_set, self.queries)


def evaluation_label(run: str, test_set: str, queries: str) -> str:
    """An evaluation's name in charts and pickers. It names the test set: test and val both
    have a queries_v1, and one chart series per (run, queries) drew both as one."""
    return f"{run} / {Path(test_set).name} / {queries}"


def recall_bars(table: pd.DataFrame) -> pd.DataFrame:
    """runs_table() in long form, one row per evaluation and Recall@N, for the bar chart."""
    long = table.melt(
        id_vars=["run", "test_set", "queries"],
        value_vars=[f"R@{n}" for n in RECALL_VALUES],
        var_name="metric",
        value_name="recall",
    )
    labels = zip(long["run"], long["test_set"], long["queries"], strict=True)
    long["evaluation"] = [evaluation_label(*label) for label in labels]
    return long


def provenance(summary: dict) -> str:
    """Where a run's model was made: a shipped record (training.release) or this machine."""
    note = summary.get("release")
    if not isinstance(note, dict):
        return "made on this machine"
    machine = note.get("machine") if isinstance(note.get("machine"), dict) else {}
    commit = str(note.get("commit") or "unknown")[:10]
    return (
        f"recorded: trained {str(note.get('trained_until', '?'))[:10]} on "
        f"{machine.get('cpu', 'an unknown machine')}, {note.get('iterations', '?')} iterations "
        f"in {float(note.get('wall_time_s') or 0) / 60:.0f} min, commit {commit} "
        f"({note.get('command', 'training.release')})"
    )


def run_provenance(folder: Path) -> str:
    """provenance() of a run folder; a malformed summary.json is named instead."""
    with runs.collect_malformed() as found:
        summary = runs.read_summary(folder)
    return f"unknown. {malformed_note(found)}" if found else provenance(summary or {})


def malformed_note(found: list[str]) -> str:
    """One sentence naming the run files skipped (data_catalog.runs.collect_malformed)."""
    return (
        f"Skipped {len(found)} malformed run file{'s' if len(found) > 1 else ''} (fix or remove "
        f"them; the other runs are shown): {'; '.join(found)}."
    )


def show_malformed(placeholder, found: list[str]) -> None:
    """The note in a page's placeholder (st.empty()), when files were skipped."""
    if found:
        placeholder.warning(malformed_note(found))


def default_runs(names: list[str]) -> list[str]:
    """The runs shown first: not the grids' points (ablation_*), unless nothing else exists."""
    return [n for n in names if not n.startswith("ablation_")] or names


def list_runs(workspace: str | Path) -> pd.DataFrame:
    """One row per run: its kind, model, partition and the best val R@1 of its training."""
    rows = []
    for folder in runs.run_folders(workspace):
        args = runs.read_args(folder)
        summary = runs.read_summary(folder) or {}
        history = summary.get("history") or []
        rows.append(
            {
                "run": folder.name,
                "kind": summary.get("kind") or ("eval" if not history else "train"),
                **{flag: args.get(flag) for flag in RUN_FLAGS},
                "epochs": len(history),
                "best_val_r1": summary.get("best_val_recall1"),
                "evaluations": len(runs.results_files(folder)),
                "finished": bool(summary),
                "made": provenance(summary),
            }
        )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


# The flags of a run that its row shows, between its kind and its training's outcome.
RUN_FLAGS = (
    "backbone", "fc_output_dim", "pooling", "M", "alpha", "N", "L", "groups_num", "image_size",
)  # fmt: skip
RUN_COLUMNS = [
    "run", "kind", *RUN_FLAGS, "epochs", "best_val_r1", "evaluations", "finished", "made",
]  # fmt: skip


def list_evaluations(workspace: str | Path) -> list[Evaluation]:
    """Every evaluation with saved predictions, then the train summaries' tests without them."""
    found = []
    for folder in runs.run_folders(workspace):
        args = runs.read_args(folder)
        for results_file in runs.results_files(folder):
            result = runs.read_results(results_file)
            if not result:
                continue
            predictions = runs.predictions_file(results_file.parent)
            found.append(
                Evaluation(
                    run=folder.name,
                    folder=results_file.parent,
                    test_set=str(result.get("test_set", "")),
                    queries=str(result.get("queries_folder", "")),
                    recalls=result["recalls"],
                    settings=result.get("args") or args,
                    predictions=predictions,
                    num_queries=result.get("num_queries"),
                )
            )
        summary = runs.read_summary(folder) or {}
        tested = {(e.test_set, e.queries) for e in found if e.run == folder.name}
        test = summary.get("test_result") or {}
        if summary.get("test") and (test.get("test_set"), test.get("queries_folder")) not in tested:
            found.append(
                Evaluation(
                    run=folder.name,
                    folder=folder,
                    test_set=str(test.get("test_set") or args.get("test_set_folder") or ""),
                    queries=str(test.get("queries_folder") or args.get("queries_folder") or ""),
                    recalls=summary["test"],
                    settings=args,
                    predictions=None,
                    num_queries=test.get("num_queries"),
                )
            )
    return found


def settings_of(evaluation: Evaluation) -> dict:
    """The settings that decide whether two recalls can be compared."""
    s = evaluation.settings
    resized = bool(s.get("resize_test_imgs"))
    return {
        "threshold_m": float(s.get("positive_dist_threshold", PAPER_THRESHOLD_M)),
        "test_resize": f"shorter side {s.get('image_size')} px" if resized else "native",
        "queries": evaluation.queries,
        "backbone": s.get("backbone"),
        "descriptor_dim": s.get("fc_output_dim"),
    }


# --- recall from saved predictions, at any threshold ----------------------------------------


def utm_of_names(paths: pd.Series) -> np.ndarray:
    """[n, 2] UTM east/north from SF-XL file names (the bulk parser); NaN where a name
    carries none."""
    unique = [str(path) for path in pd.unique(paths)]
    names, rows = parse_paths(unique)
    utm = np.full((len(unique), 2), np.nan)
    utm[rows] = np.stack([names.east, names.north], axis=1)
    return utm[pd.Index(unique).get_indexer(paths.astype(str))].reshape(-1, 2)


def load_predictions(path: str | Path) -> pd.DataFrame:
    """predictions.csv with the distance in metres from each query to each prediction.

    `geo_m` is NaN where a name carries no position; `similarity` is the cosine similarity
    of the L2-normalised descriptors (the file's distance is faiss's squared L2).
    """
    frame = pd.read_csv(path)
    missing = {"query", "rank", "prediction", "distance"} - set(frame.columns)
    if missing:
        raise ValueError(f"it lacks the columns {sorted(missing)}: re-run training.eval")
    for column in ("rank", "distance"):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        odd = frame[column][numbers.isna()]
        if len(odd):
            raise ValueError(f"its {column} {odd.iloc[0]!r} is not a number: re-run training.eval")
        frame[column] = numbers
    query_utm = utm_of_names(frame["query"])
    prediction_utm = utm_of_names(frame["prediction"])
    frame["geo_m"] = distances_m(*query_utm.T, *prediction_utm.T)
    frame["similarity"] = 1.0 - frame["distance"] / 2.0
    # Names repeat (20 predictions per query, a database image in many answers): as
    # categories an evaluation takes a fifth of the memory, so the page keeps them all.
    frame = frame.astype({"query": "category", "prediction": "category"})
    return frame.sort_values(["query", "rank"], kind="stable").reset_index(drop=True)


def recall_at_threshold(
    predictions: pd.DataFrame, threshold_m: float, ns=RECALL_VALUES
) -> dict[str, float]:
    """Recall@N in percent (core.recall): queries with a prediction within threshold_m among
    their first N."""
    if predictions.empty:
        raise ValueError("no predictions to compute recall from")
    recalls = recall_from_first_hits(first_hit_ranks(predictions, threshold_m).to_numpy(), ns)
    return {f"R@{n}": value for n, value in recalls.items()}


def first_hit_ranks(predictions: pd.DataFrame, threshold_m: float) -> pd.Series:
    """Per query (the index, sorted): the rank of its first prediction within threshold_m,
    inf when none is (core.recall's first hits, from the names' positions)."""
    hit = is_positive(predictions["geo_m"], threshold_m)
    ranks = predictions["rank"].to_numpy()
    return pd.Series(np.where(hit, ranks, np.inf)).groupby(predictions["query"].to_numpy()).min()


def recall_curve(predictions: pd.DataFrame, thresholds) -> pd.DataFrame:
    """Recall@N for each threshold, long format (threshold_m, metric, value)."""
    rows = [
        {"threshold_m": float(t), "metric": metric, "value": value}
        for t in thresholds
        for metric, value in recall_at_threshold(predictions, t).items()
    ]
    return pd.DataFrame(rows)


def readable_predictions(evaluation: Evaluation, predictions_of=None) -> pd.DataFrame | None:
    """The evaluation's predictions, or None (the recorded recalls are used instead) when it
    saved none, a command running beside the app is replacing its folder right now, or the
    file is malformed (said by data_catalog.runs.malformed)."""
    if evaluation.predictions is None:
        return None
    try:
        return (predictions_of or load_predictions)(evaluation.predictions)
    except FileNotFoundError:
        return None
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as error:
        runs.malformed(evaluation.predictions, str(error).strip().splitlines()[0][:200])
        return None


# --- every evaluation's recall ------------------------------------------------------------


def runs_table(
    evaluations: list[Evaluation], threshold_m: float, predictions_of=load_predictions
) -> pd.DataFrame:
    """Recall@1/5/10/20 of every evaluation, at threshold_m where predictions were saved."""
    rows = []
    for evaluation in evaluations:
        settings = settings_of(evaluation)
        recalls = dict(evaluation.recalls)
        threshold = settings["threshold_m"]
        predictions = readable_predictions(evaluation, predictions_of)
        if predictions is not None:
            recalls = recall_at_threshold(predictions, threshold_m)
            threshold = threshold_m
        rows.append(
            {
                "run": evaluation.run,
                "test_set": evaluation.test_set,
                **settings,
                "threshold_m": threshold,
                **{f"R@{n}": recalls.get(f"R@{n}") for n in RECALL_VALUES},
                "recomputed": predictions is not None,
                "num_queries": evaluation.num_queries,
            }
        )
    columns = ["run", "test_set", "queries", "threshold_m", "test_resize", "backbone"]
    columns += ["descriptor_dim", *[f"R@{n}" for n in RECALL_VALUES], "recomputed", "num_queries"]
    return pd.DataFrame(rows, columns=columns)


def training_curves(workspace: str | Path, names: list[str] | None = None) -> pd.DataFrame:
    """Loss and val R@1 per epoch of each run's summary.json (or its last checkpoint's args)."""
    rows = []
    for folder in runs.run_folders(workspace):
        if names is not None and folder.name not in names:
            continue
        summary = runs.read_summary(folder) or {}
        for entry in summary.get("history") or []:
            rows.append(
                {
                    "run": folder.name,
                    "epoch": entry.get("epoch"),
                    "group": entry.get("group"),
                    "loss": entry.get("loss"),
                    "val_r1": (entry.get("val") or {}).get("R@1"),
                    "images_per_s": entry.get("images_per_s"),
                }
            )
    columns = ["run", "epoch", "group", "loss", "val_r1", "images_per_s"]
    return pd.DataFrame(rows, columns=columns)


def query_sets(evaluations: list[Evaluation]) -> list[str]:
    return sorted({e.queries for e in evaluations})


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """A table as CSV for download; list cells are joined with ' | '."""
    flat = frame.copy()
    for column in flat.columns:
        if flat[column].map(lambda v: isinstance(v, list)).any():
            flat[column] = flat[column].map(
                lambda v: " | ".join(map(str, v)) if isinstance(v, list) else v
            )
    return flat.to_csv(index=False).encode()

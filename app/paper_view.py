"""The Results page's comparison with the paper, without Streamlit: each run's recall beside
the paper's number measured alike (or saying what differs), the grids of training.ablation
and training.claims beside the paper's Tables 5-7 (the claims' verdicts: app.claims_view).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.recall import RECALL_VALUES
from data_catalog import runs
from data_catalog.paper import load_paper_results, paper_table, sfxl_query_set


def dataset_label(test_set: str | Path) -> str:
    """'SF-XL' when the test set looks like SF-XL's, else the dataset folder's name."""
    root = Path(str(test_set)).parent
    if (root / "metadata.json").is_file():  # written by data_catalog.synthetic
        return f"synthetic city {root.name}"
    name = root.name.lower().replace("-", "_")
    return "SF-XL" if "sf_xl" in name or "sfxl" in name else root.name or "unknown"


def differences(run_row: dict, paper_row: dict) -> list[str]:
    """Why a run's number and a paper number are not measured the same way (empty: same)."""
    notes = []
    dataset = dataset_label(run_row["test_set"])
    if dataset != "SF-XL":
        notes.append(f"dataset: {dataset} vs SF-XL")
    if float(run_row["threshold_m"]) != float(paper_row["threshold_m"]):
        notes.append(f"threshold {run_row['threshold_m']:g} m vs {paper_row['threshold_m']:g} m")
    if run_row["test_resize"] != paper_row["test_resize"]:
        notes.append(f"test images {run_row['test_resize']} vs {paper_row['test_resize']}")
    mine, theirs = str(run_row.get("backbone") or ""), str(paper_row.get("backbone") or "")
    if theirs and mine.replace("-", "").lower() != theirs.replace("-", "").lower():
        notes.append(f"backbone {mine or '?'} vs {theirs}")
    dim = paper_row.get("descriptor_dim")
    if not pd.isna(dim) and run_row.get("descriptor_dim") != dim:
        notes.append(f"{run_row.get('descriptor_dim')}-D vs {dim}-D")
    return notes


def runs_next_to_paper(runs: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each run's recall beside the paper's CosPlace number on the same query set.

    The `note` column lists every setting that differs (dataset, threshold, resizing,
    backbone, dimension); it is empty only when the two numbers are measured alike.
    """
    paper = load_paper_results() if paper is None else paper
    cosplace = paper[(paper["method"] == "CosPlace") & paper["table"].isin([4, 5])]
    rows = []
    for run_row in runs.to_dict("records"):
        test_set = sfxl_query_set(run_row["test_set"], run_row["queries"])
        for n in RECALL_VALUES:
            metric = f"R@{n}"
            same = (cosplace["test_set"] == test_set) & (cosplace["metric"] == metric)
            reference = cosplace[same]
            if test_set == "SF-XL val":  # Table 5: CosPlace's own row
                reference = reference[(reference["alpha"] == 30) & (reference["N"] == 5)]
            paper_row = reference.iloc[0].to_dict() if len(reference) else None
            rows.append(
                {
                    "run": run_row["run"],
                    "test_set": Path(str(run_row["test_set"])).name,
                    "queries": run_row["queries"],
                    "metric": metric,
                    "run_value": run_row[metric],
                    "run_threshold_m": run_row["threshold_m"],
                    "run_test_resize": run_row["test_resize"],
                    "paper_table": paper_row["table"] if paper_row else None,
                    "paper_test_set": test_set if paper_row else None,
                    "paper_value": paper_row["value"] if paper_row else None,
                    "paper_threshold_m": paper_row["threshold_m"] if paper_row else None,
                    "paper_test_resize": paper_row["test_resize"] if paper_row else None,
                    "note": "; ".join(differences(run_row, paper_row))
                    if paper_row
                    else "the paper reports no such number",
                }
            )
    return pd.DataFrame(rows)


# --- grids: Table 5, dimension, train size, pooling ----------------------------------------


def load_grids(workspace: str | Path) -> pd.DataFrame:
    """Every point of every recorded grid (runs/ablation_*.json), one row per point."""
    rows = []
    for path in runs.grid_files(workspace):
        points = runs.read_json(path)
        if points is None:
            continue
        if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
            runs.malformed(path, "not a list of grid points (JSON objects)")
            continue
        for row in points:
            row = {k: v for k, v in row.items() if k != "args"}
            row["grid_file"] = path.name
            rows.append(row)
    return pd.DataFrame(rows)


def grid_rows(grids: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Points of the grids of one kind (table5, dimension, train_size, pooling)."""
    if grids.empty:
        return grids
    return grids[grids["grid"].astype(str).str.endswith(kind)].reset_index(drop=True)


def table5_view(grids: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 5: each (M, alpha, N, L) point's val R@1 beside the paper's (SF-XL val, ResNet-18)."""
    points = grid_rows(grids, "table5")
    if points.empty:
        return pd.DataFrame()
    reference = paper_table(5, paper)
    out = points[["grid", "point", "M", "alpha", "N", "L", "groups_num", "val_r1", "test_r1"]]
    out = out.copy()
    paper_r1 = []
    for row in out.itertuples():
        match = reference[
            (reference["M"] == row.M)
            & (reference["alpha"] == row.alpha)
            & (reference["N"] == row.N)
            & (reference["L"] == row.L)
        ]
        paper_r1.append(float(match["value"].iloc[0]) if len(match) else None)
    out["paper_val_r1"] = paper_r1
    out["note"] = "paper: SF-XL val, ResNet-18 at 512 px, full training; run: its own val set"
    return out


def dimension_view(grids: pd.DataFrame) -> pd.DataFrame:
    """Recall against descriptor dimension, with the memory per million images: the points of
    the dimension grids, and a claims grid's CosPlace point (Table 5 row), its 512-D point."""
    points = [row for _, row in grid_rows(grids, "dimension").iterrows()]
    points += [
        row
        for _, row in grid_rows(grids, "claims_table5").iterrows()
        if row["point"] == "M10_alpha30_N5_L2"
    ]
    rows = [{"source": row["grid"], "run": Path(str(row["run_folder"])).name,
             "fc_output_dim": int(row["fc_output_dim"]), "val_r1": row["val_r1"],
             "test_r1": row.get("test_r1")} for row in points]  # fmt: skip
    out = pd.DataFrame(rows, columns=["source", "run", "fc_output_dim", "val_r1", "test_r1"])
    # float32 descriptors of a million images: dim x 4 bytes x 1e6, in MB (1e6 bytes)
    out["memory_mb_per_million"] = out["fc_output_dim"] * 4.0
    return out.sort_values(["source", "fc_output_dim"]).reset_index(drop=True)


def train_size_view(grids: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Recall against the number of training images (Table 6), the paper's beside it."""
    rows = []
    for _, row in grid_rows(grids, "train_size").iterrows():
        rows.append({"source": row["grid"], "train_images": int(row["train_images"]),
                     "train_fraction": row["train_fraction"], "val_r1": row["val_r1"],
                     "test_r1": row.get("test_r1")})  # fmt: skip
    for _, row in grid_rows(grids, "claims_table5").iterrows():
        if row["point"] == "M10_alpha30_N5_L2" and any(
            r["source"].startswith("claims") for r in rows
        ):
            rows.append({"source": "claims_train_size", "train_images": int(row["train_images"]),
                         "train_fraction": 1.0, "val_r1": row["val_r1"],
                         "test_r1": row.get("test_r1")})  # fmt: skip
    out = pd.DataFrame(rows, columns=["source", "train_images", "train_fraction", "val_r1"])
    if "test_r1" not in out:
        out["test_r1"] = pd.Series(dtype=float)
    paper = paper_table(6, paper)
    reference = paper[paper["test_set"] == "Pitts30k"][["train_images", "value"]]
    reference = reference.rename(columns={"value": "paper_pitts30k_r1"})
    reference["source"] = "paper Table 6 (Pitts30k R@1, trained on SF-XL subsets)"
    return pd.concat([out, reference], ignore_index=True).sort_values(
        ["source", "train_images"], kind="stable"
    )


def pooling_view(grids: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Pooling points (Table 7) beside the paper's Pitts30k R@1 for the same pooling."""
    reference = paper_table(7, paper)
    reference = reference[reference["test_set"] == "Pitts30k"].set_index("pooling")["value"]
    points = grid_rows(grids, "pooling")
    out = reference.rename("paper_pitts30k_r1").reset_index()
    if not points.empty:
        mine = points[["grid", "pooling", "val_r1", "test_r1"]]
        out = out.merge(mine, on="pooling", how="left")
    out["note"] = "paper: ResNet-18 on SF-XL tested on Pitts30k; run: its own test set"
    return out

"""The paper's claims over seeds, for the Results page: recorded ones (shipped in the repo by
training.release claims) beside those made on this machine.

Recall is recomputed at the page's threshold from each evaluation's saved predictions, then
averaged over the seeds of a point; the spread is the sample standard deviation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from app import results_view as rv
from data_catalog import runs

# ablation_claims_<grid>_<point>_seed<k>: the run folders training.claims writes
CLAIMS_RUN = re.compile(
    r"^ablation_claims_(?P<grid>table5|dimension|train_size|untrained)(?:_(?P<point>.+?))?"
    r"_seed(?P<seed>\d+)$"
)


@dataclass(frozen=True)
class ClaimsSource:
    """One set of claims results: a folder laid out like a workspace."""

    label: str  # "recorded" or "this machine"
    folder: Path
    provenance: str  # who made it, when, where, with which command


def recorded_provenance(folder: Path) -> str:
    """The record.json of recorded claims as one line (empty if there is none)."""
    try:
        record = json.loads((Path(folder) / "record.json").read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(record, dict):
        return ""
    machine = record.get("machine") if isinstance(record.get("machine"), dict) else {}
    minutes = _number(record.get("wall_time_s")) / 60
    return (
        f"recorded {str(record.get('finished', '?'))[:10]} on {machine.get('cpu', '?')} "
        f"({machine.get('cores', '?')} cores) in {minutes:.0f} min, commit "
        f"{str(record.get('commit') or '?')[:10]}: {record.get('command', '?')}"
    )


def claims_sources(workspace: Path, recorded: Path) -> list[ClaimsSource]:
    """Recorded claims first (when shipped), then this machine's (when run here)."""
    sources = []
    if isinstance(load_claims(recorded), dict):
        sources.append(ClaimsSource("recorded", recorded, recorded_provenance(recorded)))
    if isinstance(load_claims(workspace), dict):
        sources.append(ClaimsSource("this machine", workspace, f"made in {workspace}"))
    return sources


def seed_recalls(
    evaluations: list[rv.Evaluation], threshold_m: float, predictions_of
) -> pd.DataFrame:
    """R@1 and R@5 at threshold_m of every claims evaluation, one row per seed."""
    claims_evaluations = [e for e in evaluations if CLAIMS_RUN.match(e.run)]
    table = rv.runs_table(claims_evaluations, threshold_m, predictions_of)
    columns = ["grid", "point", "seed", "evaluated_on", "R@1", "R@5"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    parts = table["run"].str.extract(CLAIMS_RUN)
    table["grid"], table["point"] = parts["grid"], parts["point"].fillna("untrained")
    table["seed"] = parts["seed"].astype(int)
    table["evaluated_on"] = (
        table["test_set"].map(lambda p: Path(str(p)).name) + "/" + table["queries"].astype(str)
    )
    return table[columns]


def over_seeds(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each point and evaluation."""
    columns = ["grid", "point", "evaluated_on", "R@1", "R@1 std", "R@5", "R@5 std", "seeds"]
    if per_seed.empty:
        return pd.DataFrame(columns=columns)
    grouped = per_seed.groupby(["grid", "point", "evaluated_on"], sort=True)
    out = grouped[["R@1", "R@5"]].agg(["mean", "std"])
    out.columns = ["R@1", "R@1 std", "R@5", "R@5 std"]
    out["seeds"] = grouped["seed"].nunique()
    return out.reset_index()[columns].round(2)


def load_claims(workspace: str | Path) -> dict | None:
    """claims.json, or None when it is missing or not the shape training.claims writes."""
    path = runs.claims_file(workspace)
    data = runs.read_json(path)
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("claims", {}), dict):
        runs.malformed(path, "not the object of claims training.claims writes")
        return None
    return data


def _number(value) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def budget_caption(claims: dict) -> str:
    """The budget and time of a claims run, as one line (odd values are left out)."""
    budget = claims.get("budget") if isinstance(claims.get("budget"), dict) else {}
    settings = ", ".join(f"{k}={v}" for k, v in budget.items())
    return (
        f"Reduced budget on {claims.get('dataset_folder', '?')} ({settings}); "
        f"{_number(claims.get('seconds')) / 60:.0f} min wall, "
        f"{_number(claims.get('cpu_seconds')) / 60:.0f} CPU-min"
    )


def memory_table(claims: dict | None) -> pd.DataFrame:
    claim = (claims or {}).get("claims", {}).get("memory")
    if not claim:
        return pd.DataFrame()
    out = pd.DataFrame(claim["rows"])
    keep = ["config", "tuples", "images", "seconds", "peak_rss_mib", "step_rss_mib"]
    return out[[c for c in keep if c in out]]


def verdict_table(claims: dict | None) -> pd.DataFrame:
    """One row per claim: its verdict on the headline metric and on every evaluated set
    (claims.json of one seed, from before verdicts by margin, say holds / does not hold)."""
    columns = ["claim", "verdict", "decided on", "by set"]
    rows = []
    for name, claim in (claims or {}).get("claims", {}).items():
        if not isinstance(claim, dict):
            continue
        verdict = claim.get("verdict") or runs.VERDICTS.get(claim.get("holds"), "not measured")
        by_set = "; ".join(f"{k}: {v}" for k, v in (claim.get("by_metric") or {}).items())
        rows.append(
            {"claim": name, "verdict": verdict, "decided on": claim.get("metric"), "by set": by_set}
        )
    return pd.DataFrame(rows, columns=columns)

"""Runs and their evaluation results in the catalog, for the app to list and plot.

A run is a folder under WORKSPACE/runs (training, ablation point, or an evaluation of a
downloaded checkpoint); a result is one evaluation of it on one test set and query folder.
Recording the same (run, test set, queries) again replaces the earlier result.

The run folders are the source of truth: `python -m data_catalog.sync` records here what
they hold (summary.json, eval_*/results.json), for results a busy catalog could not take.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pandas as pd

from core.recall import RECALL_VALUES

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS runs (
        run VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,            -- train, eval, ablation, baseline
        folder VARCHAR NOT NULL,
        backbone VARCHAR,
        fc_output_dim INTEGER,
        settings JSON,                    -- every flag of the run
        created TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS results (
        run VARCHAR NOT NULL,
        test_set VARCHAR NOT NULL,
        queries VARCHAR NOT NULL,
        num_database INTEGER,
        num_queries INTEGER,
        r1 DOUBLE, r5 DOUBLE, r10 DOUBLE, r20 DOUBLE,
        predictions VARCHAR,              -- predictions.csv of this evaluation
        created TIMESTAMP NOT NULL,
        PRIMARY KEY (run, test_set, queries)
    )""",
]


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    for statement in SCHEMA:
        con.execute(statement)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def record_evaluation(
    con: duckdb.DuckDBPyConnection,
    run: str,
    kind: str,
    folder: str,
    settings: dict,
    result: dict | None,
    created: datetime | None = None,
) -> None:
    """A run and (if given) one result as run folders write it, in one transaction.

    result: test_set, queries_folder, num_database, num_queries, recalls {"R@n": v},
    predictions (training.eval.test_result's dict).
    """
    created = created or _now()
    create_schema(con)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                run,
                kind,
                folder,
                settings.get("backbone"),
                settings.get("fc_output_dim"),
                json.dumps(settings, default=str),
                created,
            ],
        )
        if result is not None:
            test_set, queries = result["test_set"], result["queries_folder"]
            # {"R@1": v, ...} as run folders write it -> {1: v, ...}
            recalls = {int(k.removeprefix("R@")): float(v) for k, v in result["recalls"].items()}
            con.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run,
                    test_set,
                    queries,
                    result["num_database"],
                    result["num_queries"],
                    *(recalls.get(n) for n in RECALL_VALUES),  # the r1..r20 columns
                    result.get("predictions"),
                    created,
                ],
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def list_results(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every result with its run's model, newest first (empty before the first run)."""
    found = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    tables = {row[0] for row in found}
    if not {"runs", "results"} <= tables:
        return pd.DataFrame(columns=["run", "kind", "test_set", "queries", "r1", "r5", "r10"])
    return con.execute(
        """SELECT r.run, u.kind, u.backbone, u.fc_output_dim, r.test_set, r.queries,
                  r.num_database, r.num_queries, r.r1, r.r5, r.r10, r.r20, r.predictions,
                  r.created
           FROM results r LEFT JOIN runs u USING (run)
           ORDER BY r.created DESC"""
    ).df()

"""Runs and their evaluation results in the catalog, for the app to list and plot.

A run is a folder under WORKSPACE/runs (training, ablation point, or an evaluation of a
downloaded checkpoint); a result is one evaluation of it on one test set and query folder.
Recording the same (run, test set, queries) again replaces the earlier result.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pandas as pd

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


def record_run(
    con: duckdb.DuckDBPyConnection, run: str, kind: str, folder: str, settings: dict
) -> None:
    create_schema(con)
    con.execute(
        "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            run,
            kind,
            folder,
            settings.get("backbone"),
            settings.get("fc_output_dim"),
            json.dumps(settings, default=str),
            datetime.now(UTC).replace(tzinfo=None),
        ],
    )


def record_result(
    con: duckdb.DuckDBPyConnection,
    run: str,
    test_set: str,
    queries: str,
    recalls: dict[int, float],
    num_database: int,
    num_queries: int,
    predictions: str | None = None,
) -> None:
    create_schema(con)
    con.execute(
        "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run,
            test_set,
            queries,
            num_database,
            num_queries,
            recalls.get(1),
            recalls.get(5),
            recalls.get(10),
            recalls.get(20),
            predictions,
            datetime.now(UTC).replace(tzinfo=None),
        ],
    )


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

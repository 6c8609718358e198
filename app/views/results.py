"""Results: runs next to the paper, ablations, curves, a threshold slider, the failure browser.

The logic lives in app/results_view.py; this file only lays it out.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from app import claims_view as cv
from app import failure_cases as fc
from app import paper_view as pv
from app import results_view as rv
from app import view_state
from app.catalog_reader import CatalogBusyError, CatalogMissingError
from app.resources import recorded_results, thumbnail_columns
from app.workspace import catalog_path, recorded_claims_dir, workspace_dir
from data_catalog import runs as run_files
from data_catalog.paper import load_paper_results

st.title("Results")
workspace = workspace_dir()
# Run files of the wrong shape are skipped, and named here once the page has read them all.
notice = st.empty()


def export(frame: pd.DataFrame, name: str, show: bool = True) -> None:
    """The table (unless the page shows it otherwise) and a button to download it as CSV."""
    if show:
        st.dataframe(frame, hide_index=True)
    st.download_button(
        f"Download {name}.csv",
        rv.to_csv_bytes(frame),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"export_{name}",
    )


# Shared, not copied, by every rerun and session (nothing modifies them), and enough entries
# for a workspace's every evaluation: with 64 copied entries a rerun of the demo workspace
# (186 evaluations with the recorded claims) read most files again, about 25 s.
@st.cache_resource(max_entries=1024, show_spinner="Reading predictions…")
def cached_predictions(path: str, mtime: float) -> pd.DataFrame:
    return rv.load_predictions(path)


def predictions_of(path: Path) -> pd.DataFrame:
    return cached_predictions(str(path), path.stat().st_mtime)


@st.cache_data(max_entries=16, show_spinner=False)
def cached_database(test_set: str) -> tuple[list[str], object]:
    return fc.database_utm(test_set)


@st.cache_data(show_spinner=False)
def paper_results() -> pd.DataFrame:
    return load_paper_results()


def show_claims(source: cv.ClaimsSource, threshold: int) -> None:
    """A set of claims: verdicts, recall over seeds with error bars, memory, failed points."""
    claims = cv.load_claims(source.folder) or {}
    st.markdown(f"#### {source.label.capitalize()}")
    st.caption(
        f"{source.provenance}. {cv.budget_caption(claims)}. A claim is decided only when the "
        "gap between means exceeds both points' standard deviations over seeds; otherwise it "
        "is undecided."
    )
    verdicts = cv.verdict_table(claims)
    export(verdicts, f"claims_{source.label.replace(' ', '_')}")
    per_seed = cv.seed_recalls(rv.list_evaluations(source.folder), threshold, predictions_of)
    spread = cv.over_seeds(per_seed)
    if not spread.empty:
        st.markdown(f"**Recall@1 at {threshold} m, mean ± std over seeds** (recomputed)")
        spread["point"] = spread["grid"] + " " + spread["point"]
        figure = px.bar(
            spread, x="point", y="R@1", error_y="R@1 std", color="evaluated_on",
            barmode="group", range_y=[0, 100],
        )  # fmt: skip
        st.plotly_chart(figure, key=f"claims_bars_{source.label}")
        export(spread, f"claims_over_seeds_{source.label.replace(' ', '_')}")
    memory = cv.memory_table(claims)
    if not memory.empty:
        st.markdown("**(b) Training memory at equal batch** (benchmarks.training_memory)")
        st.dataframe(memory, hide_index=True)
    if isinstance(claims.get("failed"), list) and claims["failed"]:
        st.warning("Failed points: " + "; ".join(map(str, claims["failed"])))


def show_failures(evaluation: rv.Evaluation, predictions: pd.DataFrame) -> None:
    wrong = fc.failures(predictions, threshold, cached_database(evaluation.test_set))
    st.caption(
        f"{len(wrong)} of {predictions['query'].nunique()} queries have their top-1 "
        f"farther than {threshold} m; worst first."
    )
    st.dataframe(wrong.drop(columns=["missed_positives"]), hide_index=True)
    export(wrong, "failures", show=False)
    root = Path(evaluation.test_set)
    shown_failures = st.number_input(
        "Failures shown with thumbnails", 0, 50, min(5, len(wrong)), key="fail_count"
    )
    for row in wrong.head(int(shown_failures)).itertuples():
        st.markdown(f"**{Path(row.query).name}**: top-1 is {row.top1_error_m:.0f} m off")
        tiles = [(row.query, "query")]
        tiles += [
            (p, f"#{i + 1}: {e:.0f} m")
            for i, (p, e) in enumerate(zip(row.predictions, row.prediction_errors_m, strict=True))
        ]
        tiles += [(p, "missed positive") for p in row.missed_positives[:3]]
        thumbnail_columns(st.columns(len(tiles)), root, tiles, 128)

    st.subheader("Possible label errors")
    suspects = fc.possible_label_errors(predictions, threshold)
    st.caption(
        "Pairs as similar as a typical correct match (cosine similarity ≥ "
        f"{suspects.attrs.get('similarity_bar', float('nan')):.3f}) yet more than "
        f"{threshold} m apart: a wrong position label, or a look-alike place, to review."
    )
    export(suspects, "possible_label_errors")


with run_files.collect_malformed() as malformed:
    runs = rv.list_runs(workspace)
    evaluations = rv.list_evaluations(workspace)
    grids = pv.load_grids(workspace)
    claim_sources = cv.claims_sources(workspace, recorded_claims_dir())

    if runs.empty and grids.empty and not claim_sources:
        st.info(
            f"No run in {workspace / 'runs'} yet. Train one with `{rv.TRAIN_COMMAND}` and "
            f"evaluate it with `{rv.EVAL_COMMAND}`, or record the paper's claims on the demo "
            f"city with `{rv.CLAIMS_COMMAND}` (under an hour on 2 CPU cores)."
        )
        rv.show_malformed(notice, malformed)
        st.stop()

    threshold = view_state.number(
        "Distance threshold for a correct prediction (m)", 1, 100, "threshold", 25, st.slider,
        step=1, help="Recall@N is recomputed from each run's saved predictions (positions from "
        "the file names). The paper uses 25 m.",
    )  # fmt: skip
    view_state.publish(threshold=threshold)

    names = sorted({e.run for e in evaluations})
    shown = st.multiselect(
        "Runs shown", names, default=rv.default_runs(names), key="results_runs",
        help="Grid runs (ablation_*) are summarised in the Claims and Ablations tabs; add them "
        "here to see each one.",
    )  # fmt: skip
    chosen = [e for e in evaluations if e.run in shown]

    tabs = st.tabs(
        ["Runs vs paper", "Claims", "Ablations", "Training curves", "Failures", "Paper tables"]
    )

    with tabs[0]:
        st.subheader("Recall@N of every evaluation")
        if not chosen:
            st.info(f"No evaluation recorded yet: evaluate a run with `{rv.EVAL_COMMAND}`.")
        else:
            table = rv.runs_table(chosen, threshold, predictions_of)
            st.caption(
                f"Recomputed at {threshold} m where predictions were saved (`recomputed`); "
                "otherwise the recall recorded at the run's own threshold."
            )
            export(table, "runs_recall")
            figure = px.bar(
                rv.recall_bars(table),
                x="metric",
                y="recall",
                color="evaluation",
                barmode="group",
                range_y=[0, 100],
            )
            st.plotly_chart(figure, key="runs_bar")

            curves = []
            for evaluation in chosen:
                predictions = rv.readable_predictions(evaluation, predictions_of)
                if predictions is None:
                    continue
                curve = rv.recall_curve(predictions, range(5, 101, 5))
                curve["evaluation"] = evaluation.label
                curves.append(curve[curve["metric"] == "R@1"])
            if curves:
                curve = pd.concat(curves)
                figure = px.line(
                    curve, x="threshold_m", y="value", color="evaluation", markers=True
                )
                figure.add_vline(x=threshold, line_dash="dash")
                figure.update_layout(yaxis_title="R@1 (%)", xaxis_title="threshold (m)")
                st.plotly_chart(figure, key="threshold_curve")

            st.subheader("Next to the paper")
            side = pv.runs_next_to_paper(table, paper_results())
            st.caption(
                "The paper's CosPlace on the same query set (SF-XL test v1/v2: Table 4, VGG-16, "
                "512-D; val: Table 5, ResNet-18). `note` lists every setting that differs; "
                "numbers with a note are not measured alike."
            )
            export(side, "runs_vs_paper")

    with tabs[1]:
        st.subheader("The paper's claims on this city")
        if not claim_sources:
            st.info(f"Not recorded yet: run `{rv.CLAIMS_COMMAND}`.")
        for source in claim_sources:
            show_claims(source, threshold)

    with tabs[2]:
        st.subheader("Table 5: groups against naive partitions (M, alpha, N, L)")
        table5 = pv.table5_view(grids, paper_results())
        if table5.empty:
            st.info(
                "No Table 5 grid yet: `python -m training.ablation --grid table5 --dataset_folder "
                f"DIR ...` or `{rv.CLAIMS_COMMAND}`."
            )
        else:
            export(table5, "table5")
            long = table5.melt(
                id_vars=["grid", "point"], value_vars=["val_r1", "paper_val_r1"], value_name="R@1"
            )
            figure = px.bar(long, x="point", y="R@1", color="variable", barmode="group")
            st.plotly_chart(figure, key="table5_bar")

        st.subheader("Descriptor dimension: recall and memory per million images")
        dims = pv.dimension_view(grids)
        if dims.empty:
            st.info("No dimension grid yet: `python -m training.ablation --grid dimension ...`.")
        else:
            export(dims, "dimension")
            left, right = st.columns(2)
            recall = px.line(
                dims, x="fc_output_dim", y=["test_r1", "val_r1"], markers=True, log_x=True
            )
            left.plotly_chart(recall, key="dim_recall")
            memory = px.line(dims, x="fc_output_dim", y="memory_mb_per_million", markers=True)
            memory.update_layout(yaxis_title="MB per million images (float32)")
            right.plotly_chart(memory, key="dim_memory")

        st.subheader("Training-set size (Table 6)")
        sizes = pv.train_size_view(grids, paper_results())
        st.caption("The paper's rows are Pitts30k R@1 after training on SF-XL subsets.")
        export(sizes, "train_size")
        plotted = sizes.melt(
            id_vars=["source", "train_images"],
            value_vars=[c for c in ("test_r1", "paper_pitts30k_r1") if c in sizes],
            value_name="R@1",
        ).dropna(subset=["R@1"])
        figure = px.line(
            plotted, x="train_images", y="R@1", color="source", markers=True, log_x=True
        )
        st.plotly_chart(figure, key="size_line")

        st.subheader("Pooling (Table 7)")
        pooling = pv.pooling_view(grids, paper_results())
        export(pooling, "pooling")

    with tabs[3]:
        st.subheader("Training curves")
        curves = rv.training_curves(workspace, shown or None)
        if curves.empty:
            st.info("No training history among the runs shown (evaluation-only runs have none).")
        else:
            left, right = st.columns(2)
            left.plotly_chart(px.line(curves, x="epoch", y="loss", color="run", markers=True))
            right.plotly_chart(px.line(curves, x="epoch", y="val_r1", color="run", markers=True))
            export(curves, "training_curves", show=False)

    with tabs[4]:
        st.subheader("Failure browser")
        with_predictions = [e for e in chosen if e.predictions is not None]
        if not with_predictions:
            st.info(f"Failures need saved predictions: evaluate a run with `{rv.EVAL_COMMAND}`.")
        else:
            query_set = st.selectbox(
                "Query set", rv.query_sets(with_predictions), key="fail_queries"
            )
            candidates = [e for e in with_predictions if e.queries == query_set]
            labels = [e.label for e in candidates]
            label = st.selectbox("Evaluation", labels, key="fail_evaluation")
            evaluation = candidates[labels.index(label)]
            predictions = rv.readable_predictions(evaluation, predictions_of)
            if predictions is None:
                st.warning(
                    f"{evaluation.predictions} cannot be read (being rewritten, or malformed)."
                )
            else:
                show_failures(evaluation, predictions)

    with tabs[5]:
        st.subheader("The paper's Tables 3 to 10")
        paper = paper_results()
        number = st.selectbox("Table", sorted(paper["table"].unique()), key="paper_table")
        table = paper[paper["table"] == number]
        st.dataframe(table.dropna(axis=1, how="all"), hide_index=True)
        export(table, f"paper_table{number}", show=False)
        with st.expander("Results recorded in the catalog"):
            # The catalog only indexes the run folders read above: when it is missing, or
            # busy after the pages' short wait (an ingest or a training run writing), say so
            # in one line and keep everything else.
            try:
                st.dataframe(recorded_results(catalog_path(workspace)), hide_index=True)
            except CatalogMissingError as error:
                st.info(str(error))
            except CatalogBusyError as error:
                st.info(f"{error} The tables above are read from the run folders and are complete.")
    rv.show_malformed(notice, malformed)

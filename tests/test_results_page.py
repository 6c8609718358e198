"""Results page: plain functions on a hand-made workspace, and AppTest with 0, 1 and 2 runs.

The predictions fixture puts every image at a known UTM position (in its SF-XL name), so the
recall at each threshold is worked out by hand below.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from app_fixtures import catalog_write_lock
from PIL import Image
from streamlit.testing.v1 import AppTest

from app import claims_view
from app import failure_cases as fc
from app import paper_view as pv
from app import results_view as rv
from data_catalog import catalog
from data_catalog.names import make_name
from training import claims, release
from training import claims_verdicts as cv

PAGE = str(Path(__file__).resolve().parents[1] / "app" / "views" / "results.py")
EAST, NORTH = 550_000.0, 4_180_000.0
# Query -> metres east of EAST of its predictions, best first (every image on one street).
# q0 at 0 m: predictions 10, 40, 70 m away; q1 at 200 m: 30, 5, 60 m away.
QUERIES = {"q0": 0.0, "q1": 200.0}
PREDICTIONS = {"q0": [10.0, 40.0, 70.0], "q1": [230.0, 205.0, 260.0]}
DESCRIPTOR_DISTANCES = {"q0": [0.2, 0.5, 0.9], "q1": [0.1, 0.3, 0.8]}
EXTRA_DATABASE = [3.0]  # a database image 3 m from q0 that no prediction found


def image_name(offset_m: float, pano: str, heading: int | None = 0) -> str:
    return make_name(EAST + offset_m, NORTH, 10, "S", 37.76, -122.43, pano_id=pano,
                     heading=heading, timestamp="201306")  # fmt: skip


def write_image(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (shade, 100, 150)).save(path)


def make_evaluation(workspace: Path, run: str, queries: str = "queries_v1") -> Path:
    """A run folder with summary.json, args.json and an evaluation with predictions.csv."""
    city = workspace / "city"
    (city / "metadata.json").parent.mkdir(parents=True, exist_ok=True)
    (city / "metadata.json").write_text("{}")
    test = city / "test"
    run_folder = workspace / "runs" / run
    out = run_folder / f"eval_test_{queries}"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for q, east in QUERIES.items():
        query = f"{queries}/{image_name(east, q, None)}"
        write_image(test / query, 20)
        for rank, (offset, dist) in enumerate(
            zip(PREDICTIONS[q], DESCRIPTOR_DISTANCES[q], strict=True)
        ):
            prediction = f"database/{image_name(offset, f'{q}p{rank}')}"
            write_image(test / prediction, 200)
            rows.append([query, rank, prediction, dist, int(abs(offset - east) <= 25)])
    for offset in EXTRA_DATABASE:
        write_image(test / "database" / image_name(offset, "extra"), 90)
    with open(out / "predictions.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["query", "rank", "prediction", "distance", "correct"])
        writer.writerows(rows)
    args = {"backbone": "ResNet18", "fc_output_dim": 64, "pooling": "gem", "M": 10, "alpha": 30,
            "N": 5, "L": 2, "groups_num": 8, "image_size": 64, "resize_test_imgs": True,
            "positive_dist_threshold": 25.0, "queries_folder": queries}  # fmt: skip
    results = {"test_set": str(test), "queries_folder": queries, "num_database": 7,
               "num_queries": 2, "recalls": {"R@1": 50.0, "R@5": 100.0, "R@10": 100.0,
               "R@20": 100.0}, "args": args}  # fmt: skip
    (out / "results.json").write_text(json.dumps(results))
    (run_folder / "args.json").write_text(json.dumps(args))
    history = [
        {"epoch": e, "group": e, "loss": 10.0 - e, "seconds": 1.0, "images_per_s": 5.0,
         "val": {"R@1": 20.0 + 10 * e}}
        for e in range(3)
    ]  # fmt: skip
    summary = {"kind": "train", "best_val_recall1": 40.0, "history": history}
    (run_folder / "summary.json").write_text(json.dumps(summary))
    return out


@pytest.fixture
def one_run(tmp_path) -> Path:
    make_evaluation(tmp_path, "alpha")
    return tmp_path


# --- plain functions ------------------------------------------------------------------------


def test_recall_at_any_threshold_from_the_names(one_run):
    (evaluation,) = rv.list_evaluations(one_run)
    predictions = rv.load_predictions(evaluation.predictions)
    assert predictions["geo_m"].round(6).tolist() == [10, 40, 70, 30, 5, 60]
    # q0's first hit: rank 0 at >= 10 m; q1's: rank 1 at >= 5 m, rank 0 at >= 30 m.
    assert rv.recall_at_threshold(predictions, 25)["R@1"] == 50.0
    assert rv.recall_at_threshold(predictions, 25)["R@5"] == 100.0
    assert rv.recall_at_threshold(predictions, 8) == {
        "R@1": 0.0, "R@5": 50.0, "R@10": 50.0, "R@20": 50.0
    }  # fmt: skip
    assert rv.recall_at_threshold(predictions, 35)["R@1"] == 100.0
    assert rv.recall_at_threshold(predictions, 4)["R@20"] == 0.0
    assert np.isclose(predictions["similarity"].iloc[0], 1 - 0.2 / 2)


def test_runs_table_and_the_paper_side_by_side_say_what_differs(one_run):
    evaluations = rv.list_evaluations(one_run)
    table = rv.runs_table(evaluations, 8)
    assert table[["R@1", "R@5", "threshold_m"]].iloc[0].tolist() == [0.0, 50.0, 8.0]
    assert bool(table["recomputed"].iloc[0])
    side = pv.runs_next_to_paper(table)
    r1 = side[side["metric"] == "R@1"].iloc[0]
    assert (r1["paper_table"], r1["paper_value"]) == (4, 64.7)  # CosPlace, SF-XL test v1
    assert "threshold 8 m vs 25 m" in r1["note"]
    assert "synthetic city city vs SF-XL" in r1["note"]
    assert "test images shorter side 64 px vs native" in r1["note"]
    assert "64-D vs 512-D" in r1["note"]
    r20 = side[side["metric"] == "R@20"].iloc[0]
    assert r20["note"] == "the paper reports no such number"


def test_failures_worst_first_with_missed_positives(one_run):
    (evaluation,) = rv.list_evaluations(one_run)
    predictions = rv.load_predictions(evaluation.predictions)
    database = fc.database_utm(evaluation.test_set)
    assert len(database[0]) == 7
    wrong = fc.failures(predictions, 8, database)
    assert wrong["top1_error_m"].round(6).tolist() == [30.0, 10.0]  # q1 then q0
    q1, q0 = wrong.itertuples()
    assert q1.prediction_errors_m == [30.0, 5.0, 60.0]
    assert [Path(p).name for p in q1.missed_positives] == [image_name(205, "q1p1")]
    assert [Path(p).name for p in q0.missed_positives] == [image_name(3, "extra")]
    assert fc.failures(predictions, 35, database).empty


def test_possible_label_errors_are_similar_yet_far(one_run):
    (evaluation,) = rv.list_evaluations(one_run)
    predictions = rv.load_predictions(evaluation.predictions)
    suspects = fc.possible_label_errors(predictions, 25)
    # Correct top-1 similarity: q0's 0.9 only, so the bar is 0.9; q1's top-1 (0.95, 30 m)
    # is as similar as that yet wrong.
    assert suspects.attrs["similarity_bar"] == pytest.approx(0.9)
    assert suspects["geo_m"].round(6).tolist() == [30.0]
    assert suspects["similarity"].tolist() == [pytest.approx(0.95)]


def test_grids_dimension_memory_and_curves(one_run):
    runs = one_run / "runs"
    points = [
        {"grid": "claims_table5", "point": "M10_alpha30_N5_L2", "M": 10, "alpha": 30, "N": 5,
         "L": 2, "groups_num": 3, "fc_output_dim": 512, "val_r1": 40.0, "test_r1": 30.0,
         "train_images": 100, "train_fraction": 1.0, "run_folder": "x/a", "args": {}},
        {"grid": "claims_table5", "point": "M10_alpha360_N1_L1", "M": 10, "alpha": 360, "N": 1,
         "L": 1, "groups_num": 1, "fc_output_dim": 512, "val_r1": 35.0, "test_r1": 20.0,
         "train_images": 100, "train_fraction": 1.0, "run_folder": "x/b", "args": {}},
    ]  # fmt: skip
    (runs / "ablation_claims_table5.json").write_text(json.dumps(points))
    dims = [{"grid": "claims_dimension", "point": "dim32", "fc_output_dim": 32, "val_r1": 30.0,
             "test_r1": 10.0, "run_folder": "x/c", "args": {}}]  # fmt: skip
    (runs / "ablation_claims_dimension.json").write_text(json.dumps(dims))
    grids = pv.load_grids(one_run)
    table5 = pv.table5_view(grids)
    assert table5.set_index("point")["paper_val_r1"].to_dict() == {
        "M10_alpha30_N5_L2": 90.9, "M10_alpha360_N1_L1": 85.8
    }  # fmt: skip
    view = pv.dimension_view(grids)
    assert view["fc_output_dim"].tolist() == [32, 512]
    assert view["memory_mb_per_million"].tolist() == [128.0, 2048.0]  # dim x 4 B x 1e6
    curves = rv.training_curves(one_run)
    assert curves["val_r1"].tolist() == [20.0, 30.0, 40.0]
    assert rv.list_runs(one_run)["best_val_r1"].tolist() == [40.0]
    csv_text = rv.to_csv_bytes(fc.failures(rv.load_predictions(
        rv.list_evaluations(one_run)[0].predictions), 8)).decode()  # fmt: skip
    assert csv_text.splitlines()[0].startswith("query,top1_error_m,predictions")


def test_a_missing_column_is_one_sentence(tmp_path):
    path = tmp_path / "predictions.csv"
    path.write_text("query,rank\nq,0\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        rv.load_predictions(path)


# --- claims: planning and verdicts (the end-to-end run is marked slow) ----------------------


def test_claims_train_shared_points_once_per_seed():
    base = claims.config.parse_arguments(["--fc_output_dim", "512", "--groups_num", "3"])
    planned = claims.plan(list(claims.CLAIMS), base, seeds=(0, 1))
    names = [(p.grid, p.point.name) for p in planned]
    assert len(names) == 2 * (5 + 2 + 2) and len(set(names)) == len(names)
    assert ("dimension", "dim512_seed0") not in names
    assert ("train_size", "fraction1_seed1") not in names
    assert [p.seed for p in planned[:9]] == [0] * 9  # a whole seed first
    assert {p.point.flags["seed"] for p in planned} == {0, 1}
    assert {p.base for p in planned if p.grid == "dimension"} == {"dim32", "dim128"}
    memory = [{"config": "cosplace", "step_rss_mib": 100.0},
              {"config": "triplet_equal_queries", "step_rss_mib": 900.0}]  # fmt: skip
    verdict = cv.verdict_memory(memory, 1000, 512)
    assert verdict["holds"] is True and verdict["triplet_cache_mib"] == pytest.approx(1.953125)


def seeds_of(*values: float, metric: str = "test_queries_v2_r1") -> list[dict]:
    return [{metric: v} for v in values]


def test_a_claim_is_decided_only_by_a_margin_larger_than_the_seed_spread():
    # Table 6's claim: recall rises with the training set, every step beyond the spread.
    rising = [(0.1, seeds_of(10, 12, 11)), (0.3, seeds_of(20, 22, 21)), (1.0, seeds_of(30, 31, 29))]
    verdict = cv.series_verdict("train_size", rising, strict=True)
    assert verdict["holds"] is True and verdict["verdict"] == "holds"
    assert verdict["rows"][0]["test_queries_v2_r1"] == {"mean": 11.0, "std": 1.0, "seeds": 3}
    # means in order, but the middle step (21 -> 23) is within the spread (1 + 5): undecided
    noisy = [(0.1, seeds_of(10, 12, 11)), (0.3, seeds_of(16, 26, 21)), (1.0, seeds_of(23, 23, 23))]
    assert cv.series_verdict("train_size", noisy, strict=True)["verdict"] == "undecided"
    # a step that falls beyond the spread refutes it
    falling = [
        (0.1, seeds_of(30, 31, 29)),
        (0.3, seeds_of(20, 22, 21)),
        (1.0, seeds_of(40, 41, 39)),
    ]
    assert cv.series_verdict("train_size", falling, strict=True)["holds"] is False
    # one seed has no spread: nothing is decided
    assert (
        cv.series_verdict("train_size", [(0.1, seeds_of(1)), (1.0, seeds_of(50))], True)["holds"]
        is None
    )
    # Fig. 5: never falls, ends above where it starts (a flat step is allowed)
    saturating = [
        (32, seeds_of(10, 11, 12)),
        (128, seeds_of(20, 21, 22)),
        (512, seeds_of(21, 20, 22)),
    ]
    assert cv.series_verdict("dimension", saturating, strict=False)["holds"] is True


def test_groups_hold_when_cosplace_beats_every_partition_beyond_the_spread():
    metric = "val_queries_r1"
    points = {
        "M10_alpha30_N5_L2": seeds_of(40, 42, 41, metric=metric),
        "M10_alpha360_N1_L1": seeds_of(30, 31, 29, metric=metric),
        "M10_alpha30_N5_L1": seeds_of(35, 36, 37, metric=metric),
    }
    verdict = cv.groups_verdict(points, "M10_alpha30_N5_L2")
    assert verdict["verdict"] == "holds"
    assert verdict["by_metric"]["test_queries_v2_r1"] == "undecided"  # not measured there
    points["M10_alpha30_N5_L1"] = seeds_of(39, 44, 41, metric=metric)  # within the spread
    assert cv.groups_verdict(points, "M10_alpha30_N5_L2")["verdict"] == "undecided"
    points["M10_alpha30_N5_L1"] = seeds_of(50, 51, 52, metric=metric)  # clearly better
    assert cv.groups_verdict(points, "M10_alpha30_N5_L2")["verdict"] == "does not hold"


def test_claims_refuse_a_folder_without_the_sfxl_layout(tmp_path, capsys):
    with pytest.raises(SystemExit):
        claims.main(["--dataset_folder", str(tmp_path), "--workspace", str(tmp_path)])
    err = capsys.readouterr().err
    assert "has no train/val/test folder" in err and "make demo-data" in err


@pytest.mark.slow
def test_claims_end_to_end_on_the_tiny_city(tiny_city, tmp_path, capsys):
    flags = ["--dataset_folder", str(tiny_city), "--workspace", str(tmp_path),
             "--claims", "groups", "dimension", "--batch_size", "2", "--groups_num", "1",
             "--iterations_per_epoch", "1", "--epochs_num", "1", "--min_images_per_class", "1",
             "--image_size", "32", "--seeds", "0", "1"]  # fmt: skip
    # On the tiny city, alpha=360 with N=5 leaves a first group of one class: that point
    # fails with its reason, the others are recorded, and the command ends in one sentence.
    with pytest.raises(SystemExit) as stop:
        claims.main(flags)
    assert stop.value.code == 1
    printed = capsys.readouterr()
    assert re.search(r"error: 2 trainings failed .*M10_alpha360_N5_L1", printed.err)
    recorded = json.loads((tmp_path / "runs" / "claims.json").read_text())
    assert set(recorded["claims"]) == {"groups", "dimension"}
    assert "fewer classes than the batch" in recorded["failed"][0]
    assert recorded["claims"]["groups"]["holds"] is None  # a Table 5 row is missing
    dims = recorded["claims"]["dimension"]
    assert [r["x"] for r in dims["rows"]] == [32, 128, 512]
    assert all(r["test_queries_v2_r1"]["seeds"] == 2 for r in dims["rows"])
    assert recorded["untrained"]["val_queries_r1"]["seeds"] == 2
    evaluations = rv.list_evaluations(tmp_path)
    # 2 seeds x (4 Table 5 rows + 2 dimensions + the untrained network), each on 3 sets
    assert len(evaluations) == 2 * 7 * 3 and all(e.predictions is not None for e in evaluations)
    assert "(dimension) test_queries_v2_r1" in printed.out
    shipped = release.record_claims(tmp_path, tmp_path / "records", overwrite=False)
    assert "claims.json" in shipped["files"] and shipped["machine"]["cpu"]
    assert any(name.endswith("predictions.csv.gz") for name in shipped["files"])
    assert not any(name.endswith(".pth") for name in shipped["files"])
    assert claims_view.load_claims(tmp_path / "records") == recorded


# --- the page -------------------------------------------------------------------------------


def open_page(monkeypatch, workspace: Path, recorded: Path | None = None, **params: str) -> AppTest:
    """The page on `workspace`, with `recorded` as the shipped claims (none by default)."""
    monkeypatch.setenv("COSPLACE_WORKSPACE", str(workspace))
    monkeypatch.setenv("COSPLACE_RECORDED_CLAIMS", str(recorded or workspace / "no_records"))
    at = AppTest.from_file(PAGE, default_timeout=180)
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def recall_table(at: AppTest) -> pd.DataFrame:
    return at.dataframe[0].value


def test_page_without_runs_names_the_commands(monkeypatch, tmp_path):
    at = open_page(monkeypatch, tmp_path)
    (info,) = at.info
    assert "No run in" in info.value and "make demo-model" in info.value
    assert "python -m training.claims" in info.value
    assert not at.slider


def test_page_with_one_run_recomputes_recall_with_the_slider(monkeypatch, one_run):
    at = open_page(monkeypatch, one_run)
    assert recall_table(at)[["R@1", "R@5"]].iloc[0].tolist() == [50.0, 100.0]
    at.slider[0].set_value(8).run()
    assert recall_table(at)[["R@1", "R@5", "threshold_m"]].iloc[0].tolist() == [0.0, 50.0, 8.0]
    assert at.query_params["threshold"] == ["8"] or at.query_params["threshold"] == "8"
    at.slider[0].set_value(35).run()
    assert recall_table(at)["R@1"].iloc[0] == 100.0
    # Export: the CSV offered is the table shown.
    button = next(b for b in at.get("download_button") if "runs_recall" in b.proto.label)
    assert "runs_recall.csv" in button.proto.label
    exported = pd.read_csv(io.BytesIO(rv.to_csv_bytes(recall_table(at))))
    assert exported["R@1"].tolist() == [100.0]
    texts = " ".join(str(c.value) for c in at.caption)
    assert "0 of 2 queries have their top-1 farther than 35 m" in texts


def test_page_with_several_runs_shows_each_and_the_failures(monkeypatch, one_run):
    make_evaluation(one_run, "beta", queries="queries_v2")
    at = open_page(monkeypatch, one_run)
    table = recall_table(at)
    assert sorted(zip(table["run"], table["queries"], strict=True)) == [
        ("alpha", "queries_v1"), ("beta", "queries_v2")
    ]  # fmt: skip
    at.slider[0].set_value(8).run()
    assert recall_table(at)["R@1"].tolist() == [0.0, 0.0]
    texts = " ".join(str(c.value) for c in at.caption)
    assert "2 of 2 queries have their top-1 farther than 8 m" in texts
    assert at.selectbox(key="fail_queries").options == ["queries_v1", "queries_v2"]
    at.selectbox(key="fail_queries").set_value("queries_v2").run()
    assert "beta" in at.selectbox(key="fail_evaluation").value
    assert len(at.get("image")) >= 1  # thumbnails of the failures
    curves = [b for b in at.get("download_button") if "training_curves" in b.proto.label]
    assert curves


def test_one_run_on_test_and_val_with_the_same_queries_is_two_series(monkeypatch, one_run):
    # test/queries_v1 and val/queries_v1 of one run: each its own bars and curve, not one
    # series whose bars stacked to the sum of the two recalls.
    test_eval = one_run / "runs" / "alpha" / "eval_test_queries_v1"
    val_eval = test_eval.with_name("eval_val_queries_v1")
    val_eval.mkdir()
    (val_eval / "predictions.csv").write_bytes((test_eval / "predictions.csv").read_bytes())
    results = json.loads((test_eval / "results.json").read_text())
    results["test_set"] = str(one_run / "city" / "val")
    (val_eval / "results.json").write_text(json.dumps(results))
    at = open_page(monkeypatch, one_run)
    assert sorted(recall_table(at)["test_set"].map(lambda t: Path(t).name)) == ["test", "val"]
    bars, curves = (json.loads(c.proto.spec)["data"] for c in at.get("plotly_chart")[:2])
    names = ["alpha / test / queries_v1", "alpha / val / queries_v1"]
    assert sorted(trace["name"] for trace in bars) == names
    assert sorted(trace["name"] for trace in curves) == names
    for trace in bars:  # each series holds its own four recalls, R@1 50 at 25 m
        recalls = np.frombuffer(base64.b64decode(trace["y"]["bdata"]), trace["y"]["dtype"])
        assert recalls.tolist() == [50.0, 100.0, 100.0, 100.0]
    # Next to the paper: only the test split's queries_v1 stands beside SF-XL test v1.
    side = pv.runs_next_to_paper(rv.runs_table(rv.list_evaluations(one_run), 25))
    r1 = side[side["metric"] == "R@1"].set_index("test_set")
    assert r1.loc["test", "paper_test_set"] == "SF-XL test v1"
    assert r1.loc["val", "note"] == "the paper reports no such number"


def test_a_busy_catalog_costs_the_page_a_short_wait_and_one_line(monkeypatch, one_run):
    import app.catalog_reader

    db = one_run / "catalog.duckdb"
    catalog.connect(db).close()
    # The command lines' wait (the page used it: 30 s per rerun) is not the page's short one.
    monkeypatch.setenv("COSPLACE_CATALOG_WAIT_S", "20")
    monkeypatch.setattr(app.catalog_reader, "APP_LOCK_WAIT_S", 0.2)
    with catalog_write_lock(db):
        at = open_page(monkeypatch, one_run)
        assert recall_table(at)["run"].tolist() == ["alpha"]  # read from the run folder
        busy = [i.value for i in at.info if "locked by another process" in i.value]
        assert len(busy) == 1 and "read from the run folders" in busy[0]
    at.run()
    assert not any("locked by another process" in i.value for i in at.info)


def test_predictions_replaced_while_the_page_reads_fall_back_to_the_recorded_recall(one_run):
    (evaluation,) = rv.list_evaluations(one_run)
    evaluation.predictions.unlink()  # an evaluation running beside the app rewrites it
    table = rv.runs_table([evaluation], 8)
    assert not bool(table["recomputed"].iloc[0])
    assert table[["R@1", "threshold_m"]].iloc[0].tolist() == [50.0, 25.0]  # results.json's


def test_runs_say_whether_their_model_is_recorded_or_made_here(tmp_path):
    runs = tmp_path / "runs"
    note = {
        "commit": "0123456789abcdef",
        "machine": {"cpu": "AMD EPYC"},
        "trained_until": "2026-12-01T11:00:00+00:00",
        "wall_time_s": 3000.0,
        "iterations": 11200,
        "command": "make demo-release",
    }
    for name, summary in [("demo", {"history": [], "release": note}), ("mine", {"history": []})]:
        (runs / name).mkdir(parents=True)
        (runs / name / "summary.json").write_text(json.dumps(summary))
    (runs / "broken").mkdir()
    (runs / "broken" / "summary.json").write_text("[]")  # a malformed file: still listed
    made = rv.list_runs(tmp_path).set_index("run")["made"].to_dict()
    assert made["demo"].startswith("recorded: trained 2026-12-01 on AMD EPYC, 11200 iterations")
    assert "50 min, commit 0123456789" in made["demo"]
    assert made["mine"] == made["broken"] == "made on this machine"


def record_claims(folder: Path) -> None:
    """Recorded claims: three seeds of CosPlace's Table 5 point, their verdicts, provenance."""
    for seed in range(3):
        out = make_evaluation(folder, f"ablation_claims_table5_M10_alpha30_N5_L2_seed{seed}")
        if seed == 0:  # shipped records keep their predictions gzipped
            plain = out / "predictions.csv"
            (out / "predictions.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
            plain.unlink()
    verdict = {"metric": "val_queries_r1", "rows": [], "holds": None, "verdict": "undecided",
               "by_metric": {"val_queries_r1": "undecided"}}  # fmt: skip
    claims = {"budget": {"seeds": [0, 1, 2]}, "seconds": 600.0, "cpu_seconds": 1100.0,
              "claims": {"groups": verdict},
              "untrained": {"val_queries_r1": {"mean": 9.0, "std": 1.0, "seeds": 3}}}  # fmt: skip
    (folder / "runs" / "claims.json").write_text(json.dumps(claims))
    record = {"finished": "2026-12-01T12:00:00+00:00", "machine": {"cpu": "AMD EPYC", "cores": 2},
              "wall_time_s": 600.0, "commit": "abcdef0123456789",
              "command": "python -m training.claims"}  # fmt: skip
    (folder / "record.json").write_text(json.dumps(record))


def test_recorded_claims_show_their_provenance_and_error_bars_at_any_threshold(
    monkeypatch, one_run, tmp_path_factory
):
    recorded = tmp_path_factory.mktemp("records")
    record_claims(recorded)
    at = open_page(monkeypatch, one_run, recorded)
    assert any(m.value == "#### Recorded" for m in at.markdown)
    caption = next(c.value for c in at.caption if c.value.startswith("recorded 2026-12-01"))
    assert "AMD EPYC (2 cores)" in caption and "commit abcdef0123" in caption
    spread = next(d.value for d in at.dataframe if "R@1 std" in d.value.columns)
    assert spread[["point", "R@1", "R@1 std", "seeds"]].values.tolist() == [
        ["table5 M10_alpha30_N5_L2", 50.0, 0.0, 3]
    ]
    at.slider[0].set_value(8).run()  # the slider recomputes the recorded recalls too
    spread = next(d.value for d in at.dataframe if "R@1 std" in d.value.columns)
    assert spread["R@1"].tolist() == [0.0]
    # the run made on this machine is still listed as such beside them
    assert rv.list_runs(one_run)["made"].tolist() == ["made on this machine"]


def test_claims_over_seeds_name_grid_point_and_seed():
    per_seed = pd.DataFrame(
        {"grid": ["train_size"] * 3 + ["untrained"], "point": ["fraction0.1"] * 3 + ["untrained"],
         "seed": [0, 1, 2, 0], "evaluated_on": ["test/queries_v2"] * 4,
         "R@1": [10.0, 20.0, 30.0, 5.0], "R@5": [1.0, 1.0, 1.0, 1.0]}
    )  # fmt: skip
    spread = claims_view.over_seeds(per_seed).set_index("point")
    assert spread.loc["fraction0.1", ["R@1", "R@1 std", "seeds"]].tolist() == [20.0, 10.0, 3]
    match = claims_view.CLAIMS_RUN.match("ablation_claims_train_size_fraction0.1_seed2")
    assert match.group("grid", "point", "seed") == ("train_size", "fraction0.1", "2")
    match = claims_view.CLAIMS_RUN.match("ablation_claims_untrained_seed1")
    assert match.group("grid", "point", "seed") == ("untrained", None, "1")


def test_malformed_claims_files_are_skipped_or_shown_without_their_odd_values(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "claims.json").write_text(json.dumps({"claims": []}))
    assert claims_view.load_claims(tmp_path) is None
    (runs / "claims.json").write_text(json.dumps({"claims": {"groups": "x"}, "budget": [1],
                                                  "seconds": "soon"}))  # fmt: skip
    claims = claims_view.load_claims(tmp_path)
    assert claims_view.verdict_table(claims).empty
    assert claims_view.budget_caption(claims).endswith("(); 0 min wall, 0 CPU-min")
    (tmp_path / "record.json").write_text(json.dumps({"machine": "x", "wall_time_s": "y"}))
    assert claims_view.recorded_provenance(tmp_path).startswith("recorded ? on ? (? cores) in 0")


@pytest.mark.parametrize("threshold", ["500", "0", "nan", "x"])
def test_a_threshold_link_out_of_the_sliders_range_opens_at_25_m(monkeypatch, one_run, threshold):
    at = open_page(monkeypatch, one_run, threshold=threshold)
    assert at.slider[0].value == 25
    assert recall_table(at)["threshold_m"].iloc[0] == 25


def test_the_grids_points_are_not_shown_by_default_beside_a_run():
    assert rv.default_runs(["ablation_claims_x_seed0", "demo"]) == ["demo"]
    assert rv.default_runs(["ablation_claims_x_seed0"]) == ["ablation_claims_x_seed0"]

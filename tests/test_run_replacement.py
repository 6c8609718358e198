"""Issue 15: no command loses a run. Replacing a run or an evaluation keeps the earlier one
until the new one exists; build_index skips unreadable images like the evaluation; a run file
of the wrong shape is named and the other runs are still read.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_RUN_NAME, error_of, eval_flags, tiny_run_flags
from test_results_page import make_evaluation, open_page

from app import results_view as rv
from core import files
from core.errors import UserError
from core.index import load_index
from data_catalog import runs, sync
from data_catalog.catalog import connect
from data_catalog.results import list_results
from data_catalog.serving import read_serving_database
from training import ablation, build_index, train
from training import eval as evaluation


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def hidden_siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith("."))


@pytest.fixture
def old_run(tiny_run, tmp_path):
    """A copy of the session's tiny run in a workspace of its own, with an evaluation and an
    index beside its model: (workspace, run folder)."""
    _, trained, _ = tiny_run
    workspace = tmp_path / "workspace"
    run = workspace / "runs" / TINY_RUN_NAME
    shutil.copytree(trained, run)
    files.write_json(run / "eval_test_queries_v2" / runs.RESULTS, {"recalls": {"R@1": 1.0}})
    files.write_text(run / runs.INDEX_DIR / "marker.txt", "the earlier index\n")
    return workspace, run


# --- training --overwrite -----------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--min_images_per_class", "100000"], "has --min_images_per_class 100000 images"),
        (
            ["--fc_output_dim", "64", "--resume_model", "RUN/best_model.pth"],
            "best_model.pth holds ResNet18 with 32-D descriptors; expected ResNet18 with 64-D",
        ),
        (
            ["--fc_output_dim", "64", "--resume_train", "OTHER/last_checkpoint.pth"],
            "last_checkpoint.pth was trained with ResNet18 with 32-D descriptors",
        ),
    ],
)
def test_a_replacement_that_fails_keeps_the_earlier_run(
    old_run, tiny_city, tmp_path, capsys, extra, message
):
    workspace, run = old_run
    other = tmp_path / "other"
    shutil.copytree(run, other)  # a checkpoint outside the run: a new run, not a continuation
    extra = [e.replace("RUN", str(run)).replace("OTHER", str(other)) for e in extra]
    before = contents(run)
    argv = tiny_run_flags(tiny_city, workspace, "--overwrite", *extra)
    code, err = error_of(train.main, argv, capsys)
    assert code == 1 and message in err and "Traceback" not in err
    assert contents(run) == before  # model, evaluations and index as they were
    assert hidden_siblings(run) == []  # the unfinished replacement was removed


def test_an_interrupted_replacement_keeps_the_earlier_run(
    old_run, tiny_city, monkeypatch, capsys, caplog
):
    workspace, run = old_run
    before = contents(run)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_epoch", interrupted)
    code, _ = error_of(train.main, tiny_run_flags(tiny_city, workspace, "--overwrite"), capsys)
    assert code == 130
    assert contents(run) == before
    assert hidden_siblings(run) == []
    assert any("the earlier run there is kept as it was" in r.message for r in caplog.records)


def test_overwrite_can_start_from_the_model_of_the_run_it_replaces(old_run, tiny_city):
    workspace, run = old_run
    # Left by a replacement killed outright: hidden from the readers, removed by the next one.
    killed = run.parent / f".{run.name}.k1ll3d00.tmp"
    shutil.copytree(run, killed)
    assert [p.name for p in runs.run_folders(workspace)] == [TINY_RUN_NAME]
    assert runs.runs_with_model(workspace / "runs") == [TINY_RUN_NAME]
    old_model = (run / runs.BEST_MODEL).read_bytes()
    argv = tiny_run_flags(
        tiny_city, workspace, "--overwrite", "--resume_model", str(run / runs.BEST_MODEL),
        "--epochs_num", "1", "--iterations_per_epoch", "1",
    )  # fmt: skip
    summary = train.train(train.config.parse_arguments(argv))
    assert len(summary["history"]) == 1 and set(summary["test"]) == {"R@1", "R@5", "R@10", "R@20"}
    assert (run / runs.BEST_MODEL).read_bytes() != old_model
    assert json.loads((run / runs.ARGS).read_text())["resume_model"] == str(run / runs.BEST_MODEL)
    assert runs.read_summary(run)["history"] == summary["history"]
    # What belonged to the replaced model is gone with it.
    assert not (run / "eval_test_queries_v2").exists() and not (run / runs.INDEX_DIR).exists()
    assert hidden_siblings(run) == []
    with connect(workspace / "catalog.duckdb", read_only=True) as con:
        assert set(list_results(con)["run"]) == {TINY_RUN_NAME}


def test_a_failed_swap_puts_the_earlier_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "run"
    files.write_text(target / "best_model.pth", "old")
    new = files.new_sibling_folder(target)
    files.write_text(new / "best_model.pth", "new")
    real_rename, calls = os.rename, []

    def failing_second_rename(source, destination):
        calls.append(destination)
        if len(calls) == 2:  # the new folder into place
            raise OSError("no space left on device")
        real_rename(source, destination)

    monkeypatch.setattr("core.files.os.rename", failing_second_rename)
    with pytest.raises(OSError, match="no space"):
        files.swap_folder(new, target)
    monkeypatch.undo()
    assert contents(target) == {"best_model.pth": b"old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run", new.name])
    files.swap_folder(new, target)
    assert contents(target) == {"best_model.pth": b"new"}
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_swap_killed_between_its_renames_is_put_back_by_the_next_command(tmp_path):
    from argparse import Namespace

    from training.run_folder import check_run_folder

    target = tmp_path / "run"
    files.write_text(target / "best_model.pth", "old")
    new = files.new_sibling_folder(target)
    files.write_text(new / "best_model.pth", "new")
    # What a SIGKILL after swap_folder's first rename leaves: no Python cleanup ran.
    aside = files.new_sibling_folder(target)
    os.rename(target, aside / target.name)
    assert not target.exists()
    args = Namespace(run_folder=str(target), resume_train=None, overwrite=False)
    with pytest.raises(UserError, match="already holds a run"):  # found again, so refused
        check_run_folder(args)
    assert contents(target) == {"best_model.pth": b"old"} and not aside.exists()
    assert files.restore_set_aside(target) is False  # nothing left to put back
    with files.replacing_folder(target) as writing:  # a later replacement works as usual
        files.write_text(writing / "best_model.pth", "newer")
    assert contents(target) == {"best_model.pth": b"newer"}


# --- eval --overwrite ------------------------------------------------------------------------


def test_eval_overwrite_leaves_no_file_of_the_earlier_evaluation(old_run, tiny_city):
    workspace, run = old_run
    model = str(run / runs.BEST_MODEL)
    argv = eval_flags(tiny_city, workspace, TINY_RUN_NAME, "--resume_model", model, "--overwrite")
    evaluation.main([*argv, "--num_preds_to_save", "2", "--save_descriptors"])
    out = run / "eval_test_queries_v1"
    assert (out / "preds").is_dir() and (out / "database_descriptors.npy").is_file()
    evaluation.main(argv)
    assert sorted(p.name for p in out.iterdir()) == [runs.PREDICTIONS, runs.RESULTS]
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []


def test_a_failed_eval_overwrite_keeps_the_earlier_evaluation(
    old_run, tiny_city, monkeypatch, capsys
):
    workspace, run = old_run
    model = str(run / runs.BEST_MODEL)
    argv = eval_flags(tiny_city, workspace, TINY_RUN_NAME, "--resume_model", model, "--overwrite")
    evaluation.main(argv)
    out = run / "eval_test_queries_v1"
    before = contents(out)

    def disk_full(*args, **kwargs):
        raise OSError("no space left on device")

    # Another model (an untrained one): predictions.csv is written first, the images after
    # it, and the failure comes between them.
    monkeypatch.setattr(evaluation, "save_prediction_images", disk_full)
    other = eval_flags(tiny_city, workspace, TINY_RUN_NAME, "--overwrite", "--seed", "3")
    with pytest.raises(OSError, match="no space"):
        evaluation.main([*other, "--num_preds_to_save", "2"])
    assert contents(out) == before  # not the new predictions beside the old results
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []


# --- build_index: unreadable database images ------------------------------------------------


def test_build_index_skips_an_unreadable_database_image(old_run, tiny_city, tmp_path, capsys):
    _, run = old_run
    database = tmp_path / "database"
    shutil.copytree(tiny_city / "test" / "database", database)
    images = sorted(p.relative_to(database).as_posix() for p in database.rglob("*.jpg"))
    broken = images[2]
    (database / broken).write_bytes((database / broken).read_bytes()[:200])  # cut short
    build_index.main([
        "--run_dir", str(run), "--database_folder", str(database), "--overwrite",
        "--resize_test_imgs", "--image_size", "64",
    ])  # fmt: skip
    printed = capsys.readouterr().out
    skipped = f"indexed {len(images) - 1} images of {database} (1 unreadable images skipped)"
    assert skipped in printed
    served = read_serving_database(run / runs.INDEX_DIR)
    index, manifest = load_index(run / runs.INDEX_DIR)
    assert broken not in served.paths and sorted(served.paths) == sorted(set(images) - {broken})
    assert index.ntotal == manifest.count == len(served.paths) == len(served.utm)
    assert not np.isnan(served.utm).any()


def test_build_index_over_no_readable_image_is_one_sentence(old_run, tiny_city, tmp_path, capsys):
    _, run = old_run
    database = tmp_path / "database"
    shutil.copytree(tiny_city / "test" / "database", database)
    for image in database.rglob("*.jpg"):
        image.write_text("not an image")
    argv = ["--run_dir", str(run), "--database_folder", str(database), "--overwrite"]
    code, err = error_of(build_index.main, argv, capsys)
    assert code == 1 and "none of the" in err and "images could be read; check the files" in err
    assert (run / runs.INDEX_DIR / "marker.txt").is_file()  # the earlier index is kept


# --- run files of the wrong shape --------------------------------------------------------

BROKEN_FILES = {
    "summary_list": ("summary.json", "[]", "it is not a JSON object"),
    "history_text": ("summary.json", '{"history": "three epochs"}', "history is not a list"),
    "results_list": ("eval_test_queries_v1/results.json", "[1, 2]", "it is not a JSON object"),
    "distance_text": ("eval_test_queries_v1/predictions.csv", None, "its distance 'far'"),
}


def break_run(workspace: Path, case: str) -> Path:
    """A run `broken` beside the good run `alpha`, with the file of `case` malformed."""
    make_evaluation(workspace, "alpha")
    make_evaluation(workspace, "broken")
    name, text, _ = BROKEN_FILES[case]
    path = workspace / "runs" / "broken" / name
    if text is None:  # one distance that is not a number
        lines = path.read_text().splitlines()
        cells = lines[1].split(",")
        cells[3] = "far"
        text = "\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", list(BROKEN_FILES))
def test_the_results_page_names_a_malformed_run_file_and_shows_the_others(
    monkeypatch, tmp_path, case
):
    broken = break_run(tmp_path, case)
    at = open_page(monkeypatch, tmp_path)  # fails on any exception of the page
    (warning,) = at.warning
    assert "Skipped 1 malformed run file" in warning.value
    assert f"{broken} ({BROKEN_FILES[case][2]}" in warning.value
    table = at.dataframe[0].value
    good = table[table["run"] == "alpha"]
    assert good[["R@1", "R@5"]].iloc[0].tolist() == [50.0, 100.0]  # recomputed, as always


def test_every_reader_skips_a_malformed_file_with_its_name(tmp_path, capsys):
    make_evaluation(tmp_path, "alpha")
    for name, text in [("beta", '"a summary"'), ("gamma", '{"best_val_recall1": "high"}')]:
        make_evaluation(tmp_path, name)
        (tmp_path / "runs" / name / runs.SUMMARY).write_text(text)
    predictions = tmp_path / "runs" / "alpha" / "eval_test_queries_v1" / runs.PREDICTIONS
    with runs.collect_malformed() as found:
        listed = rv.list_runs(tmp_path)
        curves = rv.training_curves(tmp_path)
    assert list(listed["run"]) == ["alpha", "beta", "gamma"] and set(curves["run"]) == {"alpha"}
    caption = rv.run_provenance(tmp_path / "runs" / "beta")  # the Retrieve page's caption
    assert f"{tmp_path / 'runs/beta/summary.json'} (it is not a JSON object)" in caption
    assert found == [
        f"{tmp_path / 'runs/beta/summary.json'} (it is not a JSON object)",
        f"{tmp_path / 'runs/gamma/summary.json'} (best_val_recall1 is not a number)",
    ]
    frame = rv.load_predictions(predictions).drop(columns=["distance", "geo_m", "similarity"])
    frame.to_csv(predictions, index=False)
    with runs.collect_malformed() as found:
        table = rv.runs_table(rv.list_evaluations(tmp_path), 25)
    assert not table[table["run"] == "alpha"]["recomputed"].iloc[0]  # the recorded recalls
    assert f"{predictions} (it lacks the columns ['distance']: re-run training.eval)" in found
    # The catalog's sync records the others and says which files it skipped.
    (tmp_path / "runs/beta/eval_test_queries_v1/results.json").write_text('{"recalls": [50]}')
    sync.main(["--workspace", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "skipped 3 malformed files" in printed and "runs/beta/eval_test_queries_v1" in printed
    with connect(tmp_path / "catalog.duckdb", read_only=True) as con:
        assert set(list_results(con)["run"]) == {"alpha", "gamma"}


@pytest.mark.parametrize("text", ["{not json", '{"point": "x"}', '[{"val_r1": 1.0}]'])
def test_a_malformed_grid_file_is_refused_not_overwritten(tmp_path, text):
    path = runs.grid_file(tmp_path, "pooling")
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(UserError, match="is not a grid's results .* move it away"):
        ablation.load_results(path)
    assert path.read_text() == text

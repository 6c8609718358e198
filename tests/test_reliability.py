"""Issue 8: every user mistake gets one sentence; no run, result or file is lost or wrong.

Each test names one bad input or fault and asserts what the user sees (the message, not
only the exit code) and what is left on disk.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch
from conftest import (
    TINY_RUN,
    TINY_RUN_NAME,
    error_of,
    eval_flags,
    tiny_run_flags,
    tiny_training_flags,
)

from core import files
from core.errors import UserError, user_errors
from core.index import (
    IndexManifest,
    IndexMismatchError,
    build_index,
    load_index,
    save_index,
    search,
)
from core.model import CheckpointError
from data_catalog import sync
from data_catalog.catalog import CatalogBusyError, connect
from data_catalog.results import list_results
from training import ablation, config, train
from training import eval as evaluation
from training.baselines import triplet
from training.data import GroupDataset, load_train_set

REPO = Path(__file__).resolve().parent.parent


def flags(city, workspace, name, *extra, test=False):
    """A tiny CPU training: 1 epoch of 2 iterations, 32-D descriptors (no test unless asked)."""
    folders = ["--train_set_folder", str(city / "train"), "--val_set_folder", str(city / "val")]
    folders += ["--test_set_folder", str(city / "test")] if test else []
    return tiny_training_flags(workspace, *folders, "--save_dir", name, *extra)


@pytest.fixture(scope="module")
def trained(tiny_run):
    """The session's tiny finished run: (workspace, run folder)."""
    workspace, run, _ = tiny_run
    return workspace, run


# --- flags: one sentence, exit 2, before any work ----------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--groups_num", "0"], "--groups_num 0 is out of range: give 1 to N*N*L = 50"),
        (["--groups_num", "51"], "--groups_num 51 is out of range: give 1 to N*N*L = 50"),
        (["--N", "1", "--L", "1", "--groups_num", "2"], "give 1 to N*N*L = 1"),
        (["--batch_size", "0"], "--batch_size 0 is too small: give a value of at least 1"),
        (["--image_size", "0"], "--image_size 0 is too small"),
        (["--infer_batch_size", "0"], "--infer_batch_size 0 is too small"),
        (["--num_workers", "-1"], "--num_workers -1 is too small: give a value of at least 0"),
        (["--iterations_per_epoch", "0"], "--iterations_per_epoch 0 is too small"),
        (["--min_images_per_class", "0"], "--min_images_per_class 0 is too small"),
        (["--N", "0"], "--N 0 is too small"),
        (["--L", "0"], "--L 0 is too small"),
        (["--fc_output_dim", "0"], "--fc_output_dim 0 is too small"),
        (["--M", "0"], "--M 0.0 must be a positive number"),
        (["--M", "nan"], "--M nan must be a positive number"),
        (["--alpha", "0"], "--alpha 0.0 must lie in (0, 360] degrees"),
        (["--alpha", "400"], "--alpha 400.0 must lie in (0, 360] degrees"),
        (["--lr", "-1"], "--lr -1.0 must be a positive number"),
        (["--hue", "0.7"], "--hue 0.7 must lie in [0, 0.5]"),
        (["--grayscale", "1.5"], "--grayscale 1.5 is a probability: give a value in [0, 1]"),
        (["--epochs_num", "0"], "--epochs_num 0 trains nothing: give at least 1"),
        (["--num_preds_to_save", "30"], "--num_preds_to_save 30: at most 20 are kept"),
        (["--save_dir", "../elsewhere"], "must be a plain folder name"),
        (["--resume_train", "/no/such.pth"], "--resume_train /no/such.pth is not a file"),
        (["--dataset_folder", "/no/such/folder"], "--dataset_folder /no/such/folder is not a"),
        (["--val_set_folder", "/no/such"], "--val_set_folder /no/such is not a folder"),
    ],
)
def test_bad_training_flags_are_refused_in_the_parser(argv, message, capsys):
    code, err = error_of(train.main, argv, capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_eval_refuses_a_zero_dimension_descriptor(tiny_city, tmp_path, capsys):
    argv = eval_flags(tiny_city, tmp_path, "zero", "--fc_output_dim", "0")
    code, err = error_of(evaluation.main, argv, capsys)
    assert code == 2 and "--fc_output_dim 0 is too small: give a value of at least 1" in err
    assert not (tmp_path / "runs").exists()  # refused before any work


def test_eval_without_a_test_set_names_the_flag(capsys):
    code, err = error_of(evaluation.main, [], capsys)
    assert code == 2 and "--test_set_folder (or --dataset_folder) is required" in err


def test_triplet_and_ablation_flags_are_checked(tiny_city, tmp_path, capsys):
    code, err = error_of(triplet.main, ["--negs_num_per_query", "0"], capsys)
    assert code == 2 and "--negs_num_per_query 0 is too small" in err
    code, err = error_of(triplet.main, ["--margin", "0"], capsys)
    assert code == 2 and "--margin 0.0 must be a positive number" in err
    argv = ["--grid", "pooling", "--train_fraction", "0", *flags(tiny_city, tmp_path, "x")]
    code, err = error_of(ablation.main, argv, capsys)
    assert code == 2 and "train fractions [0.0, 1.0, 0.1, 0.01] must lie in (0, 1]" in err


def test_a_real_process_prints_two_short_lines_and_no_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "training.train", "--M", "0"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].endswith("error: --M 0.0 must be a positive number")
    assert len(lines) == 2 and "Traceback" not in done.stderr  # usage line + the sentence


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    text_file = tmp_path / "weights.pth"
    text_file.write_text("these are not weights\n")
    command = [
        sys.executable, "-m", "training.eval", "--test_set_folder", str(tmp_path),
        "--resume_model", str(text_file), "--device", "cpu", "--workspace", str(tmp_path),
    ]  # fmt: skip
    quiet = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert quiet.returncode == 1
    assert f"error: {text_file} is not a PyTorch checkpoint" in quiet.stderr
    assert "Traceback" not in quiet.stderr
    loud = subprocess.run(
        [*command, "--debug"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert loud.returncode == 1
    assert "Traceback" in loud.stderr and "CheckpointError" in loud.stderr


def test_the_wrapper_turns_user_errors_into_one_line(capsys):
    @user_errors
    def main(argv=None):
        raise UserError(f"the file {argv[0]}\nis missing; give another")

    code, err = error_of(main, ["a.txt"], capsys)
    assert (code, err) == (1, "error: the file a.txt is missing; give another\n")
    with pytest.raises(UserError):
        main(["a.txt", "--debug"])

    @user_errors
    def interrupted(argv=None):
        raise KeyboardInterrupt

    code, err = error_of(interrupted, [], capsys)
    assert code == 130 and "interrupted: checkpoints and results already written are whole" in err

    @user_errors
    def buggy(argv=None):
        raise ZeroDivisionError("a bug keeps its traceback")

    with pytest.raises(ZeroDivisionError):
        buggy([])


# --- resume: files the user gives ----------------------------------------------------------


def test_resume_from_best_model_names_the_right_file(trained, tiny_city, capsys):
    workspace, run = trained
    argv = flags(tiny_city, workspace, "r1", "--resume_train", str(run / "best_model.pth"))
    code, err = error_of(train.main, argv, capsys)
    assert code == 1
    assert "holds only a network's weights (like best_model.pth), not a training checkpoint" in err
    assert (
        "give RUN/last_checkpoint.pth to --resume_train, or pass this file to --resume_model" in err
    )


def test_resume_from_a_truncated_checkpoint(trained, tiny_city, tmp_path, capsys):
    workspace, run = trained
    data = (run / "last_checkpoint.pth").read_bytes()
    truncated = tmp_path / "last_checkpoint.pth"
    truncated.write_bytes(data[: len(data) // 2])
    argv = flags(tiny_city, workspace, "r2", "--resume_train", str(truncated))
    code, err = error_of(train.main, argv, capsys)
    assert code == 1
    assert f"{truncated} is not a PyTorch checkpoint, or only part of one (truncated" in err


def test_resume_from_a_text_file(trained, tiny_city, tmp_path, capsys):
    workspace, _ = trained
    text = tmp_path / "notes.pth"
    text.write_text("epoch 3, loss 0.2\n")
    argv = flags(tiny_city, workspace, "r3", "--resume_train", str(text))
    code, err = error_of(train.main, argv, capsys)
    assert code == 1 and f"{text} is not a PyTorch checkpoint" in err


def test_resume_with_another_dimension(trained, tiny_city, capsys):
    workspace, run = trained
    argv = flags(tiny_city, workspace, "r4", "--resume_train", str(run / "last_checkpoint.pth"))
    code, err = error_of(train.main, [*argv, "--fc_output_dim", "64"], capsys)
    assert code == 1
    assert (
        "was trained with ResNet18 with 32-D descriptors, these flags ask for ResNet18 with 64-D"
        in err
    )
    assert "size mismatch" not in err


class RunsCode:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def test_a_pickle_that_would_run_code_is_refused_everywhere(trained, tiny_city, tmp_path, capsys):
    workspace, run = trained
    marker = tmp_path / "marker"
    evil = tmp_path / "last_checkpoint.pth"
    checkpoint = torch.load(run / "last_checkpoint.pth", weights_only=True)
    checkpoint["history"] = [RunsCode(marker)]
    torch.save(checkpoint, evil)
    sentence = f"{evil} holds Python objects besides tensors, which could run code when loaded"

    argv = flags(tiny_city, workspace, "evil", "--resume_train", str(evil))
    code, err = error_of(train.main, argv, capsys)
    assert code == 1 and sentence in err
    argv = eval_flags(tiny_city, workspace, "evil_eval", "--resume_model", str(evil))
    code, err = error_of(evaluation.main, argv, capsys)
    assert code == 1 and sentence in err
    # The ablation runner reads a point's own checkpoint to decide whether to resume it.
    point = config.parse_arguments(flags(tiny_city, tmp_path, "ablation_pooling_gem"))
    (tmp_path / "runs" / "ablation_pooling_gem").mkdir(parents=True)
    shutil.copy(evil, tmp_path / "runs" / "ablation_pooling_gem" / "last_checkpoint.pth")
    with pytest.raises(CheckpointError, match="holds Python objects besides tensors"):
        ablation.resume_from(point)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.read_text() == "ran"


def test_checkpoints_hold_only_what_weights_only_loads(trained):
    _, run = trained
    checkpoint = torch.load(run / "last_checkpoint.pth", weights_only=True)
    assert checkpoint["args"]["fc_output_dim"] == 32
    assert checkpoint["epoch_num"] == TINY_RUN["epochs_num"]


def test_resume_of_a_finished_run_with_a_test_set_only_tests(trained, tiny_city, capsys):
    workspace, run = trained
    before = (run / "best_model.pth").read_bytes()
    checkpoint = str(run / "last_checkpoint.pth")
    argv = tiny_run_flags(tiny_city, workspace, "--resume_train", checkpoint)
    summary = train.train(config.parse_arguments(argv))
    assert len(summary["history"]) == TINY_RUN["epochs_num"]
    assert set(summary["test"]) == {"R@1", "R@5", "R@10", "R@20"}
    assert (run / "best_model.pth").read_bytes() == before
    assert "Test test / queries_v1: R@1:" in capsys.readouterr().out


# --- nothing overwritten -------------------------------------------------------------------


def test_training_again_into_a_run_folder_is_refused(trained, tiny_city, capsys):
    workspace, run = trained
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, err = error_of(train.main, tiny_run_flags(tiny_city, workspace), capsys)
    assert code == 1
    assert f"{run} already holds a run (best_model.pth, last_checkpoint.pth" in err
    assert "keep both by choosing another --save_dir" in err
    assert f"continue it with --resume_train {run / 'last_checkpoint.pth'}" in err
    assert "replace it with --overwrite" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_overwrite_replaces_the_whole_run(tiny_city, tmp_path):
    train.train(config.parse_arguments(flags(tiny_city, tmp_path, "again")))
    stale = tmp_path / "runs" / "again" / "eval_old_queries"
    stale.mkdir()
    summary = train.train(
        config.parse_arguments(flags(tiny_city, tmp_path, "again", "--overwrite", "--seed", "1"))
    )
    assert not stale.exists()  # results of the replaced model do not linger
    recorded = json.loads((tmp_path / "runs" / "again" / "summary.json").read_text())
    assert recorded["history"] == summary["history"]
    assert json.loads((tmp_path / "runs" / "again" / "args.json").read_text())["seed"] == 1


def test_evaluating_again_is_refused_before_any_descriptor(trained, tiny_city, capsys):
    workspace, run = trained
    model = str(run / "best_model.pth")
    argv = eval_flags(tiny_city, workspace, TINY_RUN_NAME, "--resume_model", model)
    evaluation.main(argv)
    out = run / "eval_test_queries_v1"
    first = (out / "results.json").read_text()
    capsys.readouterr()
    code, err = error_of(evaluation.main, argv, capsys)
    assert code == 1
    assert f"{out} already holds results of this evaluation (predictions.csv, results.json)" in err
    assert (out / "results.json").read_text() == first
    evaluation.main([*argv, "--overwrite"])
    assert json.loads((out / "results.json").read_text())["recalls"] == json.loads(first)["recalls"]


# --- corrupt images ------------------------------------------------------------------------


def corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])  # a JPEG cut short: header, no image data


@pytest.fixture
def damaged_city(tiny_city, tmp_path):
    city = tmp_path / "city"
    shutil.copytree(tiny_city, city)
    return city


def test_group_dataset_draws_another_image_of_the_class(damaged_city, tmp_path):
    from training.data import train_transform

    train_set = load_train_set(damaged_city / "train", config.partition_params(
        config.parse_arguments(["--min_images_per_class", "2"])
    ))  # fmt: skip
    dataset = GroupDataset(train_set, 0, train_transform(32, 0, 0, 0, 0, 0))
    members = dataset.classes[0]
    bad = train_set.paths[members[0]]
    corrupt(damaged_city / "train" / bad)
    torch.manual_seed(0)
    skipped = []
    for _ in range(12):
        image, label, lines = dataset[0]
        assert label == 0 and image.shape == (3, 32, 32)
        skipped += [line for line in lines.split("\n") if line]
    assert skipped and all(line.startswith(f"{bad}\t") for line in skipped)
    assert "corrupt or truncated image data" in skipped[0] or "cannot be read" in skipped[0]


def test_training_skips_corrupt_images_and_counts_them(damaged_city, tmp_path, caplog):
    args = config.parse_arguments(flags(damaged_city, tmp_path, "damaged", "--num_workers", "2"))
    train_set = load_train_set(damaged_city / "train", config.partition_params(args))
    # One unreadable image in every class of the group trained: draws cannot avoid them all.
    damaged = set()
    for members in GroupDataset(train_set, 0, None).classes:
        if len(members) > 1:
            damaged.add(train_set.paths[members[0]])
            corrupt(damaged_city / "train" / train_set.paths[members[0]])
    summary = train.train(args)
    unreadable = summary["unreadable_images"]
    assert unreadable["count"] >= 1 and set(unreadable["files"]) <= damaged
    assert unreadable["skips"] >= unreadable["count"]
    recorded = json.loads((tmp_path / "runs" / "damaged" / "summary.json").read_text())
    assert recorded["unreadable_images"] == unreadable
    first = sorted(unreadable["files"])[0]
    assert any("unreadable train image skipped" in r.message and first in r.message
               for r in caplog.records)  # fmt: skip


def test_a_class_with_no_readable_image_left_is_one_sentence(damaged_city, tmp_path, capsys):
    argv = flags(damaged_city, tmp_path, "hopeless", "--num_workers", "1")
    train_set = load_train_set(damaged_city / "train", config.partition_params(
        config.parse_arguments(argv)
    ))  # fmt: skip
    for member in GroupDataset(train_set, 0, None).classes[0]:
        corrupt(damaged_city / "train" / train_set.paths[member])
    code, err = error_of(train.main, argv, capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]  # the lines before it are progress bars
    assert last.startswith("error: every image of class 0 is unreadable (")
    assert last.endswith("remove or replace them, then --resume_train")
    assert "Traceback" not in err


def test_evaluation_leaves_unreadable_images_out_and_says_so(damaged_city, tmp_path, capsys):
    database = sorted((damaged_city / "test" / "database").rglob("*.jpg"))
    queries = sorted((damaged_city / "test" / "queries_v1").rglob("*.jpg"))
    corrupt(database[3])
    (queries[0]).write_text("not an image")
    evaluation.main(eval_flags(damaged_city, tmp_path, "damaged_eval"))
    printed = capsys.readouterr().out
    assert "(2 unreadable images left out, listed in results.json)" in printed
    results = json.loads(
        (tmp_path / "runs" / "damaged_eval" / "eval_test_queries_v1" / "results.json").read_text()
    )
    assert results["num_database"] == len(database) - 1
    assert results["num_queries"] == len(queries) - 1
    left_out = results["unreadable_images"]
    assert set(left_out) == {
        str(database[3].relative_to(damaged_city / "test")),
        str(queries[0].relative_to(damaged_city / "test")),
    }
    reasons = [
        left_out[str(path.relative_to(damaged_city / "test"))] for path in (database[3], queries[0])
    ]
    assert reasons[0].startswith(f"{database[3]}: ") and "cannot be read" in reasons[0]
    assert reasons[1] == f"{queries[0]}: not an image file (or a format Pillow cannot read)"


# --- the index: verified, written whole ----------------------------------------------------


def saved_flat(folder, count=300, dim=16, seed=0):
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    index, params = build_index(vectors, "flat")
    save_index(index, folder, IndexManifest("flat", dim, count, params=params))
    return index


def test_an_index_replaced_by_another_of_the_same_size_is_refused(tmp_path):
    saved_flat(tmp_path)
    manifest = json.loads((tmp_path / "index_manifest.json").read_text())
    assert manifest["index_type"] == "flat" and len(manifest["index_sha256"]) == 64
    other = np.random.default_rng(9).standard_normal((300, 16)).astype(np.float32)
    faiss.write_index(build_index(other, "hnsw")[0], str(tmp_path / "index.faiss"))
    with pytest.raises(IndexMismatchError, match="is not the index its manifest describes"):
        load_index(tmp_path)
    faiss.write_index(build_index(other, "flat")[0], str(tmp_path / "index.faiss"))
    with pytest.raises(IndexMismatchError, match=r"sha256 differs.*rebuild the index"):
        load_index(tmp_path)
    # A manifest without a checksum (written before it existed) still has its type checked.
    faiss.write_index(build_index(other, "hnsw")[0], str(tmp_path / "index.faiss"))
    del manifest["index_sha256"]
    (tmp_path / "index_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="is a IndexHNSWFlat but its manifest says 'flat'"):
        load_index(tmp_path)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model", "ResNet18", "'model' should be an object with backbone, fc_output_dim"),
        ("dim", "512", "'dim' should be a whole number of descriptor dimensions, not '512'"),
        ("index_type", "annoy", "'index_type' should be one of flat, flat_fp16"),
        ("params", [], "'params' should be an object of search parameters"),
    ],
)
def test_a_hand_edited_manifest_gets_a_sentence(tmp_path, field, value, message):
    saved_flat(tmp_path)
    manifest = json.loads((tmp_path / "index_manifest.json").read_text())
    manifest[field] = value
    (tmp_path / "index_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match=message) as error:
        load_index(tmp_path)
    assert "rebuild the index or restore the manifest" in str(error.value)


@pytest.mark.parametrize("k", [0, -1, 2.5])
def test_search_with_a_bad_k_is_a_clear_value_error(k):
    index, _ = build_index(np.eye(4, dtype=np.float32), "flat")
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        search(index, np.eye(4, dtype=np.float32), k=k)


@pytest.mark.parametrize("cut_at", [1, 2])
def test_a_kill_during_save_index_leaves_a_whole_pair(tmp_path, monkeypatch, cut_at):
    """The save renames twice (index, then manifest); a kill before either leaves a pair."""
    saved_flat(tmp_path, count=300)
    real_replace = os.replace
    calls = []

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == cut_at:
            raise KeyboardInterrupt  # the process dies before this rename
        real_replace(src, dst)

    monkeypatch.setattr("core.index.os.replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        saved_flat(tmp_path, count=500, seed=1)
    monkeypatch.undo()
    index, manifest = load_index(tmp_path)
    expected = 300 if cut_at == 1 else 500  # old pair, or the new one via its pending manifest
    assert index.ntotal == manifest.count == expected


def test_atomic_json_keeps_the_old_file_when_the_write_dies(tmp_path):
    path = tmp_path / "summary.json"
    files.write_json(path, {"best_val_recall1": 1.0})

    def dying(file):
        file.write(b'{"best_val')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.write_whole(path, dying)
    assert json.loads(path.read_text()) == {"best_val_recall1": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_two_writers_of_one_file_use_their_own_temporary_files(tmp_path):
    path = tmp_path / "results.json"
    first = files.stage(path, lambda file: file.write(b'{"writer": 1}'))
    second = files.stage(path, lambda file: file.write(b'{"writer": 2}'))
    assert first != second
    assert files.temporary_siblings(path) == sorted([first, second])
    files.commit(second, path)
    files.commit(first, path)  # the later rename wins, and each file was whole
    assert json.loads(path.read_text()) == {"writer": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_writers_in_threads_leave_one_whole_file(tmp_path):
    path = tmp_path / "summary.json"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: files.write_json(path, {"n": n, "pad": "x" * 10_000}), range(16)))
    assert json.loads(path.read_text())["n"] in range(16)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_file_written_whole_gets_the_mode_of_one_written_plainly(tmp_path):
    (tmp_path / "plain.json").write_text("{}")
    files.write_json(tmp_path / "whole.json", {})
    plain, whole = (tmp_path / "plain.json").stat(), (tmp_path / "whole.json").stat()
    assert whole.st_mode == plain.st_mode


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "best_model.pth"
    files.write_bytes(path, b"old")

    def failing(file):
        file.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.write_whole(path, failing)
    assert path.read_bytes() == b"old"
    assert files.temporary_siblings(path) == []


# --- many processes, one catalog -----------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time
    import duckdb
    con = duckdb.connect(sys.argv[1])
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


def hold_catalog(path: Path, seconds: float) -> subprocess.Popen:
    """Another process that opens the catalog read-write and keeps it for `seconds`."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_locked_catalog_is_a_sentence_after_a_bounded_wait(tmp_path):
    path = tmp_path / "catalog.duckdb"
    connect(path).close()
    holder = hold_catalog(path, 30)
    try:
        for read_only in (False, True):
            start = time.monotonic()
            with pytest.raises(CatalogBusyError) as error:
                connect(path, read_only=read_only, wait_s=0.5)
            assert 0.5 <= time.monotonic() - start < 5
            message = str(error.value)
            assert message.startswith(f"The catalog {path} is locked by another process")
            assert message.endswith("retry later, once that process has finished.")
            assert "Could not set lock" not in message
    finally:
        holder.kill()
        holder.wait()


def test_connect_waits_for_a_short_lock(tmp_path):
    path = tmp_path / "catalog.duckdb"
    connect(path).close()
    holder = hold_catalog(path, 1.0)
    try:
        with connect(path, read_only=True, wait_s=20) as con:
            assert con.execute("SELECT 1").fetchall() == [(1,)]
    finally:
        holder.wait()


def test_a_busy_catalog_loses_no_result_and_sync_records_it(
    trained, tiny_city, tmp_path, monkeypatch, caplog
):
    _, run = trained
    catalog = tmp_path / "catalog.duckdb"
    connect(catalog).close()
    monkeypatch.setenv("COSPLACE_CATALOG_WAIT_S", "0.3")
    holder = hold_catalog(catalog, 60)
    try:
        argv = eval_flags(
            tiny_city, tmp_path, "busy", "--resume_model", str(run / "best_model.pth")
        )
        evaluation.main(argv)
    finally:
        holder.kill()
        holder.wait()
    warning = [r.message for r in caplog.records if "not recorded in the catalog" in r.message]
    assert warning and "they are safe in" in warning[0]
    assert f"python -m data_catalog.sync --workspace {tmp_path}" in warning[0]
    results = json.loads((tmp_path / "runs/busy/eval_test_queries_v1/results.json").read_text())
    with connect(catalog, read_only=True) as con:
        assert list_results(con).empty
    sync.main(["--workspace", str(tmp_path)])
    with connect(catalog, read_only=True) as con:
        first = list_results(con)
    assert first.loc[0, "run"] == "busy" and first.loc[0, "kind"] == "eval"
    assert first.loc[0, "r1"] == pytest.approx(results["recalls"]["R@1"])
    assert first.loc[0, "num_queries"] == results["num_queries"]
    sync.main(["--workspace", str(tmp_path)])  # idempotent: the same rows again
    with connect(catalog, read_only=True) as con:
        assert list_results(con).equals(first)


def test_sync_records_training_runs_from_their_summary(trained, tmp_path):
    workspace, _ = trained
    catalog = tmp_path / "rebuilt.duckdb"
    sync.sync(workspace, catalog)
    with connect(catalog, read_only=True) as con:
        runs = con.execute("SELECT run, kind, fc_output_dim FROM runs ORDER BY run").fetchall()
        results = list_results(con)
    assert (TINY_RUN_NAME, "eval", 32) in runs or (TINY_RUN_NAME, "train", 32) in runs
    assert TINY_RUN_NAME in set(results["run"])


def test_sync_without_runs_names_the_folder(tmp_path, capsys):
    code, err = error_of(sync.main, ["--workspace", str(tmp_path)], capsys)
    assert code == 1 and f"{tmp_path / 'runs'} does not exist: no runs to record" in err


def test_an_ingest_into_a_busy_catalog_gets_the_sentence(tmp_path, monkeypatch, capsys):
    from data_catalog import ingest

    catalog = tmp_path / "catalog.duckdb"
    connect(catalog).close()
    monkeypatch.setenv("COSPLACE_CATALOG_WAIT_S", "0.3")
    holder = hold_catalog(catalog, 60)
    try:
        code, err = error_of(
            ingest.main, [str(tmp_path), "--db", str(catalog), "--no_progress"], capsys
        )
    finally:
        holder.kill()
        holder.wait()
    assert code == 1
    assert f"error: The catalog {catalog} is locked by another process that is writing" in err
    assert "Traceback" not in err and "Could not set lock" not in err

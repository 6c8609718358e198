"""Training and evaluation command lines on the tiny synthetic city."""

import json
import math
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import TINY_RUN_NAME, tiny_training_flags

from app import results_view as rv
from core.errors import UserError
from core.model import model_from_checkpoint
from data_catalog import runs
from data_catalog.catalog import connect
from data_catalog.results import list_results
from training import eval as evaluation
from training import schedule, train
from training.config import parse_arguments


def train_args(city, workspace, name, *extra):
    settings = {"iterations_per_epoch": 3, "epochs_num": 2, "groups_num": 2}
    return tiny_training_flags(
        workspace, "--dataset_folder", str(city), "--save_dir", name, *extra, **settings
    )


@pytest.fixture(scope="module")
def trained_run(tiny_run):
    _, run, summary = tiny_run
    return run, summary


def test_train_writes_checkpoints_and_test_recalls(trained_run):
    run, summary = trained_run
    assert {"best_model.pth", "last_checkpoint.pth", "summary.json", "args.json"} <= {
        p.name for p in run.iterdir()
    }
    assert len(summary["history"]) == 2
    assert [h["group"] for h in summary["history"]] == [0, 1]
    assert set(summary["test"]) == {"R@1", "R@5", "R@10", "R@20"}
    checkpoint = torch.load(run / "last_checkpoint.pth", weights_only=True)
    assert checkpoint["epoch_num"] == 2
    assert len(checkpoint["classifiers_state_dict"]) == 2
    model = model_from_checkpoint(run / "best_model.pth")
    assert (model.backbone_name, model.fc_output_dim) == ("ResNet18", 32)


def test_eval_prints_reference_format_and_saves_predictions(trained_run, tiny_city, capsys):
    run, _ = trained_run
    evaluation.main(
        [
            "--test_set_folder", str(tiny_city / "test"),
            "--resume_model", str(run / "best_model.pth"),
            "--backbone", "ResNet18",
            "--fc_output_dim", "32",
            "--queries_folder", "queries_v2",
            "--device", "cpu",
            "--num_workers", "0",
            "--num_preds_to_save", "3",
            "--save_descriptors",
            "--workspace", str(run.parent.parent),
            "--save_dir", TINY_RUN_NAME,
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert re.search(r"R@1: \d+\.\d, R@5: \d+\.\d, R@10: \d+\.\d, R@20: \d+\.\d$", printed.strip())
    out = run / "eval_test_queries_v2"
    database_paths = (out / "database_paths.txt").read_text().split()
    queries_paths = (out / "queries_paths.txt").read_text().split()
    assert database_paths == sorted(database_paths) and queries_paths == sorted(queries_paths)
    assert np.load(out / "database_descriptors.npy").shape == (len(database_paths), 32)
    assert np.load(out / "queries_descriptors.npy").shape == (len(queries_paths), 32)
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "query,rank,prediction,distance,correct"
    assert len(rows) == 1 + len(queries_paths) * 20
    assert len(list((out / "preds").glob("*.jpg"))) == len(queries_paths)
    results = json.loads((out / "results.json").read_text())
    assert results["num_queries"] == len(queries_paths)
    with connect(run.parent.parent / "catalog.duckdb", read_only=True) as con:
        recorded = list_results(con).set_index("queries")
    assert recorded.loc["queries_v2", "run"] == TINY_RUN_NAME
    assert recorded.loc["queries_v2", "r1"] == pytest.approx(results["recalls"]["R@1"])
    assert recorded.loc["queries_v1", "kind"] == "eval"  # the run was re-recorded by eval


def test_the_results_page_recall_at_25_m_equals_the_evaluations(trained_run, tiny_city, tmp_path):
    """The Results page recomputes recall from predictions.csv and the names' positions; at
    the evaluation's 25 m it gives training.eval's numbers."""
    run, _ = trained_run
    flags = [
        "--test_set_folder", str(tiny_city / "test"),
        "--queries_folder", "queries_v1",
        "--resume_model", str(run / runs.BEST_MODEL),
        "--fc_output_dim", "32",
        "--resize_test_imgs", "--image_size", "64", "--infer_batch_size", "32",
        "--device", "cpu", "--num_workers", "0",
        "--workspace", str(tmp_path), "--save_dir", "recall",
    ]  # fmt: skip
    result = evaluation.run(parse_arguments(flags))
    out = runs.evaluation_folder(tmp_path / "runs" / "recall", tiny_city / "test", "queries_v1")
    page = rv.recall_at_threshold(rv.load_predictions(out / runs.PREDICTIONS), 25.0)
    assert page == pytest.approx({f"R@{n}": value for n, value in result.recalls.items()})


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_gives_the_same_model_as_an_uninterrupted_run(
    tiny_city, tmp_path, monkeypatch, schedule
):
    def run(name, *extra):
        flags = train_args(tiny_city, tmp_path, name, "--lr_schedule", schedule, *extra)
        train.train(parse_arguments(flags))

    run("straight")
    if schedule == "cosine":  # after the last of 2 x 3 steps, at step 5 of 6
        path = tmp_path / "runs" / "straight" / "last_checkpoint.pth"
        saved = torch.load(path, weights_only=True)
        lr = saved["optimizer_state_dict"]["param_groups"][0]["lr"]
        assert lr == pytest.approx(saved["args"]["lr"] * (1 + math.cos(math.pi * 5 / 6)) / 2)
        # A classifier first trained in the last epoch needs its full lr (set_network_lr).
        for optimizer in saved["optimizers_state_dict"]:
            assert optimizer["param_groups"][0]["lr"] == saved["args"]["classifiers_lr"]
    validate, calls = train.validate, []

    def interrupted_in_the_second_epoch(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return validate(*args)

    monkeypatch.setattr(train, "validate", interrupted_in_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run("cut")
    monkeypatch.setattr(train, "validate", validate)
    cut = tmp_path / "runs" / "cut" / "last_checkpoint.pth"
    assert torch.load(cut, weights_only=True)["epoch_num"] == 1
    run("cut", "--resume_train", str(cut))
    straight = torch.load(tmp_path / "runs" / "straight" / "last_checkpoint.pth", weights_only=True)
    resumed = torch.load(cut, weights_only=True)
    for key, tensor in straight["model_state_dict"].items():
        assert torch.equal(tensor, resumed["model_state_dict"][key]), key
    for a, b in zip(
        straight["classifiers_state_dict"], resumed["classifiers_state_dict"], strict=True
    ):
        assert torch.equal(a["weight"], b["weight"])
    assert straight["best_val_recall1"] == resumed["best_val_recall1"]


def test_resume_with_another_partition_is_refused(trained_run, tiny_city, tmp_path):
    run, _ = trained_run
    args = train_args(
        tiny_city, tmp_path, "other", "--resume_train", str(run / "last_checkpoint.pth")
    )
    with pytest.raises(UserError, match="classes per group"):
        train.train(parse_arguments([*args, "--N", "3"]))


def test_a_kill_during_a_checkpoint_write_leaves_the_last_one_whole(tmp_path, monkeypatch):
    path = tmp_path / runs.LAST_CHECKPOINT
    runs.save_checkpoint(tmp_path, {"epoch_num": 1})

    def dying_save(obj, file):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        runs.save_checkpoint(tmp_path, {"epoch_num": 2})
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch_num": 1}


def test_too_few_classes_for_a_batch_is_explained(tiny_city, tmp_path):
    args = parse_arguments(train_args(tiny_city, tmp_path, "big", "--batch_size", "64"))
    with pytest.raises(UserError, match="fewer classes than the batch"):
        train.train(args)


def test_missing_folder_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_arguments(["--train_set_folder", str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    assert f"--train_set_folder {tmp_path / 'nope'} is not a folder" in capsys.readouterr().err


def test_reference_flags_and_defaults():
    args = parse_arguments([])
    assert (args.M, args.alpha, args.N, args.L, args.groups_num) == (10, 30, 5, 2, 8)
    assert (args.batch_size, args.epochs_num, args.iterations_per_epoch) == (32, 50, 10_000)
    assert (args.lr, args.classifiers_lr, args.image_size) == (1e-5, 0.01, 512)
    assert (args.min_images_per_class, args.fc_output_dim, args.backbone) == (10, 512, "ResNet18")
    assert args.positive_dist_threshold == 25


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ddp_with_two_processes_on_cpu(tiny_city, tmp_path):
    # A free port, so that two test runs on one machine do not collide.
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(free_port()), "-m", "training.train",
        *train_args(tiny_city, tmp_path, "ddp", "--epochs_num", "1"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "ddp" / "summary.json").read_text())
    assert len(summary["history"]) == 1 and "test" in summary
    # The sharded evaluation gathers every row: recalls match a single-process evaluation.
    single = evaluation.run(
        parse_arguments(
            [
                "--test_set_folder", str(tiny_city / "test"),
                "--resume_model", str(tmp_path / "runs" / "ddp" / "best_model.pth"),
                "--fc_output_dim", "32", "--device", "cpu", "--num_workers", "0",
                "--resize_test_imgs", "--image_size", "64",
                "--workspace", str(tmp_path), "--save_dir", "single",
            ]
        )
    )  # fmt: skip
    assert {f"R@{n}": v for n, v in single.recalls.items()} == pytest.approx(summary["test"])


def test_cosine_schedule_decays_the_network_lr():
    args = parse_arguments(["--lr_schedule", "cosine", "--epochs_num", "4"])
    args.iterations_per_epoch, total = 10, 40
    factors = [schedule.learning_rate_factor(args, step) for step in (0, total // 2, total)]
    assert factors == pytest.approx([1.0, 0.5, 0.0])
    network = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=args.lr)
    schedule.set_network_lr(args, network, 3 * total // 4)
    assert network.param_groups[0]["lr"] == pytest.approx(args.lr * (1 - 0.5**0.5) / 2)
    constant = parse_arguments(["--epochs_num", "4"])
    constant.iterations_per_epoch = 10
    assert schedule.learning_rate_factor(constant, 35) == 1.0


@pytest.mark.parametrize("grayscale", [0.0, 1.0])
def test_train_transform_greys_images_only_when_asked(grayscale):
    from PIL import Image

    from training.data import train_transform

    red = Image.new("RGB", (48, 48), (200, 30, 30))
    transform = train_transform(32, 0, 0, 0, 0, 0, grayscale=grayscale)
    pixels = transform(red) * torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    pixels += torch.tensor([0.485, 0.456, 0.406])[:, None, None]  # back to [0, 1]
    assert pixels.shape == (3, 32, 32)
    spread = float(pixels.amax(0).sub(pixels.amin(0)).max())
    assert (spread < 1e-5) == (grayscale == 1.0)

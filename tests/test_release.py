"""The shipped demo model: export with its record, install after checks, compare."""

import json
import shutil

import pytest
import torch
from conftest import tiny_training_flags

from core.errors import UserError
from core.index import file_sha256
from core.model import model_from_checkpoint
from data_catalog.name_source import walk_images
from training import release, train
from training.config import parse_arguments


@pytest.fixture(scope="module")
def released(tiny_city, tmp_path_factory):
    """A tiny run trained on train/ and val/ only, exported into a release folder."""
    workspace = tmp_path_factory.mktemp("release_workspace")
    argv = tiny_training_flags(
        workspace, "--train_set_folder", str(tiny_city / "train"), "--val_set_folder",
        str(tiny_city / "val"), "--save_dir", "rel", epochs_num=2, groups_num=2,
        iterations_per_epoch=3,
    )  # fmt: skip
    train.train(parse_arguments(argv))
    out = workspace / "models"
    release.main(
        ["export", "--run_dir", str(workspace / "runs" / "rel"), "--out", str(out)]
        + ["--dataset_folder", str(tiny_city), "--workspace", str(workspace)]
    )
    return workspace, out


def release_args(workspace, out, city, *extra):
    return ["--out", str(out), "--dataset_folder", str(city), "--workspace", str(workspace), *extra]


def test_export_writes_fp16_weights_and_a_complete_record(released, tiny_city):
    workspace, out = released
    record = json.loads((out / release.RECORD).read_text())
    weights = out / release.WEIGHTS
    assert record["weights_sha256"] == file_sha256(weights)
    state = torch.load(weights, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert record["iterations"] == 6 and record["images_seen"] == 24
    assert len(record["val_curve"]) == 2
    assert all("minutes" in point and "R@1" in point for point in record["val_curve"])
    assert set(record["recalls"]) == {
        "val/queries",
        "val/queries_v1",
        "test/queries_v1",
        "test/queries_v2",
    }
    assert record["train_flags"]["image_size"] == 64
    assert record["machine"]["cpu"] and record["wall_time_s"] > 0
    assert record["city"]["images"] > 0 and len(record["city"]["sha256"]) == 64
    # the released weights are the ones evaluated: their test recall is the record's
    results = workspace / "runs" / "rel_release" / "eval_test_queries_v2" / "results.json"
    assert json.loads(results.read_text())["recalls"] == record["recalls"]["test/queries_v2"]


def test_export_refuses_to_replace_a_release_without_overwrite(released, tiny_city):
    workspace, out = released
    before = (out / release.RECORD).read_bytes()
    argv = ["export", "--run_dir", str(workspace / "runs" / "rel")]
    with pytest.raises(SystemExit) as stop:
        release.main(argv + release_args(workspace, out, tiny_city))
    assert stop.value.code == 1
    assert (out / release.RECORD).read_bytes() == before


def test_install_fills_a_run_folder_the_app_can_load(released, tiny_city, tmp_path):
    workspace, out = released
    run = tmp_path / "runs" / "demo"
    release.main(["install", "--run_dir", str(run), *release_args(workspace, out, tiny_city)])
    model = model_from_checkpoint(run / "best_model.pth")
    assert model.aggregation[3].weight.dtype == torch.float32
    summary = json.loads((run / "summary.json").read_text())
    assert summary["release"]["commit"] == json.loads((out / release.RECORD).read_text())["commit"]
    assert "test/queries_v1" in summary["release"]["test"]
    # a second install of the same model changes nothing and needs no --overwrite
    release.main(["install", "--run_dir", str(run), *release_args(workspace, out, tiny_city)])


def test_install_refuses_weights_that_differ_from_the_record(released, tiny_city, tmp_path):
    workspace, out = released
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    with open(tampered / release.WEIGHTS, "r+b") as file:
        file.seek(-10, 2)
        file.write(b"0123456789")
    with pytest.raises(release.ReleaseError, match="sha256 differs"):
        release.check_release(tampered, tiny_city)


def test_install_refuses_a_city_rendered_differently(released, tiny_city, tmp_path):
    workspace, out = released
    city = tmp_path / "city"
    shutil.copytree(tiny_city, city)
    first = city / walk_images(city)[0][0]  # the sample starts at the first image
    first.write_bytes(first.read_bytes()[:-1] + b"\0")
    with pytest.raises(release.ReleaseError, match="is not the one the shipped model was trained"):
        release.check_release(out, city)


def test_install_keeps_another_model_unless_overwrite(released, tiny_city, tmp_path):
    workspace, out = released
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    (run / "best_model.pth").write_bytes(b"someone else's model")
    argv = ["install", "--run_dir", str(run), *release_args(workspace, out, tiny_city)]
    with pytest.raises(SystemExit):
        release.main(argv)
    assert (run / "best_model.pth").read_bytes() == b"someone else's model"
    release.main([*argv, "--overwrite"])
    assert file_sha256(run / "best_model.pth") == file_sha256(out / release.WEIGHTS)


def test_a_malformed_record_is_one_sentence(tmp_path, tiny_city):
    (tmp_path / release.RECORD).write_text("[]")
    with pytest.raises(UserError, match="holds no JSON object"):
        release.check_release(tmp_path, tiny_city)


def test_compare_prints_both_curves(released, tiny_city, capsys):
    workspace, out = released
    argv = ["compare", "--run_dir", str(workspace / "runs" / "rel")]
    release.main(argv + release_args(workspace, out, tiny_city))
    printed = capsys.readouterr().out
    assert "recorded R@1" in printed and "best val R@1" in printed


def test_the_claims_record_names_the_command_with_its_budget():
    from training.release import claims_command

    default = {"dataset_folder": "data/synthetic_demo", "budget": {"iterations_per_epoch": 300}}
    larger = {"dataset_folder": "city", "budget": {"iterations_per_epoch": 700, "seeds": [0]}}
    assert claims_command("data", default) == (
        "python -m training.claims --dataset_folder data/synthetic_demo --workspace data"
    )
    assert claims_command("w", larger) == (
        "python -m training.claims --dataset_folder city --workspace w --iterations_per_epoch 700"
    )

"""Set-up shared by the test files: the tiny synthetic city, the flags of a tiny training and
one tiny trained run."""

import pytest

# A tiny CPU training: 1 epoch of 2 iterations of 4 images at 64 px, 32-D descriptors.
TINY_TRAINING = {
    "image_size": 64,
    "batch_size": 4,
    "iterations_per_epoch": 2,
    "epochs_num": 1,
    "groups_num": 1,
    "min_images_per_class": 2,
    "device": "cpu",
    "num_workers": 0,
    "fc_output_dim": 32,
    "infer_batch_size": 32,
}


# The shared run: two groups, one epoch each, so that resuming and group order are exercised.
TINY_RUN = {"iterations_per_epoch": 3, "epochs_num": 2, "groups_num": 2}
TINY_RUN_NAME = "tiny_run"


def tiny_training_flags(workspace, *extra: str, **settings) -> list[str]:
    """TINY_TRAINING's flags (settings override them, e.g. epochs_num=2) into `workspace`,
    test images resized like the training crops, then `extra`."""
    values = {**TINY_TRAINING, **settings}
    flags = [word for name, value in values.items() for word in (f"--{name}", str(value))]
    return [*flags, "--resize_test_imgs", "--workspace", str(workspace), *extra]


def eval_flags(city, workspace, name, *extra):
    """A tiny CPU evaluation into run `name` (the 32-D, 64 px sizes of TINY_TRAINING)."""
    return [
        "--test_set_folder", str(city / "test"),
        "--fc_output_dim", "32",
        "--image_size", "64",
        "--resize_test_imgs",
        "--device", "cpu",
        "--num_workers", "0",
        "--infer_batch_size", "32",
        "--workspace", str(workspace),
        "--save_dir", name,
        *extra,
    ]  # fmt: skip


def error_of(main, argv, capsys) -> tuple[int, str]:
    """Run a command line's main; its exit code and what it wrote to stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory):
    """The embedded synthetic city's tiny preset, built once for the whole test session."""
    from data_catalog.synthetic.__main__ import main

    out = tmp_path_factory.mktemp("synthetic") / "tiny"
    main(["--preset", "tiny", "--seed", "0", "--out", str(out), "--no_progress"])
    return out


def tiny_run_flags(city, workspace, *extra: str) -> list[str]:
    """The flags the shared run was trained with (its folder, its partition), then `extra`."""
    folders = ["--dataset_folder", str(city), "--save_dir", TINY_RUN_NAME]
    return tiny_training_flags(workspace, *folders, *extra, **TINY_RUN)


@pytest.fixture(scope="session")
def tiny_run(tiny_city, tmp_path_factory):
    """One tiny trained run (tested at the end), trained once for the whole session:
    (workspace, run folder, the summary training returned)."""
    from training import train
    from training.config import parse_arguments

    workspace = tmp_path_factory.mktemp("tiny_run")
    summary = train.train(parse_arguments(tiny_run_flags(tiny_city, workspace)))
    return workspace, workspace / "runs" / TINY_RUN_NAME, summary

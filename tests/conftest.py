"""Set-up shared by the test files: the tiny synthetic city, and the flags of a tiny training."""

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


def tiny_training_flags(workspace, *extra: str, **settings) -> list[str]:
    """TINY_TRAINING's flags (settings override them, e.g. epochs_num=2) into `workspace`,
    test images resized like the training crops, then `extra`."""
    values = {**TINY_TRAINING, **settings}
    flags = [word for name, value in values.items() for word in (f"--{name}", str(value))]
    return [*flags, "--resize_test_imgs", "--workspace", str(workspace), *extra]


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory):
    """The embedded synthetic city's tiny preset, built once for the whole test session."""
    from data_catalog.synthetic.__main__ import main

    out = tmp_path_factory.mktemp("synthetic") / "tiny"
    main(["--preset", "tiny", "--seed", "0", "--out", str(out), "--no_progress"])
    return out

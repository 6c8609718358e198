"""The triplet baseline: mining radii, the loss, and one tiny epoch of the command line."""

import json
import re

import numpy as np
import torch

from core.model import CosPlaceNet
from training.baselines import triplet


def line_cache():
    """Images on a street (east = metres from the query at row 0), descriptors on a circle.

    Descriptor distance to the query grows with the angle: rows 1-2 lie within 10 m, row 3
    (16 m) is the query's look-alike but neither positive nor negative, rows 4-7 beyond 25 m.
    """
    east = np.array([0, 8, 5, 16, 30, 40, 60, 100], dtype=np.float64)
    angles = np.radians([0, 40, 20, 1, 50, 10, 30, 5])
    descriptors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    return descriptors, np.stack([east, np.zeros_like(east)], axis=1)


def test_mining_takes_the_closest_positive_within_10m_and_hardest_negatives_beyond_25m():
    descriptors, utm = line_cache()
    queries, positives, negatives = triplet.mine(descriptors, utm, np.array([0]), 3)
    assert queries.tolist() == [0]
    assert positives.tolist() == [2]  # 5 m and 20 degrees: nearer in descriptor than row 1
    assert negatives.tolist() == [[7, 5, 6]]  # beyond 25 m, hardest (most similar) first


def test_mining_skips_queries_without_a_positive_or_enough_negatives():
    descriptors, utm = line_cache()
    queries, _, _ = triplet.mine(descriptors, utm, np.array([0, 7]), 3)
    assert queries.tolist() == [0]  # row 7 is 40 m from everything: no positive
    queries, _, negatives = triplet.mine(descriptors, utm, np.array([0]), 5)
    assert queries.tolist() == [] and negatives.shape == (0, 5)


def test_crops_of_the_query_panorama_are_not_positives():
    descriptors, utm = line_cache()
    places = np.array(["a", "b", "a", "c", "d", "e", "f", "g"], dtype=object)
    _, positives, _ = triplet.mine(descriptors, utm, np.array([0]), 2, places=places)
    assert positives.tolist() == [1]  # row 2 is closer in descriptor but the same panorama
    found = triplet.geo_positives(utm, 10.0, places)
    assert [sorted(p.tolist()) for p in found[:3]] == [[1], [0, 2, 3], [1]]


def test_triplet_loss_decreases_when_training_on_fixed_tuples():
    torch.manual_seed(0)
    # Eval mode: batch norm's running statistics stay fixed, so only the weights move.
    model = CosPlaceNet("ResNet18", 16).eval()
    images = torch.randn(2 * (2 + 2), 3, 32, 32)  # two tuples: query, positive, 2 negatives
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(3):
        loss = triplet.triplet_loss(model(images), 2, margin=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0 and losses[-1] < losses[0]


def test_command_line_trains_one_tiny_epoch(tiny_city, tmp_path, capsys):
    triplet.main(
        [
            "--dataset_folder", str(tiny_city),
            "--image_size", "64",
            "--resize_test_imgs",
            "--batch_size", "2",
            "--negs_num_per_query", "3",
            "--cache_refresh_rate", "8",
            "--neg_samples_num", "40",
            "--iterations_per_epoch", "2",
            "--epochs_num", "1",
            "--device", "cpu",
            "--num_workers", "0",
            "--fc_output_dim", "32",
            "--infer_batch_size", "32",
            "--workspace", str(tmp_path),
        ]
    )  # fmt: skip
    run = tmp_path / "runs" / "triplet"
    assert (run / "best_model.pth").is_file()
    printed = capsys.readouterr().out
    assert re.search(r"Test test / queries_v1: R@1: \d+\.\d, R@5: \d+\.\d, R@10", printed)
    summary = json.loads((run / "summary.json").read_text())
    epoch = summary["history"][0]
    assert epoch["mining_seconds"] > 0 and epoch["images_per_s"] > 0
    assert set(summary["test"]) == {"R@1", "R@5", "R@10", "R@20"}

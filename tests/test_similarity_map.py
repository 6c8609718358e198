"""core.similarity_map: where the similarity of a pair comes from, on hand-made networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.model import CosPlaceNet, GeM, L2Norm
from core.similarity_map import similarity_maps, upsample


class HandMadeNet(nn.Module):
    """A CosPlaceNet in miniature: a 1x1 convolution and ReLU as the backbone (so a black
    pixel gives a zero feature vector), then CosPlace's aggregation with a zero bias."""

    def __init__(self, channels: int = 6, dim: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.backbone = nn.Sequential(nn.Conv2d(3, channels, 1, bias=False), nn.ReLU())
        self.aggregation = nn.Sequential(
            L2Norm(), GeM(), nn.Flatten(), nn.Linear(channels, dim), L2Norm()
        )
        with torch.no_grad():
            self.backbone[0].weight.abs_()  # positive weights: a lit pixel has features
            self.aggregation[3].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aggregation(self.backbone(x))


def lit_right_half(seed: int, size: int = 8) -> torch.Tensor:
    image = torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed)) + 0.1
    image[:, :, : size // 2] = 0.0  # the left half is black: no features there
    return image


def test_no_heat_where_the_feature_map_is_zero():
    model = HandMadeNet()
    maps = similarity_maps(model, lit_right_half(1), lit_right_half(2))
    for heat in (maps.heat_a, maps.heat_b):
        assert heat.shape == (8, 8)
        assert np.all(heat[:, :4] == 0.0)
        assert heat[:, 4:].sum() > 0.0


def test_contributions_add_up_to_the_similarity():
    """GeM is homogeneous of degree 1 and the bias is zero: the signed contributions of each
    image sum to the cosine similarity of the two descriptors the network gives."""
    model = HandMadeNet()
    a, b = torch.rand(3, 8, 8) + 0.1, torch.rand(3, 6, 10) + 0.1
    maps = similarity_maps(model, a, b)
    with torch.no_grad():
        cosine = float((model(a[None]) * model(b[None])).sum())
    assert maps.similarity == pytest.approx(cosine, abs=1e-6)
    assert maps.contribution_a.sum() == pytest.approx(cosine, abs=1e-4)
    assert maps.contribution_b.sum() == pytest.approx(cosine, abs=1e-4)
    assert maps.contribution_b.shape == (6, 10)


def test_swapping_the_images_swaps_the_maps():
    model = CosPlaceNet("ResNet18", 16).eval()
    a, b = torch.rand(3, 64, 64), torch.rand(3, 64, 96)
    forward, backward = similarity_maps(model, a, b), similarity_maps(model, b, a)
    np.testing.assert_allclose(forward.heat_a, backward.heat_b, atol=1e-6)
    np.testing.assert_allclose(forward.heat_b, backward.heat_a, atol=1e-6)
    assert forward.similarity == pytest.approx(backward.similarity, abs=1e-6)
    # ResNet-18 downsamples by 32: 64x64 -> 2x2, 64x96 -> 2x3; heat is never negative.
    assert forward.heat_a.shape == (2, 2) and forward.heat_b.shape == (2, 3)
    assert (forward.heat_a >= 0).all() and (forward.heat_b >= 0).all()


def test_training_mode_is_restored():
    model = HandMadeNet().train()
    similarity_maps(model, torch.rand(3, 4, 4), torch.rand(3, 4, 4))
    assert model.training


def test_upsample_covers_the_image_and_stays_non_negative():
    heat = np.array([[0.0, 1.0], [2.0, 0.0]])
    big = upsample(heat, 40, 60)
    assert big.shape == (40, 60) and big.min() >= 0.0
    assert big[:10, :10].mean() < big[-10:, :10].mean()  # the bright corner stays bright

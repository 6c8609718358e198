"""Where the similarity of two photos comes from: one heat map over each photo's feature map.

For a query and a database image, s = <d_a, d_b> is the cosine similarity of their
descriptors. The heat map of image a is, at each position (i, j) of the feature map that
GeM pools, the first-order contribution of that position to s (gradient times activation,
Grad-CAM style but per position rather than per channel), clamped at zero:

    contribution_a(i, j) = sum_c  x_a[c, i, j] * ds / dx_a[c, i, j]

and the same for image b with the roles swapped. Two choices make these contributions add
up to the similarity: x is the feature map after the aggregation's first layer (the
per-position L2Norm; on the backbone's raw output gradient times activation is zero at
every position, since a per-position-normalised function does not change when one
position is scaled), and the descriptor's final L2 norm is held constant in the gradient
(otherwise the contributions would sum to zero, the norm absorbing any common scaling).
GeM is homogeneous of degree 1, so over all positions the contributions of one image sum to
s minus the linear layer's bias term <bias, d_b> / |W g_a + bias|.

What it shows: which regions of each photo, through the model's own features, raise the
similarity of this pair. What it does not: correspondences (which region of a matches which
region of b), evidence against the match (negative contributions are clamped away), or more
than a first-order, local account of a non-linear network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class SimilarityMaps:
    similarity: float  # cosine similarity of the two descriptors
    contribution_a: np.ndarray  # [h_a, w_a] signed, on image a's feature-map grid
    contribution_b: np.ndarray  # [h_b, w_b]

    @property
    def heat_a(self) -> np.ndarray:
        return np.clip(self.contribution_a, 0.0, None)

    @property
    def heat_b(self) -> np.ndarray:
        return np.clip(self.contribution_b, 0.0, None)


def _feature_map(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """The map GeM pools: the backbone's output after the per-position L2Norm, as a leaf."""
    with torch.no_grad():
        features = model.aggregation[0](model.backbone(image))
    return features.detach().requires_grad_(True)


def _descriptor(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The descriptor from the pooled map, its final L2 norm held constant (see above)."""
    raw = model.aggregation[1:-1](features)  # pooling, flatten, linear
    return raw / raw.norm(dim=1, keepdim=True).detach().clamp(min=1e-12)


def similarity_maps(
    model: nn.Module, image_a: torch.Tensor, image_b: torch.Tensor
) -> SimilarityMaps:
    """Contribution maps of one pair of [3, H, W] image tensors (sizes may differ).

    `model` is a CosPlaceNet (backbone, then aggregation = L2Norm, pooling, Flatten, Linear,
    L2Norm). The backbone runs without gradients (only the aggregation is differentiated),
    so a pair costs two forward passes and a backward pass through the pooling and the
    linear layer only.
    """
    was_training = model.training
    model.eval()
    try:
        features_a = _feature_map(model, image_a.unsqueeze(0))
        features_b = _feature_map(model, image_b.unsqueeze(0))
        with torch.enable_grad():
            similarity = (_descriptor(model, features_a) * _descriptor(model, features_b)).sum()
            grad_a, grad_b = torch.autograd.grad(similarity, [features_a, features_b])
    finally:
        model.train(was_training)

    def contribution(features: torch.Tensor, grad: torch.Tensor) -> np.ndarray:
        return (features.detach() * grad).sum(dim=1)[0].double().numpy()

    return SimilarityMaps(
        float(similarity.detach()),
        contribution(features_a, grad_a),
        contribution(features_b, grad_b),
    )


def upsample(heat: np.ndarray, height: int, width: int) -> np.ndarray:
    """A heat map stretched bilinearly over an image of height x width pixels."""
    tensor = torch.from_numpy(np.ascontiguousarray(heat, dtype=np.float32))[None, None]
    resized = torch.nn.functional.interpolate(
        tensor, size=(height, width), mode="bilinear", align_corners=False
    )
    return resized[0, 0].clamp(min=0).numpy()

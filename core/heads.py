"""Margin-based classifier heads: one per CosPlace group, discarded after training.

Both take L2-normalised descriptors and the class labels, and return logits for a plain
cross-entropy loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _CosineHead(nn.Module):
    def __init__(self, in_features: int, out_features: int, s: float, m: float) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.s = s
        self.m = m
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(inputs, dim=1), F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, s={self.s}, m={self.m}"


class CosFace(_CosineHead):
    """Large Margin Cosine Loss (LMCL): logits = s * (cos(theta) - m * onehot)."""

    def __init__(self, in_features: int, out_features: int, s: float = 30.0, m: float = 0.40):
        super().__init__(in_features, out_features, s, m)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = self.cosine(inputs)
        one_hot = F.one_hot(labels, self.out_features).to(cosine.dtype)
        return self.s * (cosine - self.m * one_hot)


class ArcFace(_CosineHead):
    """Additive angular margin: logits = s * cos(theta + m) for the true class."""

    def __init__(self, in_features: int, out_features: int, s: float = 30.0, m: float = 0.50):
        super().__init__(in_features, out_features, s, m)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = self.cosine(inputs).clamp(-1.0, 1.0)
        sine = torch.sqrt((1.0 - cosine * cosine).clamp(min=0.0))
        with_margin = cosine * math.cos(self.m) - sine * math.sin(self.m)
        # Past theta = pi - m, cos(theta + m) stops decreasing; the usual fix keeps the
        # target logit monotonic by falling back to a cosine-margin penalty there.
        threshold = math.cos(math.pi - self.m)
        fallback = cosine - math.sin(math.pi - self.m) * self.m
        with_margin = torch.where(cosine > threshold, with_margin, fallback)
        one_hot = F.one_hot(labels, self.out_features).to(cosine.dtype)
        return self.s * (one_hot * with_margin + (1.0 - one_hot) * cosine)


HEADS = {"cosface": CosFace, "arcface": ArcFace}

import math

import torch
import torch.nn.functional as F

from core.heads import ArcFace, CosFace

# One descriptor x = (3, 4), i.e. (0.6, 0.8) once normalised, against four unit class weights
# chosen so that its cosines are exact: (1, 0) -> 0.6, (0, 1) -> 0.8, (0.8, -0.6) -> 0.48 - 0.48
# = 0, and (-0.6, -0.8) = -x -> -1. Row i of the batch is x with true class i.
UNIT_WEIGHTS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, -0.6], [-0.6, -0.8]])
X = torch.tensor([[3.0, 4.0]] * 4)
LABELS = torch.tensor([0, 1, 2, 3])


def _with_weights(head, weights):
    with torch.no_grad():
        head.weight.copy_(weights)
    return head


def test_cosface_logits_from_the_equation_by_hand():
    """CosFace (LMCL), s = 30, m = 0.4: the true class gets s * (cos - m), the others s * cos.
    Others: 30 * 0.6 = 18, 30 * 0.8 = 24, 30 * 0 = 0, 30 * -1 = -30. True class:
    30 * (0.6 - 0.4) = 6, 30 * (0.8 - 0.4) = 12, 30 * (0 - 0.4) = -12, 30 * (-1 - 0.4) = -42."""
    head = _with_weights(CosFace(2, 4), UNIT_WEIGHTS)
    assert (head.s, head.m) == (30.0, 0.4)
    expected = torch.tensor(
        [
            [6.0, 24.0, 0.0, -30.0],
            [18.0, 12.0, 0.0, -30.0],
            [18.0, 24.0, -12.0, -30.0],
            [18.0, 24.0, 0.0, -42.0],
        ]
    )
    torch.testing.assert_close(head(X, LABELS), expected, rtol=0, atol=1e-4)


def test_arcface_logits_from_the_equation_by_hand():
    """ArcFace, s = 30, m = 0.5: the true class gets s * cos(theta + m), the others s * cos.
    With cos(0.5) = 0.8775826 and sin(0.5) = 0.4794255, cos(theta + m) = cos cos(m) - sin sin(m):
    cos 0.6 (sin 0.8): 0.6 * 0.8775826 - 0.8 * 0.4794255 = 0.1430091, x 30 = 4.290273;
    cos 0.8 (sin 0.6): 0.8 * 0.8775826 - 0.6 * 0.4794255 = 0.4144107, x 30 = 12.432322;
    cos 0 (sin 1): 0 - 1 * 0.4794255 = -0.4794255, x 30 = -14.382766.
    cos -1 is theta = pi, past pi - m, where theta + m would wrap: the code falls back to
    s * (cos - m sin(m)) = 30 * (-1 - 0.5 * 0.4794255) = 30 * -1.2397128 = -37.191383."""
    head = _with_weights(ArcFace(2, 4), UNIT_WEIGHTS)
    assert (head.s, head.m) == (30.0, 0.5)
    expected = torch.tensor(
        [
            [4.290273, 24.0, 0.0, -30.0],
            [18.0, 12.432322, 0.0, -30.0],
            [18.0, 24.0, -14.382766, -30.0],
            [18.0, 24.0, 0.0, -37.191383],
        ]
    )
    torch.testing.assert_close(head(X, LABELS), expected, rtol=0, atol=1e-4)


def test_heads_train_to_separate_classes():
    torch.manual_seed(0)
    centers = F.normalize(torch.randn(4, 16))
    labels = torch.arange(4).repeat(16)
    x = centers[labels] + 0.05 * torch.randn(64, 16)
    for head_class in (CosFace, ArcFace):
        head = head_class(16, 4)
        optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
        for _ in range(100):
            loss = F.cross_entropy(head(x, labels), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        assert (head.cosine(x).argmax(1) == labels).float().mean() == 1.0


# Worked by hand from the paper's equations on fixed numbers: class weights along +x, +y and
# -x, and descriptors at 0, 60 and 180 degrees from +x, all of true class 0. The cosines are
# then 1, 0, -1 / 0.5, sqrt(3)/2, -0.5 / -1, 0, 1, whatever the descriptors' lengths.
WEIGHTS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
DESCRIPTORS = torch.tensor([[2.0, 0.0], [1.0, math.sqrt(3.0)], [-3.0, 0.0]])
TRUE_CLASS = torch.tensor([0, 0, 0])


def test_cosface_logits_worked_by_hand():
    """LMCL (CosFace): s * (cos(theta_j) - m) for the true class j, s * cos(theta) otherwise;
    s = 30, m = 0.4."""
    logits = _with_weights(CosFace(2, 3), WEIGHTS)(DESCRIPTORS, TRUE_CLASS)
    expected = torch.tensor(
        [
            [18.0, 0.0, -30.0],  # 30 * (1 - 0.4), 30 * 0, 30 * -1
            [3.0, 25.980762, -15.0],  # 30 * (0.5 - 0.4), 30 * 0.8660254, 30 * -0.5
            [-42.0, 0.0, 30.0],  # 30 * (-1 - 0.4)
        ]
    )
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4)


def test_arcface_logits_worked_by_hand():
    """ArcFace: s * cos(theta_j + m) for the true class j (s = 30, m = 0.5): theta 0 gives
    30 cos(0.5) = 26.327477 and theta 60 deg 30 cos(1.5471976) = 0.707898; theta 180 deg is
    past pi - m, where the target falls back to s * (cos(theta) - m sin(m))
    = 30 * (-1 - 0.2397128) = -37.191383."""
    logits = _with_weights(ArcFace(2, 3), WEIGHTS)(DESCRIPTORS, TRUE_CLASS)
    expected = torch.tensor(
        [
            [26.327477, 0.0, -30.0],
            [0.707898, 25.980762, -15.0],
            [-37.191383, 0.0, 30.0],
        ]
    )
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4)

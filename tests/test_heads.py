import math

import torch
import torch.nn.functional as F

from core.heads import ArcFace, CosFace


def test_cosface_subtracts_margin_from_target_cosine_only():
    torch.manual_seed(0)
    head = CosFace(8, 5)
    x, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 4])
    cosine = F.normalize(x) @ F.normalize(head.weight).T
    logits = head(x, labels)
    expected = 30.0 * cosine
    expected[torch.arange(4), labels] -= 30.0 * 0.4
    torch.testing.assert_close(logits, expected)
    assert (head.s, head.m) == (30.0, 0.4)


def test_arcface_adds_angular_margin_to_target():
    torch.manual_seed(0)
    head = ArcFace(8, 5)
    x, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 4])
    cosine = (F.normalize(x) @ F.normalize(head.weight).T).clamp(-1, 1)
    logits = head(x, labels)
    theta = torch.acos(cosine[torch.arange(4), labels])
    target = torch.where(
        theta + 0.5 < math.pi,
        torch.cos(theta + 0.5),
        cosine[torch.arange(4), labels] - math.sin(math.pi - 0.5) * 0.5,
    )
    torch.testing.assert_close(logits[torch.arange(4), labels], 30.0 * target, rtol=1e-4, atol=1e-4)
    mask = torch.ones_like(cosine, dtype=torch.bool)
    mask[torch.arange(4), labels] = False
    torch.testing.assert_close(logits[mask], 30.0 * cosine[mask])


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


def _with_weights(head):
    with torch.no_grad():
        head.weight.copy_(WEIGHTS)
    return head


def test_cosface_logits_worked_by_hand():
    """LMCL (CosFace): s * (cos(theta_j) - m) for the true class j, s * cos(theta) otherwise;
    s = 30, m = 0.4."""
    logits = _with_weights(CosFace(2, 3))(DESCRIPTORS, TRUE_CLASS)
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
    logits = _with_weights(ArcFace(2, 3))(DESCRIPTORS, TRUE_CLASS)
    expected = torch.tensor(
        [
            [26.327477, 0.0, -30.0],
            [0.707898, 25.980762, -15.0],
            [-37.191383, 0.0, 30.0],
        ]
    )
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4)

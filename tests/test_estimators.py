"""Estimators against exact enumeration on a small structured problem."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gaze_attention import estimators as est
from gaze_attention.models.gaze_attention import AttentionHead

DRAWS = 200_000


@pytest.fixture(scope="module")
def problem():
    """T' = 2 slices of 2x2 cells (16 joint configurations), a fixed random head."""
    torch.manual_seed(0)
    head = AttentionHead(features=8, num_classes=3, grid=(2, 2), dropout=0.0).eval()
    with torch.no_grad():
        head.fc.weight.mul_(8.0)  # a strong attention, so the loss depends on z
    feats = torch.randn(1, 8, 2, 2, 2) * 3
    label = torch.tensor([1])
    pi = torch.randn(2, 2, 2)

    def loss_fn(z: torch.Tensor) -> torch.Tensor:
        m = z.shape[0]
        return F.cross_entropy(head(z, feats.expand(m, -1, -1, -1, -1)), label.expand(m), reduction="none")

    value, exact = est.exact_expectation(pi, loss_fn)
    return head, feats, label, pi, loss_fn, value, exact


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_exact_expectation_agrees_with_monte_carlo(problem) -> None:
    _, _, _, pi, loss_fn, value, exact = problem
    _, z = est.gumbel_max(pi.expand(DRAWS, -1, -1, -1), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        mc = loss_fn(z).mean()
    assert abs(mc.item() - value.item()) < 0.01
    # the gradient matches finite differences of the exact expectation
    h = 1e-3
    bumped = pi.clone()
    bumped[1, 0, 1] += h
    value_h, _ = est.exact_expectation(bumped, loss_fn)
    assert abs((value_h - value).item() / h - exact[1, 0, 1].item()) < 2e-3


def _direct_mean(problem, eps: float, seed: int) -> torch.Tensor:
    head, feats, label, pi, _, _, _ = problem
    perturbed, z = est.gumbel_max(pi.expand(DRAWS, -1, -1, -1), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        cand = head.candidate_losses(z, feats.expand(DRAWS, -1, -1, -1, -1), label.expand(DRAWS))
    return est.direct_optimization_grad(perturbed, z, cand, eps).mean(0)


def test_direct_optimization_is_unbiased_as_eps_falls(problem) -> None:
    exact = problem[-1]
    # Measured (seed 1, 2e5 draws): relative error 0.83 at eps 100, 0.42 at 10, 0.06 at 1,
    # 0.02 at 0.3, 0.04 at 0.1 (variance grows as eps falls).
    errors = {eps: _rel(_direct_mean(problem, eps, seed=1), exact) for eps in (100.0, 10.0, 1.0, 0.3)}
    assert errors[100.0] > 0.5
    assert errors[10.0] > 0.2
    assert errors[1.0] < 0.15
    assert errors[0.3] < 0.1
    assert errors[0.3] < errors[10.0] / 4 < errors[100.0] / 4


def test_direct_optimization_beats_gumbel_softmax_bias(problem) -> None:
    _, _, _, pi, loss_fn, _, exact = problem
    direct = _rel(_direct_mean(problem, 0.3, seed=2), exact)
    p = pi.expand(DRAWS, -1, -1, -1).clone().requires_grad_(True)
    _, z = est.gumbel_softmax(p, 1.0, generator=torch.Generator().manual_seed(3))
    (loss_fn(z).sum() / DRAWS).backward()
    relaxed = _rel(p.grad.sum(0), exact)
    # Measured: Gumbel-Softmax at tau = 1 is 0.29 off, direct optimization at eps 0.3 0.02.
    assert relaxed > 0.15
    assert direct < relaxed / 2


def test_gumbel_max_samples_the_softmax() -> None:
    logits = torch.tensor([[[2.0, 0.0], [-1.0, 0.5]]])  # [T'=1, 2, 2]
    _, z = est.gumbel_max(logits.expand(100_000, -1, -1, -1), generator=torch.Generator().manual_seed(0))
    freq = z.mean(0)
    torch.testing.assert_close(freq, est.cell_softmax(logits)[None].squeeze(0), atol=6e-3, rtol=0)


def test_straight_through_is_hard_forward_soft_backward() -> None:
    logits = torch.randn(3, 2, 3, 3, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    perturbed, z = est.straight_through(logits, 0.5, generator=g)
    assert torch.equal(z, est.hard_argmax(perturbed.detach()))
    w = torch.randn_like(z)
    (z * w).sum().backward()
    g2 = torch.Generator().manual_seed(0)
    logits2 = logits.detach().clone().requires_grad_(True)
    _, soft = est.gumbel_softmax(logits2, 0.5, generator=g2)
    (soft * w).sum().backward()
    torch.testing.assert_close(logits.grad, logits2.grad)


def test_gaze_modes() -> None:
    pi = torch.randn(2, 3, 4, 4)
    _, arg = est.gaze_sample(pi, "argmax")
    assert torch.equal(arg.flatten(2).argmax(-1), pi.flatten(2).argmax(-1))
    _, exp = est.gaze_sample(pi, "expected")
    torch.testing.assert_close(exp.flatten(2), torch.softmax(pi.flatten(2), -1))
    with pytest.raises(ValueError, match="unknown gaze mode"):
        est.gaze_sample(pi, "nope")


def test_eps_schedule_of_the_paper() -> None:
    assert est.eps_schedule(0) == 1000.0
    assert est.eps_schedule(99) == 1000.0
    assert est.eps_schedule(100) == pytest.approx(1000 * math.exp(-0.1))
    assert est.eps_schedule(8000) == pytest.approx(1000 * math.exp(-8.0))
    assert est.eps_schedule(9300) == 0.1 and est.eps_schedule(18000) == 0.1
    values = [est.eps_schedule(i) for i in range(0, 18000, 50)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_direct_grad_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match=r"candidate_losses must be \[B, T', S\*S\]"):
        est.direct_optimization_grad(
            torch.zeros(2, 3, 7, 7), torch.zeros(2, 3, 7, 7), torch.zeros(2, 3, 7, 7), 1.0
        )


def test_enumeration_refuses_huge_problems() -> None:
    with pytest.raises(ValueError, match="too many"):
        est.enumerate_configurations(4, 7)

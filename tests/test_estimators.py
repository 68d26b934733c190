"""Estimators against exact enumeration on a small structured problem."""

from __future__ import annotations

import math

import pytest
import torch

from gaze_attention import estimators as est
from gaze_attention.bias import SmallProblem, direct_error, relaxed_error, small_problem

DRAWS = 200_000


@pytest.fixture(scope="module")
def problem() -> SmallProblem:
    """T' = 2 slices of 2x2 cells (16 joint configurations), a fixed random head."""
    return small_problem(seed=0)


def test_exact_expectation_agrees_with_monte_carlo(problem) -> None:
    loss_fn = problem.loss_fn()
    _, z = est.gumbel_max(
        problem.logits.expand(DRAWS, -1, -1, -1), generator=torch.Generator().manual_seed(5)
    )
    with torch.no_grad():
        mc = loss_fn(z).mean()
    assert abs(mc.item() - problem.expected_loss.item()) < 0.01 * problem.expected_loss.item()
    # the gradient matches a finite difference of the exact expectation
    h = 1e-3
    bumped = problem.logits.clone()
    bumped[1, 0, 1] += h
    value_h, _ = est.exact_expectation(bumped, loss_fn)
    fd = (value_h - problem.expected_loss).item() / h
    assert abs(fd - problem.exact_grad[1, 0, 1].item()) < 0.02 * problem.exact_grad.abs().max().item()


def test_direct_optimization_is_unbiased_as_eps_falls(problem) -> None:
    # Measured (problem seed 0, draw seed 1, 2e5 draws): relative error 0.91 at eps 100,
    # 0.32 at 10, 0.03 at 1, 0.03 at 0.3 (Monte-Carlo noise grows as eps falls).
    errors = {eps: direct_error(problem, eps, DRAWS, seed=1) for eps in (100.0, 10.0, 1.0, 0.3)}
    assert errors[100.0] > 0.6
    assert errors[10.0] > 0.15
    assert errors[1.0] < 0.08
    assert errors[0.3] < 0.08
    assert errors[0.3] < errors[10.0] / 3 < errors[100.0] / 3


def test_direct_optimization_beats_gumbel_softmax_bias(problem) -> None:
    # Measured: Gumbel-Softmax at tau = 1 is 0.16 off, straight-through 0.36, direct
    # optimization at eps = 0.3 0.03.
    direct = direct_error(problem, 0.3, DRAWS, seed=2)
    relaxed = relaxed_error(problem, 1.0, DRAWS, seed=3)
    straight = relaxed_error(problem, 1.0, DRAWS, seed=3, straight=True)
    assert relaxed > 0.1 and straight > 0.1
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

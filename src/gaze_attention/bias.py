"""Bias of the gaze-gradient estimators against exact enumeration, on a small problem.

The problem is the paper's attention head at toy size: T' slices of S x S cells, a fixed
random head and feature map, CE for a fixed label. With K**T' joint configurations, the
expected loss E_z[CE] under independent per-slice softmax(pi) and its gradient are exact.
Each estimator's mean over many Gumbel draws is compared with that gradient; the relative
error ||mean estimate - exact|| / ||exact|| is bias plus Monte-Carlo noise (which grows as
eps falls for direct optimization, whose estimates are 0 or +-1/eps).

Used by the test suite (thresholds) and by the demo report (the table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gaze_attention import estimators as est
from gaze_attention.models.gaze_attention import AttentionHead


@dataclass
class SmallProblem:
    head: AttentionHead
    features: torch.Tensor  # [1, C_f, T', S, S]
    label: torch.Tensor  # [1]
    logits: torch.Tensor  # [T', S, S]  pi
    expected_loss: torch.Tensor  # scalar E_z[CE]
    exact_grad: torch.Tensor  # [T', S, S]

    def loss_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        def loss(z: torch.Tensor) -> torch.Tensor:  # [M, T', S, S] -> [M]
            m = z.shape[0]
            logits = self.head(z, self.features.expand(m, -1, -1, -1, -1))
            return F.cross_entropy(logits, self.label.expand(m), reduction="none")

        return loss


def small_problem(
    seed: int = 0, slices: int = 2, side: int = 2, classes: int = 3, channels: int = 8
) -> SmallProblem:
    """A fixed random head whose loss depends strongly on z (T'=2, 2x2 cells by default)."""
    g = torch.Generator().manual_seed(seed)
    head = AttentionHead(features=channels, num_classes=classes, grid=(slices, side), dropout=0.0).eval()
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.rand(p.shape, generator=g) * 0.4 - 0.2)
        head.fc.weight.mul_(40.0)  # a strong attention, so the loss depends on z
    features = torch.randn(1, channels, slices, side, side, generator=g) * 3
    label = torch.randint(0, classes, (1,), generator=g)
    logits = torch.randn(slices, side, side, generator=g)
    problem = SmallProblem(head, features, label, logits, torch.zeros(()), torch.zeros(()))
    problem.expected_loss, problem.exact_grad = est.exact_expectation(logits, problem.loss_fn())
    return problem


def _rel(estimate: torch.Tensor, exact: torch.Tensor) -> float:
    return ((estimate - exact).norm() / exact.norm()).item()


def direct_error(problem: SmallProblem, eps: float, draws: int = 200_000, seed: int = 1) -> float:
    """Relative error of the mean direct-optimization gradient over `draws` Gumbel draws."""
    g = torch.Generator().manual_seed(seed)
    pi = problem.logits.expand(draws, -1, -1, -1)
    perturbed, z = est.gumbel_max(pi, generator=g)
    with torch.no_grad():
        cand = problem.head.candidate_losses(
            z, problem.features.expand(draws, -1, -1, -1, -1), problem.label.expand(draws)
        )
    grad = est.direct_optimization_grad(perturbed, z, cand, eps).mean(0)
    return _rel(grad, problem.exact_grad)


def relaxed_error(
    problem: SmallProblem,
    tau: float,
    draws: int = 200_000,
    seed: int = 1,
    straight: bool = False,
) -> float:
    """Relative error of the mean Gumbel-Softmax (or straight-through) gradient."""
    g = torch.Generator().manual_seed(seed)
    pi = problem.logits.expand(draws, -1, -1, -1).clone().requires_grad_(True)
    sampler = est.straight_through if straight else est.gumbel_softmax
    _, z = sampler(pi, tau, generator=g)
    (problem.loss_fn()(z).sum() / draws).backward()
    return _rel(pi.grad.sum(0), problem.exact_grad)


def bias_table(
    eps_values: tuple[float, ...] = (100.0, 10.0, 1.0, 0.3, 0.1),
    taus: tuple[float, ...] = (2.0, 1.0, 0.5, 0.1),
    draws: int = 200_000,
    seeds: tuple[int, ...] = (0, 1, 2),
) -> dict[str, dict[str, list[float]]]:
    """Relative gradient error per estimator setting, one value per problem seed."""
    table: dict[str, dict[str, list[float]]] = {"direct": {}, "gumbel_softmax": {}, "straight_through": {}}
    for seed in seeds:
        problem = small_problem(seed)
        for eps in eps_values:
            table["direct"].setdefault(f"eps={eps:g}", []).append(
                direct_error(problem, eps, draws, seed + 100)
            )
        for tau in taus:
            table["gumbel_softmax"].setdefault(f"tau={tau:g}", []).append(
                relaxed_error(problem, tau, draws, seed + 100)
            )
            table["straight_through"].setdefault(f"tau={tau:g}", []).append(
                relaxed_error(problem, tau, draws, seed + 100, straight=True)
            )
    return table

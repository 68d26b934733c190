"""Gradient estimators for the discrete gaze latent, as pure functions.

Min & Corso, "Integrating Human Gaze into Attention for Egocentric Activity Recognition",
WACV 2021: a gaze location z is sampled per temporal slice with the Gumbel-max trick and
the gaze distribution is trained by direct optimization through argmax (Lorberbom et al.,
NeurIPS 2019). Alternatives for ablations: Gumbel-Softmax (Jang et al. 2017; Li et al.,
ECCV 2018 for gaze) and straight-through Gumbel. Exact enumeration gives ground truth on
small problems.

Layout: gaze logits are [..., T', S, S]; the S*S cells of each temporal slice form one
categorical. Randomness always comes from an explicit `torch.Generator` (or the global one
when None), nothing flips any module between train and eval.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from gaze_attention.constants import GAZE_MODES


def sample_gumbel(
    shape: torch.Size | tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise, -log(-log U)."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    tiny = torch.finfo(dtype).tiny
    return -torch.log(-torch.log(u.clamp(min=tiny, max=1.0 - 1e-7)))


def _cells(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(-2)  # [..., S, S] -> [..., K]


def one_hot_cells(index: torch.Tensor, side: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Cell indices [...] (0..S*S-1) -> one-hot maps [..., S, S]."""
    return F.one_hot(index, side * side).to(dtype).unflatten(-1, (side, side))


def hard_argmax(scores: torch.Tensor) -> torch.Tensor:
    """One-hot of the argmax over the cells of each slice: [..., S, S] -> [..., S, S]."""
    side = scores.shape[-1]
    return one_hot_cells(_cells(scores).argmax(-1), side, scores.dtype)


def gumbel_max(
    logits: torch.Tensor, *, generator: torch.Generator | None = None, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gumbel-max sample per slice. Returns (perturbed logits pi + G, one-hot z).

    noise: G drawn by the caller (shape of logits); else drawn from `generator`.
    """
    if noise is None:
        noise = sample_gumbel(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    elif noise.shape != logits.shape:
        raise ValueError(f"noise must have the logits' shape {tuple(logits.shape)}, got {tuple(noise.shape)}")
    perturbed = logits + noise.to(logits.dtype)
    return perturbed, hard_argmax(perturbed.detach())


def cell_softmax(logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Softmax over the cells of each slice: [..., S, S] -> [..., S, S]."""
    return torch.softmax(_cells(logits) / tau, dim=-1).view_as(logits)


def gumbel_softmax(
    logits: torch.Tensor, tau: float = 1.0, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relaxed sample softmax((pi + G) / tau). Returns (perturbed logits, relaxed z)."""
    noise = sample_gumbel(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    perturbed = logits + noise.to(logits.dtype)
    return perturbed, cell_softmax(perturbed, tau)


def straight_through(
    logits: torch.Tensor, tau: float = 1.0, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through Gumbel: the hard sample forward, the relaxed sample's gradient backward."""
    perturbed, soft = gumbel_softmax(logits, tau, generator=generator)
    hard = hard_argmax(perturbed.detach())
    # soft - soft.detach() is exactly zero forward, so the head sees the exact one-hot.
    return perturbed, hard + (soft - soft.detach())


def gaze_sample(
    logits: torch.Tensor,
    mode: str,
    *,
    tau: float = 1.0,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The gaze map the attention head sees, for a gaze mode (see `GAZE_MODES`).

    Returns (perturbed logits or None when no noise was drawn, z [..., S, S]).
    `sample` is the reference's behaviour at train and test time; `argmax` and
    `expected` (softmax probabilities in place of the one-hot) are deterministic. noise:
    the Gumbel noise of `sample`, drawn by the caller (the other modes refuse it).
    """
    if noise is not None and mode != "sample":
        raise ValueError(f"pre-drawn noise is only used by gaze mode 'sample', not {mode!r}")
    if mode == "sample":
        return gumbel_max(logits, generator=generator, noise=noise)
    if mode == "argmax":
        return None, hard_argmax(logits.detach())
    if mode == "expected":
        return None, cell_softmax(logits)
    if mode == "gumbel_softmax":
        return gumbel_softmax(logits, tau, generator=generator)
    if mode == "straight_through":
        return straight_through(logits, tau, generator=generator)
    raise ValueError(f"unknown gaze mode {mode!r}; expected one of {', '.join(GAZE_MODES)}")


def direct_optimization_grad(
    perturbed_logits: torch.Tensor,
    z: torch.Tensor,
    candidate_losses: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """Direct-optimization estimate of d E[loss] / d pi for one Gumbel draw.

    perturbed_logits: [B, T', S, S] pi + G; z: [B, T', S, S] the one-hot argmax of it;
    candidate_losses: [B, T', S*S], the loss with slice t set to cell k (other slices as z).
    z_eps = one_hot(argmax_k(perturbed - eps * loss)), gradient (z - z_eps) / eps, a
    constant: it is unbiased as eps -> 0 (Lorberbom et al. 2019).
    """
    if candidate_losses.shape != _cells(perturbed_logits).shape:
        raise ValueError(
            f"candidate_losses must be [B, T', S*S] = {tuple(_cells(perturbed_logits).shape)}, "
            f"got {tuple(candidate_losses.shape)}"
        )
    side = perturbed_logits.shape[-1]
    scores = _cells(perturbed_logits.detach()).float() - eps * candidate_losses.detach().float()
    z_eps = one_hot_cells(scores.argmax(-1), side)
    return (z.detach().float() - z_eps) / eps


def direct_optimization_loss(perturbed_logits: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Surrogate whose gradient w.r.t. pi is grad / B: (grad * pi~) summed over slices and
    cells, averaged over the batch."""
    return (grad.detach() * perturbed_logits.float()).sum() / perturbed_logits.shape[0]


def eps_schedule(
    iteration: int,
    eps0: float = 1000.0,
    rate: float = 1e-3,
    every: int = 100,
    eps_min: float = 0.1,
) -> float:
    """eps of the paper: max(eps_min, eps0 * exp(-rate * i)), updated every `every` iterations."""
    step = (iteration // every) * every
    return max(eps_min, eps0 * math.exp(-rate * step))


def enumerate_configurations(num_slices: int, side: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Every joint gaze configuration: [K**T', T', S, S] one-hot maps (small problems only)."""
    k = side * side
    if k**num_slices > 1_000_000:
        raise ValueError(f"{k}**{num_slices} configurations are too many to enumerate")
    idx = torch.tensor(list(itertools.product(range(k), repeat=num_slices)), dtype=torch.long)
    return one_hot_cells(idx, side, dtype)  # [M, T', S, S]


def exact_expectation(
    logits: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """E_z[loss(z)] under independent per-slice softmax(pi), and its exact gradient w.r.t. pi.

    logits: [T', S, S] for one sample; loss_fn maps configurations [M, T', S, S] to [M].
    """
    num_slices, side = logits.shape[0], logits.shape[-1]
    configs = enumerate_configurations(num_slices, side, logits.dtype)  # [M, T', S, S]
    with torch.no_grad():
        losses = loss_fn(configs)  # [M]
    pi = logits.detach().clone().requires_grad_(True)
    log_p = torch.log_softmax(_cells(pi), dim=-1)  # [T', K]
    # log P(config) = sum over slices of the chosen cell's log-probability.
    log_prob = (_cells(configs) * log_p).sum(dim=(-1, -2))  # [M]
    expectation = (log_prob.exp() * losses).sum()
    (grad,) = torch.autograd.grad(expectation, pi)
    return expectation.detach(), grad


def brute_force_candidate_losses(
    head_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    features: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """Candidate losses the reference's way: N head passes over N copies of the features.

    For checking `AttentionHead.candidate_losses` and for benchmarks; one sample at a time
    (the reference's batched version pairs candidates with the wrong sample's features).
    head_fn(z [N, T', S, S], features [N, C_f, T', S, S]) -> logits [N, C]. Returns [B, T', K].
    """
    batch, t_slices, side = z.shape[0], z.shape[1], z.shape[-1]
    k = side * side
    out = []
    for b in range(batch):
        # Candidate (t, c): z[b] with slice t replaced by one_hot(c).
        cand = z[b].unsqueeze(0).repeat(t_slices * k, 1, 1, 1)  # [T'K, T', S, S]
        onehots = torch.eye(k, dtype=z.dtype, device=z.device).view(k, side, side)
        for t in range(t_slices):
            cand[t * k : (t + 1) * k, t] = onehots
        feats = features[b].unsqueeze(0).repeat(t_slices * k, 1, 1, 1, 1)  # N copies, as the reference
        logits = head_fn(cand, feats)
        ce = F.cross_entropy(logits.float(), labels[b].expand(t_slices * k), reduction="none")
        out.append(ce.view(t_slices, k))
    return torch.stack(out)

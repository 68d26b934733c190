"""Training losses of Min & Corso (WACV 2021): CE + KL to recorded gaze + the estimator term.

L = CE(logits, y) + w_kl * KL(q* || softmax(pi)) + L_do, where L_do is the
direct-optimization surrogate whose gradient w.r.t. pi is the estimate of d E[CE] / d pi.
Gumbel-Softmax and straight-through need no extra term: CE back-propagates through z.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gaze_attention.constants import ESTIMATORS
from gaze_attention.estimators import direct_optimization_grad, direct_optimization_loss
from gaze_attention.models.gaze_attention import AttentionHead, GazeAttentionOutput

# Gaze mode the forward pass must use in training for each estimator.
TRAIN_GAZE_MODE = {
    "direct": "sample",
    "gumbel_softmax": "gumbel_softmax",
    "straight_through": "straight_through",
    "none": "none",
}


def gaze_kl_loss(gaze_logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """KL(q* || softmax(pi)), averaged over the slices that have a recorded fixation.

    gaze_logits, target: [B, T', S, S] (target rows sum to 1 where valid); valid: [B, T'].
    Zero when no slice is valid.
    """
    valid = valid.bool()
    if not bool(valid.any()):
        return gaze_logits.float().sum() * 0.0  # keeps the graph (and DDP) connected
    log_p = torch.log_softmax(gaze_logits.float().flatten(2)[valid], dim=-1)  # [Nv, K]
    q = target.float().flatten(2)[valid]  # [Nv, K]
    return F.kl_div(log_p, q, reduction="batchmean")


def training_losses(
    out: GazeAttentionOutput,
    labels: torch.Tensor,
    *,
    head: AttentionHead,
    estimator: str = "direct",
    eps: float = 1.0,
    gaze_target: torch.Tensor | None = None,
    gaze_valid: torch.Tensor | None = None,
    kl_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Loss terms for one batch: dict(total, ce, kl, do, flip), each a scalar tensor.

    `flip` is the fraction of slices where direct optimization's z_eps differs from z, i.e.
    where its gradient is non-zero (0 for the other estimators): when it stays at 0, L_do
    does nothing and only the KL term trains the gaze head.

    `out` must come from a forward pass in `TRAIN_GAZE_MODE[estimator]`; `head` is the
    model's attention head (used by direct optimization for the candidate losses, which are
    computed without gradient and without dropout).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {', '.join(ESTIMATORS)}")
    ce = F.cross_entropy(out.logits.float(), labels)
    zero = ce.new_zeros(())
    kl = zero
    if out.gaze_logits is not None and gaze_target is not None and gaze_valid is not None:
        kl = gaze_kl_loss(out.gaze_logits, gaze_target, gaze_valid)
    do = zero
    flip = zero
    if estimator == "direct":
        if out.perturbed is None:
            raise ValueError("direct optimization needs a Gumbel-max sample: forward with gaze_mode='sample'")
        with torch.no_grad():
            cand = head.candidate_losses(out.z, out.features, labels)  # [B, T', K]
            grad = direct_optimization_grad(out.perturbed, out.z, cand, eps)
            flip = grad.flatten(2).ne(0).any(-1).float().mean()
        do = direct_optimization_loss(out.perturbed, grad)
    return {"total": ce + kl_weight * kl + do, "ce": ce, "kl": kl, "do": do, "flip": flip}

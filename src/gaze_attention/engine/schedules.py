"""What changes with the iteration: the optimizer's learning rate and the estimator's eps.

The paper (Min & Corso, WACV 2021): SGD, lr x0.1 at fixed iterations, eps falling from 1000
to 0.1 by a fixed rate. Here both can be relative to the run: a milestone below 1 is a
fraction of `optim.iters` (and `train --iters N` stretches a preset's absolute milestones to N,
see `scaled_milestones`), and `estimator.eps_end` makes eps reach `eps_min` at that
fraction of the run: `train --iters N` stretches the whole schedule.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gaze_attention.engine.config import TrainConfig
from gaze_attention.estimators import eps_schedule


def make_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """`optim.optimizer`: SGD with momentum (the paper) or AdamW (beta1 = optim.momentum)."""
    # foreach: the per-tensor path (the CPU default) is ~25x slower on channels_last_3d
    # weights: 2.2 s against 0.08 s per step for the paper network.
    o = cfg.optim
    params: Any = model.parameters()
    if getattr(getattr(model, "config", None), "backbone", "i3d") != "i3d":
        # ViTs: VideoMAE's groups (layer-wise lr decay; no weight decay on biases, norms, tables).
        from gaze_attention.models import param_groups

        params = param_groups(model, lr, o.weight_decay, o.layer_decay)
    if o.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(o.momentum, 0.999), weight_decay=o.weight_decay, foreach=True)
    return torch.optim.SGD(params, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay, foreach=True)


def freeze_parameters(model: nn.Module, patterns: tuple[str, ...]) -> int:
    """`optim.freeze`: no gradient for the parameters whose names match a pattern (fnmatch);
    returns how many tensors were frozen. A pattern that matches nothing is an error, so a
    typo cannot silently train everything."""
    import fnmatch

    named = list(model.named_parameters())
    frozen = 0
    for pattern in patterns:
        hits = [p for name, p in named if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            raise ValueError(
                f"optim.freeze pattern {pattern!r} matches no parameter of the model "
                f"(names look like {named[0][0]!r})"
            )
        for p in hits:
            frozen += p.requires_grad
            p.requires_grad_(False)
    return frozen


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's lr on every group, times the group's `lr_scale` (layer-wise decay)."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def milestones(cfg: TrainConfig) -> list[int]:
    """The lr milestones as iterations: a value below 1 is a fraction of optim.iters."""
    return [round(m * cfg.optim.iters) if 0 < m < 1 else int(m) for m in cfg.optim.milestones]


def scaled_milestones(cfg: TrainConfig, iters: int) -> tuple[float, ...]:
    """`cfg`'s milestones for a run of `iters` instead of optim.iters: absolute ones stretched
    in proportion (the preset's shape kept), fractions as they are."""
    old = max(cfg.optim.iters, 1)
    return tuple(m if 0 < m < 1 else max(1, round(m * iters / old)) for m in cfg.optim.milestones)


def lr_at(cfg: TrainConfig, iteration: int) -> float:
    """After a linear warm-up: the step schedule, lr * gamma ** (milestones <= iteration), or
    with `optim.schedule: cosine` a half cosine from lr to 0 over the rest of the run."""
    o = cfg.optim
    if iteration < o.warmup:
        lr = o.lr if o.schedule == "cosine" else o.lr * o.gamma ** sum(iteration >= m for m in milestones(cfg))
        return lr * (iteration + 1) / o.warmup
    if o.schedule == "cosine":
        span = max(o.iters - o.warmup, 1)
        return o.lr * 0.5 * (1.0 + math.cos(math.pi * min(iteration - o.warmup, span) / span))
    return o.lr * o.gamma ** sum(iteration >= m for m in milestones(cfg))


def eps_rate(cfg: TrainConfig) -> float:
    """The eps decay rate: the configured one, or the one reaching eps_min at `eps_end` of the run."""
    e = cfg.estimator
    if e.eps_end is None:
        return e.eps_rate
    span = max(1.0, e.eps_end * cfg.optim.iters)
    return math.log(max(e.eps0 / e.eps_min, 1.0)) / span


def eps_at(cfg: TrainConfig, iteration: int) -> float:
    e = cfg.estimator
    return eps_schedule(iteration, e.eps0, eps_rate(cfg), e.eps_every, e.eps_min)


def describe(cfg: TrainConfig) -> str:
    """The schedules of this run in one line, as resolved for its length (printed at the start)."""
    o, e = cfg.optim, cfg.estimator
    at = milestones(cfg)
    if o.schedule == "cosine":
        lr = f"lr {o.lr:g} cosine to 0"
    else:
        lr = f"lr {o.lr:g}" + (f" x{o.gamma:g} at iterations {', '.join(map(str, at))}" if at else "")
    if o.layer_decay != 1:
        lr += f" (x{o.layer_decay:g} per block from the top)"
    lr += f" of {o.iters}" + (f" after a {o.warmup}-iteration warm-up" if o.warmup else "")
    if e.name in ("direct",):
        reach = "" if e.eps_end is None else f" at {round(e.eps_end * o.iters)}"
        lr += f"; eps {e.eps0:g} -> {e.eps_min:g}{reach}"
    return lr

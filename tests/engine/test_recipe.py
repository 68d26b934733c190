"""The training recipe's schedule, direct optimization's activity log, the divergence alarm,
and paired seeds (issue: gaze that measurably helps)."""

from __future__ import annotations

import math

import pytest
import torch

import gaze_attention as ga
from gaze_attention.engine import train
from gaze_attention.engine.config import load_config
from gaze_attention.engine.divergence import DivergenceWatch
from gaze_attention.engine.schedules import eps_at, lr_at


def test_warmup_then_steps() -> None:
    cfg = load_config("tiny", {"optim.lr": 0.01, "optim.warmup": 10, "optim.milestones": [50], "optim.iters": 100})
    assert lr_at(cfg, 0) == pytest.approx(0.001)
    assert lr_at(cfg, 4) == pytest.approx(0.005)
    assert lr_at(cfg, 9) == pytest.approx(0.01)
    assert lr_at(cfg, 30) == pytest.approx(0.01)
    assert lr_at(cfg, 60) == pytest.approx(0.001)
    cfg0 = load_config("paper", {"optim.warmup": 0})
    assert lr_at(cfg0, 0) == pytest.approx(0.032)  # the paper has none


@pytest.mark.parametrize("iters", [60, 600, 6000])
def test_eps_end_is_relative_to_the_run(iters: int) -> None:
    cfg = load_config(
        "tiny", {"optim.iters": iters, "estimator.eps_end": 1.0, "estimator.eps_every": 1, "estimator.eps_min": 0.1}
    )
    e = [eps_at(cfg, i) for i in range(iters + 1)]
    assert e[0] == 1000.0
    assert all(a >= b for a, b in zip(e, e[1:]))  # never rises
    # log-linear: half-way through the run eps is the geometric mean of eps0 and eps_min
    assert e[iters // 2] == pytest.approx(math.sqrt(1000.0 * 0.1), rel=0.05)
    assert e[iters - 1] > 0.1 and e[iters] == pytest.approx(0.1)
    half = load_config("tiny", {"optim.iters": iters, "estimator.eps_end": 0.5, "estimator.eps_every": 1})
    assert eps_at(half, iters // 2) == pytest.approx(half.estimator.eps_min)


def test_paper_schedule_unchanged_without_eps_end() -> None:
    cfg = load_config("paper")
    assert cfg.estimator.eps_end is None
    assert eps_at(cfg, 0) == 1000.0
    assert eps_at(cfg, 250) == pytest.approx(1000.0 * math.exp(-1e-3 * 200))
    assert eps_at(cfg, 17000) == pytest.approx(0.1)


def test_bad_eps_end_and_warmup_are_refused() -> None:
    with pytest.raises(ValueError, match="eps_end"):
        load_config("tiny", {"estimator.eps_end": 1.5})
    with pytest.raises(ValueError, match="warmup"):
        load_config("tiny", {"optim.warmup": -1})


def test_flip_fraction_counts_slices_where_direct_optimization_moves() -> None:
    torch.manual_seed(0)
    # Batch statistics (train mode) so that the random features differ between cells.
    model = ga.build_model("tiny", num_classes=3, width=0.125, frames=16, crop=96, dropout=0.0).train()
    rgb = torch.rand(4, 3, 16, 96, 96) * 2 - 1
    flow = torch.rand(4, 2, 16, 96, 96) * 2 - 1
    labels = torch.tensor([0, 2, 1, 1])
    out = model(rgb, flow, gaze_mode="sample")
    big = ga.losses.training_losses(out, labels, head=model.head, estimator="direct", eps=1e6)
    tiny = ga.losses.training_losses(out, labels, head=model.head, estimator="direct", eps=1e-9)
    # huge eps: the loss decides every slice's argmax, so unless z already is the best cell it moves
    cand = model.head.candidate_losses(out.z, out.features, labels)
    assert bool((cand.amax(-1) - cand.amin(-1) > 1e-4).all())  # no ties
    best_is_z = cand.argmin(-1) == out.z.flatten(2).argmax(-1)  # [B, T']
    assert float(big["flip"]) == pytest.approx(1.0 - best_is_z.float().mean().item())
    assert float(tiny["flip"]) == 0.0  # eps -> 0: z_eps = z
    none = ga.losses.training_losses(model(rgb, flow, gaze_mode="none"), labels, head=model.head, estimator="none")
    assert float(none["flip"]) == 0.0


def test_divergence_watch_warns_once_per_climb() -> None:
    cfg = load_config("tiny", {"optim.warmup": 20, "optim.lr": 0.032})
    watch = DivergenceWatch(6, cfg)
    chance = math.log(6)
    assert watch.check({"iteration": 10, "ce": 9.0, "lr": 0.03}) is None  # still warming up
    assert watch.check({"iteration": 30, "ce": chance + 0.5, "lr": 0.03}) is None  # noisy, not diverging
    msg = watch.check({"iteration": 40, "ce": chance + 2.0, "lr": 0.032})
    assert msg and "diverging" in msg and "ln(6)" in msg and "learning rate 0.032" in msg
    assert watch.check({"iteration": 50, "ce": chance + 3.0, "lr": 0.032}) is None  # said once
    assert watch.check({"iteration": 60, "ce": chance - 0.2, "lr": 0.032}) is None  # recovered
    assert watch.check({"iteration": 70, "ce": chance + 2.0, "lr": 0.032})  # a new climb is reported


def test_a_diverging_run_says_so_while_it_runs(prepared, tmp_path, tiny_config, capsys):
    cfg = tiny_config(
        prepared, tmp_path / "run",
        **{"optim.lr": 3.0, "optim.iters": 8, "run.log_every": 2, "optim.clip_grad": None, "model.dropout": 0.0},
    )  # fmt: skip
    try:
        train(cfg, progress=False)
    except ga.engine.train.NonFiniteLossError:
        pass  # an lr this high may also end in inf; the warning must come first
    err = capsys.readouterr().err
    assert "diverging" in err and "learning rate 3" in err


def test_metrics_log_the_flip_fraction(prepared, tmp_path, tiny_config):
    cfg = tiny_config(prepared, tmp_path / "run", **{"optim.iters": 4, "run.log_every": 2})
    res = train(cfg, progress=False)
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "flip" in header
    assert all(0.0 <= row["flip"] <= 1.0 for row in res.history)
    # eps is 1000 at the start: the candidate losses decide, so some slices move
    assert res.history[0]["flip"] > 0


def test_same_seed_gives_every_arm_the_same_data_and_init(prepared, tmp_path, tiny_config):
    """Paired seeds: the demo compares arms seed by seed, which needs identical clips, order and init."""
    runs = {}
    for est in ("none", "direct", "gumbel_softmax"):
        cfg = tiny_config(
            prepared, tmp_path / est, **{"estimator.name": est, "optim.iters": 3, "data.max_train_per_class": 2}
        )
        runs[est] = train(cfg, progress=False)
        init = tiny_config(
            prepared, tmp_path / f"{est}-0", **{"estimator.name": est, "optim.iters": 0, "data.max_train_per_class": 2}
        )
        runs[est + "-0"] = train(init, progress=False)
    assert runs["none"].seen == runs["direct"].seen == runs["gumbel_softmax"].seen
    other = train(
        tiny_config(prepared, tmp_path / "s1", **{"optim.iters": 3, "run.seed": 1, "data.max_train_per_class": 2}),
        progress=False,
    )
    assert other.seen != runs["direct"].seen  # the seed matters
    w0 = {k: v for k, v in runs["none-0"].model.state_dict().items()}
    for est in ("direct", "gumbel_softmax"):
        w = runs[est + "-0"].model.state_dict()
        assert all(torch.equal(w0[k], w[k]) for k in w0), est

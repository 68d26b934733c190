"""Training config: presets, overrides, YAML round trip, validation."""

from __future__ import annotations

import pytest

from gaze_attention.engine.config import TrainConfig, list_presets, load_config, read_config, save_config


def test_presets_load_with_paper_defaults():
    assert {"paper", "tiny"} <= set(list_presets())
    cfg = load_config("paper")
    assert cfg.optim.lr == 0.032 and cfg.optim.momentum == 0.9 and cfg.optim.weight_decay == 4e-5
    assert cfg.optim.milestones == (8000, 15000) and cfg.optim.gamma == 0.1 and cfg.optim.iters == 18000
    assert cfg.optim.clip_grad == 20.0
    e = cfg.estimator
    assert (e.name, e.eps0, e.eps_rate, e.eps_every, e.eps_min, e.kl_weight) == (
        "direct",
        1000.0,
        1e-3,
        100,
        0.1,
        1.0,
    )
    assert load_config("tiny").model.preset == "tiny"


def test_overrides_dotted_bare_and_yaml_values():
    cfg = load_config("paper", ["lr=0.1", "optim.milestones=[10, 20]", "run.val_every=5", "data.root=/x"])
    assert cfg.optim.lr == 0.1 and cfg.optim.milestones == (10, 20)
    assert cfg.run.val_every == 5 and cfg.data.root == "/x"
    cfg = cfg.with_overrides({"model.width": 0.5, "estimator.name": "none"})
    assert cfg.model.overrides() == {"width": 0.5} and cfg.estimator.name == "none"


@pytest.mark.parametrize(
    "override, message",
    [
        ("nope=1", "unknown config key"),
        ("optim.iters=abc", "integer"),
        ("estimator.name=magic", "estimator.name"),
        ("run.precision=fp8", "run.precision"),
        ("optim.optimizer=adam", "optim.optimizer"),
        ("lr", "key=value"),
    ],
)
def test_bad_overrides_are_reported(override, message):
    with pytest.raises(ValueError, match=message):
        load_config("paper", [override])


def test_yaml_round_trip(tmp_path):
    cfg = load_config("tiny", {"optim.milestones": [3], "init.base": "/w/i3d_both_base.pt"})
    save_config(cfg, tmp_path / "config.yaml")
    assert read_config(tmp_path / "config.yaml") == cfg
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_optimizers_follow_the_config():
    import torch

    from gaze_attention.engine.schedules import make_optimizer

    model = torch.nn.Linear(3, 2)
    tiny = load_config("tiny")
    assert tiny.optim.optimizer == "adamw" and load_config("paper").optim.optimizer == "sgd"
    opt = make_optimizer(model, tiny.with_overrides({"optim.momentum": 0.8, "optim.weight_decay": 0.01}), 0.002)
    assert isinstance(opt, torch.optim.AdamW)
    g = opt.param_groups[0]
    assert (g["lr"], g["betas"], g["weight_decay"]) == (0.002, (0.8, 0.999), 0.01)
    opt = make_optimizer(model, load_config("paper"), 0.032)
    assert isinstance(opt, torch.optim.SGD)
    g = opt.param_groups[0]
    assert (g["lr"], g["momentum"], g["weight_decay"]) == (0.032, 0.9, 4e-5)

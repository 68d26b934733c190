"""Schedules relative to the run, the training-state schema, the checkpoint saver, the batch bound."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from gaze_attention.commands import train as train_cmd
from gaze_attention.engine import schedules
from gaze_attention.engine.checkpoint import CheckpointError, list_checkpoints
from gaze_attention.engine.config import load_config
from gaze_attention.engine.saver import CheckpointSaver
from gaze_attention.engine.train import train
from gaze_attention.engine.train_state import SCHEMA, TrainState, read_train_state
from gaze_attention.models import build_model


@pytest.mark.parametrize("iters", [300, 600, 45])
def test_fractional_milestones_scale_with_the_run(iters: int) -> None:
    cfg = load_config("tiny", {"optim.iters": iters, "optim.milestones": [2 / 3, 5 / 6], "optim.warmup": 0})
    at = schedules.milestones(cfg)
    assert at == [round(iters * 2 / 3), round(iters * 5 / 6)]
    lr = cfg.optim.lr
    assert schedules.lr_at(cfg, at[0] - 1) == pytest.approx(lr)
    assert schedules.lr_at(cfg, at[0]) == pytest.approx(lr * 0.1)
    assert schedules.lr_at(cfg, at[1]) == pytest.approx(lr * 0.01)
    assert f"at iterations {at[0]}, {at[1]} of {iters}" in schedules.describe(cfg)


def test_absolute_milestones_stay_and_bad_ones_are_refused() -> None:
    cfg = load_config("paper")
    assert schedules.milestones(cfg) == [8000, 15000]
    assert schedules.milestones(cfg.with_overrides({"optim.iters": 100})) == [8000, 15000]
    with pytest.raises(ValueError, match="milestones must be positive"):
        load_config("tiny", {"optim.milestones": [0.5, -3]})
    with pytest.raises(ValueError, match="list of numbers"):
        load_config("tiny", {"optim.milestones": ["soon"]})


def test_iters_flag_stretches_the_preset_schedule() -> None:
    """`train --preset tiny --iters 600` keeps the preset's shape: x0.1 at 2/3 and 5/6 of 600."""
    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    cfg = train_cmd.build_config(parser.parse_args(["--preset", "tiny", "--iters", "600"]), require_paths=False)
    assert schedules.milestones(cfg) == [400, 500]
    paper = train_cmd.build_config(parser.parse_args(["--iters", "9000"]), require_paths=False)
    assert schedules.milestones(paper) == [4000, 7500]
    own = parser.parse_args(["--preset", "tiny", "--iters", "600", "--set", "optim.milestones=[100]"])
    assert schedules.milestones(train_cmd.build_config(own, require_paths=False)) == [100]
    assert schedules.milestones(load_config("tiny", {"optim.iters": 600})) == [200, 250]  # --set alone: as given


def _state(**kw) -> TrainState:
    base = dict(iteration=3, config={"a": 1}, model_config={"frames": 8}, class_names=["x", "y"], eps=1.0, lr=0.1)
    return TrainState(**{**base, **kw})


def test_train_state_round_trip_and_schema_one() -> None:
    s = _state(inputs={"frame_size": [170, 128], "flow": "dis", "flow_bound": 20.0}, best_score=0.5)
    back = TrainState.from_json(json.loads(json.dumps(s.to_json())))
    assert back == s and back.schema == SCHEMA
    assert back.geometry.frame_size == (170, 128) and back.geometry.flow == "dis"
    old = {"iteration": 7, "config": {}, "model_config": {}, "class_names": ["a"], "format": "x", "version": 1}
    v1 = TrainState.from_json(old)
    assert v1.schema == 1 and v1.inputs is None and v1.geometry is None
    with pytest.raises(CheckpointError, match="lacks class_names"):
        TrainState.from_json({"iteration": 1, "config": {}, "model_config": {}})
    with pytest.raises(CheckpointError, match="upgrade"):
        TrainState.from_json({**old, "schema": SCHEMA + 1})


def test_saver_keeps_last_and_the_single_best(tmp_path) -> None:
    model = build_model("tiny", num_classes=2, frames=8, crop=64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    saver = CheckpointSaver(tmp_path, keep_last=2)
    for it in (1, 2, 3):
        saver.save(model, _state(iteration=it), opt)
    assert [i for i, _ in list_checkpoints(tmp_path)] == [2, 3]
    assert saver.save_if_best(model, _state(iteration=1), 0.4) is not None
    assert saver.save_if_best(model, _state(iteration=2), 0.3) is None  # not better
    assert saver.save_if_best(model, _state(iteration=3), math.nan) is None
    best = saver.save_if_best(model, _state(iteration=4), 0.6)
    assert saver.best() == best and [i for i, _ in list_checkpoints(tmp_path, "best")] == [4]
    assert read_train_state(best).best_score == 0.6 and read_train_state(saver.latest()).optimizer is not None
    assert CheckpointSaver(tmp_path / "other", 2, enabled=False).save(model, _state(), opt) is None


def test_batch_larger_than_the_data_is_refused_before_the_run_folder(prepared, tmp_path, tiny_config) -> None:
    cfg = tiny_config(prepared, tmp_path / "run", **{"optim.batch_size": 100000})
    with pytest.raises(ValueError, match=r"batch_size 100000 is larger than the 12 training clips"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_checkpoint_carries_the_training_geometry(prepared, tmp_path, tiny_config) -> None:
    result = train(tiny_config(prepared, tmp_path / "run", **{"optim.iters": 2}), progress=False)
    state = read_train_state(result.last_checkpoint)
    assert state.schema == SCHEMA
    assert state.geometry.frame_size == (96, 72) and state.geometry.flow == "dis"


def test_cosine_schedule_after_warmup() -> None:
    cfg = load_config("tiny", {"optim.schedule": "cosine", "optim.iters": 110, "optim.warmup": 10, "optim.lr": 0.1})
    assert schedules.lr_at(cfg, 4) == pytest.approx(0.05)  # warm-up
    assert schedules.lr_at(cfg, 10) == pytest.approx(0.1)
    assert schedules.lr_at(cfg, 60) == pytest.approx(0.05)  # half-way: half the lr
    assert schedules.lr_at(cfg, 110) == pytest.approx(0.0, abs=1e-12)
    assert "cosine" in schedules.describe(cfg)


def test_vit_optimizer_has_layer_decayed_groups_and_the_schedule_keeps_them() -> None:
    cfg = load_config("vit-tiny", {"optim.layer_decay": 0.5, "model.frames": 8, "model.crop": 64})
    model = build_model(cfg.model.preset, num_classes=3, **cfg.model.overrides())
    opt = schedules.make_optimizer(model, cfg, 0.1)
    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    assert scales[-1] == 1.0 and scales[0] < 0.5  # heads at the full lr, embeddings decayed most
    schedules.set_lr(opt, 0.02)
    assert {round(g["lr"] / g["lr_scale"], 12) for g in opt.param_groups} == {0.02}
    assert any(g["weight_decay"] == 0.0 for g in opt.param_groups)  # biases and norms
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())
    i3d = build_model("tiny", num_classes=3, frames=8, crop=64)
    assert len(schedules.make_optimizer(i3d, load_config("tiny"), 0.1).param_groups) == 1


def test_freeze_keeps_the_matched_parameters_as_initialised(prepared, tmp_path, tiny_config) -> None:
    import fnmatch

    from safetensors.torch import load_file

    stem = "backbone.*.Conv3d_1a_7x7.*"
    assert load_config("tiny", {"optim.freeze": "x.*"}).optim.freeze == ("x.*",)  # one string: one pattern
    with pytest.raises(ValueError, match="list of non-empty strings"):
        load_config("tiny", {"optim.freeze": [3]})
    cfg = tiny_config(prepared, tmp_path / "run", **{"optim.freeze": [stem], "run.checkpoint_every": 1})
    cfg = cfg.with_overrides({"optim.iters": 3})
    train(cfg, progress=False)
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("ckpt-*"))
    first, last = (load_file(c / "model.safetensors") for c in (ckpts[0], ckpts[-1]))
    frozen = changed = 0
    for name in first:
        if "running_" in name or "num_batches" in name:
            continue  # buffers: BatchNorm statistics follow the batches, frozen or not
        if fnmatch.fnmatchcase(name, stem):
            assert torch.equal(first[name], last[name]), name
            frozen += 1
        else:
            changed += not torch.equal(first[name], last[name])
    assert frozen == 6  # conv weight, BatchNorm weight and bias, in each stream
    assert changed > 100  # the rest trained


def test_a_freeze_pattern_that_matches_nothing_is_named() -> None:
    model = build_model("tiny", num_classes=2, frames=8, crop=64)
    with pytest.raises(ValueError, match=r"'backbone\.\*\.Conv3d_9z\*' matches no parameter"):
        schedules.freeze_parameters(model, ("backbone.*.Conv3d_1a*", "backbone.*.Conv3d_9z*"))
    assert schedules.freeze_parameters(build_model("tiny", num_classes=2, frames=8, crop=64),
                                       ("backbone.*.Conv3d_*",)) == 18  # fmt: skip

"""One place per fact: the model's fields (ModelConfig), the choice lists (constants)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

import gaze_attention as ga
from gaze_attention import constants
from gaze_attention.cli import build_parser
from gaze_attention.engine.config import ModelSpec, TrainConfig, load_config

SRC = Path(__file__).resolve().parents[1] / "src" / "gaze_attention"


def test_model_spec_is_derived_from_model_config():
    spec = {f.name: f for f in dataclasses.fields(ModelSpec)}
    model = {f.name for f in dataclasses.fields(ga.ModelConfig)}
    assert set(spec) == (model - {"num_classes"}) | {"preset"}
    assert all(spec[n].default is None for n in spec if n != "preset")
    # Every model field is a training-config key, and it reaches the network.
    overrides = {"model.dropout": 0.25, "model.bn_momentum": 0.2, "model.use_flow": False, "model.width": 0.125}
    cfg = load_config("tiny", overrides)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    net = ga.build_model(cfg.model.preset, num_classes=3, **cfg.model.overrides())
    assert (net.config.dropout, net.config.bn_momentum, net.config.use_flow) == (0.25, 0.2, False)
    assert net.head.dropout.p == 0.25 and net.backbone.model_flow is None
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert bns and all(m.momentum == 0.2 for m in bns)
    with pytest.raises(ValueError, match="must be a number"):
        load_config("tiny", {"model.dropout": "high"})


def test_network_is_built_from_its_config():
    cfg = dataclasses.replace(ga.PRESETS["tiny"], num_classes=4, frames=8, crop=64)
    a, b = ga.GazeAttentionNet(cfg), ga.build_model("tiny", num_classes=4, frames=8, crop=64)
    assert a.config == b.config == cfg
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]
    assert ga.GazeAttentionNet(cfg, num_classes=2).config.num_classes == 2


def test_constants_module_imports_nothing_heavy():
    tree = ast.parse((SRC / "constants.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [getattr(n, "module", None) for n in imports] == ["__future__"]


def test_choice_lists_come_from_constants():
    assert set(ga.PRESETS) == set(constants.MODEL_PRESETS)
    assert ga.losses.ESTIMATORS is constants.ESTIMATORS
    assert ga.estimators.GAZE_MODES is constants.GAZE_MODES
    assert set(constants.EVAL_GAZE_MODES) <= set(constants.GAZE_MODES)
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    expected = {
        ("train", "estimator"): constants.ESTIMATORS,
        ("train", "precision"): constants.PRECISIONS,
        ("evaluate", "precision"): constants.PRECISIONS,
        ("predict", "precision"): constants.PRECISIONS,
        # the CLI adds "auto": none for models trained without gaze, else sample
        ("evaluate", "gaze_mode"): ("auto", *constants.EVAL_GAZE_MODES),
        ("predict", "gaze_mode"): ("auto", *constants.EVAL_GAZE_MODES),
        ("visualize", "gaze_mode"): ("auto", *constants.EVAL_GAZE_MODES),
        ("predict", "flow"): constants.ONLINE_FLOW_METHODS,
        ("prepare", "flow"): constants.FLOW_METHODS,
    }
    for (command, dest), choices in expected.items():
        action = next(a for a in sub.choices[command]._actions if a.dest == dest)
        assert tuple(action.choices) == choices, (command, dest)


def test_no_command_spells_out_a_choice_list():
    """A literal tuple of estimators, precisions or gaze modes in a command is a second copy."""
    for path in (SRC / "commands").glob("*.py"):
        text = path.read_text()
        for values in (constants.PRECISIONS, constants.ESTIMATORS, constants.EVAL_GAZE_MODES):
            literal = ", ".join(f'"{v}"' for v in values)
            assert literal not in text, f"{path.name} repeats {literal}"

"""The I3D backbone's `mixed` key: a two-stream I3D with some of its nine Inception modules."""

from __future__ import annotations

import json

import pytest
import torch

import gaze_attention as ga
from gaze_attention.engine.config import load_config
from gaze_attention.models import ModelConfig
from gaze_attention.models.i3d import INCEPTION_CHANNELS, inception_out_channels

FIVE = ["Mixed_3b", "Mixed_4b", "Mixed_4f", "Mixed_5b", "Mixed_5c"]
# A small clip keeps the test fast: 8 frames at 64 -> grid (1, 2).
SMALL = dict(num_classes=4, frames=8, crop=64, width=0.125, dropout=0.5)


def _clip(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(batch, 3, 8, 64, 64) * 2 - 1, torch.rand(batch, 2, 8, 64, 64) * 2 - 1


def test_five_modules_build_only_those_and_chain_their_channels() -> None:
    m = ga.GazeAttentionNet(ModelConfig(**SMALL, backbone_config={"mixed": FIVE})).eval()
    for stream in (m.backbone.model_rgb, m.backbone.model_flow):
        built = [n for n, _ in stream.named_children() if n.startswith("Mixed")]
        assert built == FIVE
        # each module takes what the one before gives: 4b after 3b, 4f after 4b
        assert stream.Mixed_4b.b0.conv3d.in_channels == inception_out_channels("Mixed_3b", 0.125)
        assert stream.Mixed_4f.b0.conv3d.in_channels == inception_out_channels("Mixed_4b", 0.125)
    # endpoints keep their channels (4f before the pool, 5c at the end), so the heads are I3D's
    full = ga.GazeAttentionNet(ModelConfig(**SMALL)).eval()
    assert m.backbone.pool5_channels == full.backbone.pool5_channels
    assert m.backbone.out_channels == full.backbone.out_channels
    rgb, flow = _clip()
    x4, x5 = m.backbone(rgb, flow)
    assert x4.shape == (2, full.backbone.pool5_channels, 1, 2, 2)
    assert x5.shape == (2, full.backbone.out_channels, 1, 2, 2)
    out = m(rgb, flow, gaze_mode="argmax")
    assert out.logits.shape == (2, 4) and out.gaze_logits.shape == (2, 1, 2, 2)
    dropped = {"Mixed_3c", "Mixed_4c", "Mixed_4d", "Mixed_4e"}
    assert not any(k.split(".")[2] in dropped for k in m.state_dict() if k.startswith("backbone."))
    assert sum(p.numel() for p in m.parameters()) < sum(p.numel() for p in full.parameters())


def test_default_is_the_full_i3d_with_unchanged_keys() -> None:
    a = ga.GazeAttentionNet(ModelConfig(**SMALL))
    b = ga.GazeAttentionNet(ModelConfig(**SMALL, backbone_config={"mixed": list(INCEPTION_CHANNELS)}))
    assert list(a.state_dict()) == list(b.state_dict())
    names = [n for n, _ in a.backbone.model_rgb.named_children()]
    assert names == [
        "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
        "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
        "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("mixed", "message"),
    [
        (["Mixed_4b", "Mixed_3b"], "in I3D's order"),
        (["Mixed_3b", "Mixed_3b"], "each once"),
        ([], "at least one"),
        (["Mixed_6a"], r"unknown Inception modules \['Mixed_6a'\]"),
    ],
)
def test_bad_module_lists_are_refused_naming_the_problem(mixed, message) -> None:
    with pytest.raises(ValueError, match=message):
        ga.GazeAttentionNet(ModelConfig(**SMALL, backbone_config={"mixed": mixed}))
    with pytest.raises(ValueError, match="unknown backbone_config keys for the 'i3d' backbone: mix "):
        ga.GazeAttentionNet(ModelConfig(**SMALL, backbone_config={"mix": FIVE}))


def test_checkpoint_round_trip_and_strict_loading() -> None:
    a = ga.GazeAttentionNet(ModelConfig(**SMALL, backbone_config={"mixed": FIVE})).eval()
    stored = json.loads(json.dumps(a.config.to_dict()))  # as a checkpoint stores it
    b = ga.GazeAttentionNet(ModelConfig.from_dict(stored)).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    rgb, flow = _clip()
    with torch.no_grad():
        torch.testing.assert_close(b(rgb, flow, gaze_mode="argmax").logits, a(rgb, flow, gaze_mode="argmax").logits)
    # the full network cannot take these weights, and says which keys are missing
    full = ga.GazeAttentionNet(ModelConfig(**SMALL))
    with pytest.raises(RuntimeError, match="Mixed_3c"):
        full.load_state_dict(a.state_dict(), strict=True)


@pytest.mark.parametrize("estimator", ["direct", "gumbel_softmax"])
def test_gradients_reach_every_parameter(estimator) -> None:
    torch.manual_seed(0)
    m = ga.GazeAttentionNet(ModelConfig(**SMALL, backbone_config={"mixed": FIVE})).train()
    rgb, flow = _clip(3)
    t, s = m.grid
    target = torch.zeros(3, t, s, s)
    target[:, :, 1, 0] = 1.0
    out = m(rgb, flow, gaze_mode=ga.losses.TRAIN_GAZE_MODE[estimator], tau=1.0)
    losses = ga.losses.training_losses(
        out, torch.tensor([0, 1, 3]), head=m.head, estimator=estimator, eps=1.0,
        gaze_target=target, gaze_valid=torch.ones(3, t, dtype=torch.bool),
    )  # fmt: skip
    losses["total"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_tiny_finetune_preset_trains_the_five_module_network() -> None:
    cfg = load_config("tiny-finetune")
    assert cfg.model.preset == "tiny"
    assert cfg.model.backbone_config == {"mixed": FIVE}
    m = ga.build_model(cfg.model.preset, num_classes=6, **cfg.model.overrides())
    assert [n for n, _ in m.backbone.model_rgb.named_children() if n.startswith("Mixed")] == FIVE
    assert m.grid == ga.PRESETS["tiny"].grid == (3, 4)

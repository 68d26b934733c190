"""The I3D backbone's `mixed` and `stem_stride` keys: a two-stream I3D with some of its nine
Inception modules, and its stem at spatial stride 4 without the first max-pool."""

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
    assert m.backbone.model_flow.Conv3d_1a_7x7.conv3d.stride == (2, 2, 2)
    assert m.grid == ga.PRESETS["tiny"].grid == (3, 4)


def test_a_reshaped_stem_follows_the_presets_batchnorm_momentum() -> None:
    # A stem built after the network would keep I3D's 0.01, whose running statistics short runs
    # never settle: that sank a stride-4 stem to chance in an earlier, hand-built experiment.
    for keys in ({"stem_stride": 4}, {"stem_temporal_kernel": 2}):
        m = ga.build_model("tiny", num_classes=6, backbone_config=keys)
        assert {b.momentum for b in m.modules() if isinstance(b, torch.nn.BatchNorm3d)} == {ga.PRESETS["tiny"].bn_momentum}


# Odd sizes: SAME padding rounds up, so the two stems must agree on every map size.
@pytest.mark.parametrize(("frames", "size"), [(8, 64), (9, 70), (5, 33)])
def test_stem_stride_4_gives_the_same_maps_without_the_first_max_pool(frames, size) -> None:
    cfg = dict(SMALL, frames=frames, crop=size)
    two = ga.GazeAttentionNet(ModelConfig(**cfg)).eval()
    four = ga.GazeAttentionNet(ModelConfig(**cfg, backbone_config={"stem_stride": 4})).eval()
    names = [n for n, _ in four.backbone.model_rgb.named_children()]
    assert "MaxPool3d_2a_3x3" not in names and names[:2] == ["Conv3d_1a_7x7", "Conv3d_2b_1x1"]
    for stream in (four.backbone.model_rgb, four.backbone.model_flow):
        assert stream.Conv3d_1a_7x7.conv3d.stride == (2, 4, 4)
    # the same weights by name and shape: any I3D checkpoint loads into either
    assert {k: v.shape for k, v in two.state_dict().items()} == {k: v.shape for k, v in four.state_dict().items()}
    four.load_state_dict(two.state_dict(), strict=True)
    rgb, flow = torch.rand(2, 3, frames, size, size) * 2 - 1, torch.rand(2, 2, frames, size, size) * 2 - 1
    with torch.no_grad():
        after_two = two.backbone.model_rgb.MaxPool3d_2a_3x3(two.backbone.model_rgb.Conv3d_1a_7x7(rgb))
        after_four = four.backbone.model_rgb.Conv3d_1a_7x7(rgb)
        assert after_four.shape == after_two.shape
        # with the same symmetric padding, stride 4 is stride 2 at every other position
        c2 = two.backbone.model_rgb.Conv3d_1a_7x7.conv3d(torch.nn.functional.pad(rgb, (3, 3, 3, 3, 3, 3)))
        c4 = torch.nn.functional.conv3d(
            torch.nn.functional.pad(rgb, (3, 3, 3, 3, 3, 3)), four.backbone.model_rgb.Conv3d_1a_7x7.conv3d.weight,
            stride=(2, 4, 4),
        )
        torch.testing.assert_close(c4, c2[:, :, :, ::2, ::2])
        x4, x5 = four.backbone(rgb, flow)
        y4, y5 = two.backbone(rgb, flow)
    assert x4.shape == y4.shape and x5.shape == y5.shape
    assert four.grid == two.grid
    assert not torch.allclose(x5, y5)  # another network on the same weights


def test_stem_stride_round_trip_gradients_and_bad_values() -> None:
    cfg = ModelConfig(**SMALL, backbone_config={"mixed": FIVE, "stem_stride": 4})
    a = ga.GazeAttentionNet(cfg).train()
    stored = json.loads(json.dumps(a.config.to_dict()))
    b = ga.GazeAttentionNet(ModelConfig.from_dict(stored))
    assert b.backbone.model_rgb.Conv3d_1a_7x7.conv3d.stride == (2, 4, 4)
    b.load_state_dict(a.state_dict(), strict=True)
    rgb, flow = _clip(3)
    out = a(rgb, flow, gaze_mode="argmax")
    out.logits.sum().backward()
    for name, p in a.backbone.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for bad in (3, 1, True, "4"):
        with pytest.raises(ValueError, match=f"stem_stride must be one of 2, 4 .*got {bad!r}"):
            ga.GazeAttentionNet(ModelConfig(**SMALL, backbone_config={"stem_stride": bad}))


@pytest.mark.parametrize("kt", [1, 2, 3])
def test_stem_temporal_kernel_sets_the_stem_weight_and_keeps_the_maps(kt) -> None:
    full = ga.GazeAttentionNet(ModelConfig(**SMALL)).eval()
    m = ga.GazeAttentionNet(ModelConfig(**SMALL, backbone_config={"mixed": FIVE, "stem_temporal_kernel": kt}))
    for stream, cin in ((m.backbone.model_rgb, 3), (m.backbone.model_flow, 2)):
        assert stream.Conv3d_1a_7x7.conv3d.weight.shape == (scaled_64(), cin, kt, 7, 7)
        assert stream.Conv3d_1a_7x7.conv3d.stride == (2, 2, 2)
    rgb, flow = _clip()
    x4, x5 = m.eval().backbone(rgb, flow)
    y4, y5 = full.backbone(rgb, flow)
    assert x4.shape == y4.shape and x5.shape == y5.shape
    # every parameter learns, the stem included
    m.train()
    out = m(rgb, flow, gaze_mode="argmax")
    out.logits.sum().backward()
    for name, p in m.backbone.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # a 7x7x7 stem's weights do not fit, and the error names the stem
    with pytest.raises(RuntimeError, match="Conv3d_1a_7x7.conv3d.weight"):
        m.load_state_dict(ga.GazeAttentionNet(ModelConfig(**SMALL, backbone_config={"mixed": FIVE})).state_dict())


def scaled_64() -> int:
    from gaze_attention.models.i3d import scaled

    return scaled(64, SMALL["width"])


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "3"])
def test_bad_stem_temporal_kernels_are_refused(bad) -> None:
    with pytest.raises(ValueError, match=f"stem_temporal_kernel must be a positive int .*got {bad!r}"):
        ga.GazeAttentionNet(ModelConfig(**SMALL, backbone_config={"stem_temporal_kernel": bad}))

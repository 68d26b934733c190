"""Shapes, input checks and gradient flow of the gaze-attention network."""

from __future__ import annotations

import json

import pytest
import torch

import gaze_attention as ga
from gaze_attention.models.i3d import output_grid


def _clip(model: ga.GazeAttentionNet, batch: int = 2, frames: int | None = None):
    cfg = model.config
    t = cfg.frames if frames is None else frames
    rgb = torch.rand(batch, 3, t, cfg.crop, cfg.crop) * 2 - 1
    flow = torch.rand(batch, 2, t, cfg.crop, cfg.crop) * 2 - 1 if cfg.use_flow else None
    return rgb, flow


@pytest.fixture(scope="module")
def tiny() -> ga.GazeAttentionNet:
    torch.manual_seed(0)
    return ga.build_model("tiny", num_classes=5)


def test_bn_momentum_option() -> None:
    m = ga.build_model("tiny", num_classes=3)
    bns = [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm3d)]
    assert bns and all(b.momentum == 0.1 and b.eps == 1e-3 for b in bns)
    assert all(
        b.momentum == 0.01
        for b in ga.build_model("tiny", num_classes=3, bn_momentum=0.01).modules()
        if isinstance(b, torch.nn.BatchNorm3d)
    )


def test_grid_is_derived_from_the_input_size() -> None:
    assert ga.PRESETS["paper"].grid == (3, 7)
    assert ga.PRESETS["tiny"].grid == (3, 4)
    assert output_grid(24, 224, 224) == (3, 7, 7)
    m = ga.build_model("tiny", num_classes=3, frames=8, crop=96)
    assert m.grid == (1, 3)
    assert m.head.fc.weight.shape == (9, 9)


@pytest.mark.parametrize(
    "mode", ["sample", "argmax", "expected", "gumbel_softmax", "straight_through", "none"]
)
def test_forward_shapes_every_gaze_mode(tiny: ga.GazeAttentionNet, mode: str) -> None:
    tiny.eval()
    rgb, flow = _clip(tiny)
    with torch.no_grad():
        out = tiny(rgb, flow, gaze_mode=mode)
    t, s = tiny.grid
    assert out.logits.shape == (2, 5)
    assert out.z.shape == (2, t, s, s)
    assert out.attention.shape == (2, t, s, s)
    assert out.features.shape == (2, tiny.backbone.out_channels, t, s, s)
    # every gaze map is a distribution over the cells of each slice
    torch.testing.assert_close(out.z.sum((-1, -2)), torch.ones(2, t))
    if mode == "none":
        assert out.gaze_logits is None
    else:
        assert out.gaze_logits.shape == (2, t, s, s)
    if mode in ("sample", "argmax", "straight_through"):
        assert set(out.z.unique().tolist()) <= {0.0, 1.0}
    assert (out.perturbed is not None) == (mode in ("sample", "gumbel_softmax", "straight_through"))


def test_head_matches_forward(tiny: ga.GazeAttentionNet) -> None:
    tiny.eval()
    rgb, flow = _clip(tiny)
    with torch.no_grad():
        out = tiny(rgb, flow, gaze_mode="argmax")
        torch.testing.assert_close(tiny.head(out.z, out.features), out.logits)
        given = torch.zeros_like(out.z)
        given[:, :, 0, 0] = 1
        torch.testing.assert_close(tiny(rgb, flow, z=given).logits, tiny.head(given, out.features))


def test_sampling_uses_the_generator(tiny: ga.GazeAttentionNet) -> None:
    tiny.eval()
    rgb, flow = _clip(tiny)
    with torch.no_grad():
        a = tiny(rgb, flow, generator=torch.Generator().manual_seed(3))
        b = tiny(rgb, flow, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.perturbed, b.perturbed)
    torch.testing.assert_close(a.z, b.z)
    # noise was drawn (pi + G, not pi) and it comes from the generator: another seed, other noise
    noise = a.perturbed - a.gaze_logits
    assert noise.abs().min() > 0
    with torch.no_grad():
        c = tiny(rgb, flow, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(c.gaze_logits, a.gaze_logits)  # same network output
    assert not torch.allclose(c.perturbed - c.gaze_logits, noise)
    # Gumbel(0, 1): over a few hundred cells the sample mean is near Euler's constant 0.577
    assert abs(float(noise.mean()) - 0.5772) < 0.25, float(noise.mean())


def test_rgb_only_model() -> None:
    m = ga.build_model("tiny", num_classes=4, use_flow=False).eval()
    rgb, flow = _clip(m)
    assert flow is None and m.backbone.model_flow is None
    with torch.no_grad():
        assert m(rgb).logits.shape == (2, 4)
    with pytest.raises(ValueError, match="RGB-only"):
        m(rgb, torch.zeros(2, 2, *rgb.shape[2:]))


def test_bad_inputs_say_what_was_expected(tiny: ga.GazeAttentionNet) -> None:
    rgb, flow = _clip(tiny)
    with pytest.raises(ValueError, match="3 colour channels"):
        tiny(rgb[:, :2], flow)
    with pytest.raises(ValueError, match=r"flow must be \[B, 2, T, H, W\]"):
        tiny(rgb, torch.cat([flow, flow[:, :1]], 1))
    with pytest.raises(ValueError, match="pass flow"):
        tiny(rgb)
    short_rgb, short_flow = _clip(tiny, frames=8)
    with pytest.raises(ValueError, match="expected 24 frames of 112x112"):
        tiny(short_rgb, short_flow)
    with pytest.raises(ValueError, match="unknown gaze mode"):
        tiny(rgb, flow, gaze_mode="maybe")
    with pytest.raises(ValueError, match="unknown preset"):
        ga.build_model("huge")


@pytest.mark.parametrize("estimator", ["direct", "gumbel_softmax", "straight_through"])
def test_training_step_reaches_every_parameter(estimator: str) -> None:
    torch.manual_seed(1)
    m = ga.build_model("tiny", num_classes=5).train()
    rgb, flow = _clip(m, batch=3)
    labels = torch.tensor([0, 3, 4])
    t, s = m.grid
    target = torch.zeros(3, t, s, s)
    target[:, :, 1, 2] = 1.0
    valid = torch.tensor([[True, False, True], [True, True, True], [False, False, False]])
    out = m(rgb, flow, gaze_mode=ga.losses.TRAIN_GAZE_MODE[estimator])
    losses = ga.losses.training_losses(
        out, labels, head=m.head, estimator=estimator, eps=1.0, gaze_target=target, gaze_valid=valid
    )
    assert losses["kl"] > 0
    losses["total"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    gaze_grad = sum(p.grad.abs().sum() for p in m.gaze.parameters())
    assert gaze_grad > 0


def test_direct_term_gradient_is_the_estimate() -> None:
    """d L_do / d pi equals g / B: the estimator, not CE, drives the gaze head."""
    torch.manual_seed(2)
    m = ga.build_model("tiny", num_classes=5).train()
    rgb, flow = _clip(m, batch=2)
    labels = torch.tensor([1, 2])
    out = m(rgb, flow, gaze_mode="sample")
    pi = out.gaze_logits
    pi.retain_grad()
    losses = ga.losses.training_losses(out, labels, head=m.head, estimator="direct", eps=10.0)
    losses["do"].backward()
    cand = m.head.candidate_losses(out.z, out.features, labels)
    g = ga.estimators.direct_optimization_grad(out.perturbed, out.z, cand, 10.0)
    torch.testing.assert_close(pi.grad, g / 2)
    assert m.training  # nothing flipped the module's mode


def test_paper_state_dict_matches_reference_manifest(shared_dir) -> None:
    manifest = json.loads((shared_dir / "reference" / "reference_state_dict_shapes.json").read_text())
    ours = ga.to_reference_state_dicts(ga.build_model("paper", num_classes=106))
    for part, count in (("base", 684), ("gaze", 88), ("attn", 4)):
        shapes = {k: list(v.shape) for k, v in ours[part].items()}
        assert len(shapes) == count
        assert shapes == manifest[part]


def test_bf16_weight_gradients_are_finite_with_two_slices() -> None:
    """Guards the T = 2 workaround in Unit3D (torch 2.13 CPU bf16 Conv3d weight gradients)."""
    torch.manual_seed(0)
    m = ga.build_model("tiny", num_classes=4, frames=16, width=0.25).train()  # T' = 2, where it showed
    for _ in range(3):
        rgb, flow = _clip(m, batch=8)
        m.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(rgb, flow)
        out.logits.float().square().sum().backward()
        bad = [n for n, p in m.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, bad


def test_save_reference_checkpoint_replaces_a_planted_link(tmp_path):
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"precious")
    (tmp_path / "w_base.pt").symlink_to(victim)
    model = ga.build_model("tiny", num_classes=3, width=0.125, frames=8, crop=64)
    paths = ga.save_reference_checkpoint(model, tmp_path / "w")
    assert victim.read_bytes() == b"precious" and not paths["base"].is_symlink()
    other = ga.build_model("tiny", num_classes=3, width=0.125, frames=8, crop=64)
    ga.load_reference_checkpoint(other, paths["base"], paths["gaze"], paths["attn"])

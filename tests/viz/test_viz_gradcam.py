"""Grad-CAM++ for 5-D activations: the formula, hooks, and a blob it must find."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gaze_attention.viz.gradcam import (
    GradCAMPlusPlus,
    cam_from_activations,
    grad_cam_plus_plus,
    normalize_maps,
)

T, H, W = 12, 24, 24
BLOB_FRAMES = 4


def _add_blob(clip: torch.Tensor, t0: int, cy: int, cx: int, amp: float = 3.0) -> torch.Tensor:
    """Add a Gaussian blob (sigma 2 px) to frames [t0, t0 + 4) of clip [1, T, H, W]."""
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    blob = amp * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    clip[0, t0:t0 + BLOB_FRAMES] += blob
    return clip


def _batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise clips; label 1 clips hold a blob at a random place and time."""
    x = 0.5 * torch.randn(n, 1, T, H, W, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    for i in torch.nonzero(y).flatten().tolist():
        t0 = int(torch.randint(0, T - BLOB_FRAMES + 1, (1,), generator=g))
        cy, cx = (int(v) for v in torch.randint(3, H - 3, (2,), generator=g))
        _add_blob(x[i], t0, cy, cx)
    return x, y


class BlobNet(nn.Module):
    """Two 3-D conv layers and a global max: a blob detector."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2),
            nn.Conv3d(8, 16, 3, padding=1), nn.ReLU(),
        )
        self.fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).amax(dim=(2, 3, 4)))  # [B, 2]


@pytest.fixture(scope="module")
def blob_net() -> BlobNet:
    torch.manual_seed(0)
    net = BlobNet()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        x, y = _batch(16, g)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x, y = _batch(64, g)
    with torch.no_grad():
        acc = (net(x).argmax(1) == y).float().mean().item()
    assert acc > 0.95, f"the blob detector did not train (accuracy {acc:.2f})"
    return net


def test_gradcam_plus_plus_peaks_on_the_blob(blob_net: BlobNet) -> None:
    places = [(6, 17, 7), (2, 6, 18), (8, 12, 12), (0, 4, 4)]  # (first frame, y, x)
    g = torch.Generator().manual_seed(1)
    clips = torch.stack([_add_blob(0.5 * torch.randn(1, T, H, W, generator=g), *p)
                         for p in places])  # [4, 1, T, H, W]
    res = grad_cam_plus_plus(blob_net, "features.4", lambda: blob_net(clips), target=1,
                             size=(T, H, W), norm="clip")
    assert res.cam.shape == (4, T, H, W)
    assert res.raw.shape == (4, T // 2, H // 2, W // 2)
    assert res.target.tolist() == [1, 1, 1, 1]
    for cam, (t0, cy, cx) in zip(res.cam, places, strict=True):
        t, y, x = np.unravel_index(int(cam.argmax()), cam.shape)
        # One frame of slack: the layer pools time by 2, the map is trilinearly upsampled.
        assert t0 - 1 <= t <= t0 + BLOB_FRAMES, (t, t0)
        assert abs(y - cy) <= 2 and abs(x - cx) <= 2, ((y, x), (cy, cx))
        inside = cam[max(0, t0 - 1):t0 + BLOB_FRAMES + 1].sum() / cam.sum()
        assert inside > 0.6, float(inside)


def test_cam_formula_matches_a_direct_numpy_version() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.relu(torch.randn(2, 5, 3, 4, 4, generator=g))
    grad = torch.randn(2, 5, 3, 4, 4, generator=g)
    grad[0, 0, 0, 0, 0] = 0.0  # a zero gradient must give alpha = 0, not 0/0
    an, gn = a.double().numpy(), grad.double().numpy()
    sum_a = an.sum(axis=(2, 3, 4), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = gn**2 / (2 * gn**2 + sum_a * gn**3)
    alpha = np.where(gn != 0, alpha, 0.0)
    weights = (alpha * np.maximum(gn, 0)).sum(axis=(2, 3, 4), keepdims=True)
    expected = (weights * an).sum(axis=1)
    got = cam_from_activations(a, grad)
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-5)


class TwoStream(nn.Module):
    """Two conv streams fused by summing, like the gaze-attention backbone."""

    def __init__(self) -> None:
        super().__init__()
        self.rgb = nn.Conv3d(3, 4, 3, padding=1)
        self.flow = nn.Conv3d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.rgb(rgb)) + torch.relu(self.flow(flow))
        return self.fc(x.mean(dim=(2, 3, 4)))


def test_two_layers_are_summed_and_hooks_removed() -> None:
    model = TwoStream()
    rgb, flow = torch.randn(2, 3, 4, 6, 6), torch.randn(2, 2, 4, 6, 6)
    with GradCAMPlusPlus(model, ["rgb", "flow"]) as cam:
        assert len(model.rgb._forward_hooks) == 1
        res = cam(lambda: model(rgb, flow), target=2, norm="none")
    assert not model.rgb._forward_hooks and not model.flow._forward_hooks

    ar, af = model.rgb(rgb), model.flow(flow)
    logits = model.fc((torch.relu(ar) + torch.relu(af)).mean(dim=(2, 3, 4)))
    gr, gf = torch.autograd.grad(logits[:, 2].sum(), [ar, af])
    expected = torch.relu(cam_from_activations(ar, gr) + cam_from_activations(af, gf))
    torch.testing.assert_close(res.raw, expected)
    torch.testing.assert_close(res.cam, expected)  # no size, norm "none": the raw map
    torch.testing.assert_close(res.logits, logits.detach())


def test_predicted_class_is_the_default_target() -> None:
    model = TwoStream()
    rgb, flow = torch.randn(3, 3, 4, 6, 6), torch.randn(3, 2, 4, 6, 6)
    res = grad_cam_plus_plus(model, ["rgb", "flow"], lambda: model(rgb, flow))
    assert res.target.tolist() == res.logits.argmax(1).tolist()


def test_frozen_weights_still_give_a_map() -> None:
    model = TwoStream()
    rgb, flow = torch.randn(1, 3, 4, 6, 6), torch.randn(1, 2, 4, 6, 6)
    ref = grad_cam_plus_plus(model, "rgb", lambda: model(rgb, flow), target=0, norm="none")
    for p in model.parameters():
        p.requires_grad_(False)
    frozen = grad_cam_plus_plus(model, "rgb", lambda: model(rgb, flow), target=0, norm="none")
    torch.testing.assert_close(frozen.raw, ref.raw)


def test_upsampling_and_normalisation() -> None:
    model = TwoStream()
    rgb, flow = torch.randn(2, 3, 4, 6, 6), torch.randn(2, 2, 4, 6, 6)
    for norm in ("frame", "clip"):
        res = grad_cam_plus_plus(model, ["rgb", "flow"], lambda: model(rgb, flow),
                                 size=(8, 12, 10), norm=norm)
        assert res.cam.shape == (2, 8, 12, 10)
        assert res.cam.min() >= 0 and res.cam.max() <= 1 + 1e-6
    maps = torch.zeros(1, 3, 4, 4)
    maps[0, 1, 2, 2] = 5.0
    maps[0, 2, 0, 0] = 0.5
    per_frame = normalize_maps(maps, "frame")
    assert per_frame[0, 1].max() == 1 and per_frame[0, 2].max() == 1
    assert (per_frame[0, 0] == 0).all()  # a constant frame is 0, not NaN
    per_clip = normalize_maps(maps, "clip")
    assert per_clip.max() == 1 and per_clip[0, 2, 0, 0] == pytest.approx(0.1)
    with pytest.raises(ValueError):
        normalize_maps(maps, "window")  # type: ignore[arg-type]


def test_bad_layers_and_repeated_calls_are_errors() -> None:
    model = TwoStream()
    with pytest.raises(KeyError):
        GradCAMPlusPlus(model, "no.such.layer")
    rgb, flow = torch.randn(1, 3, 4, 6, 6), torch.randn(1, 2, 4, 6, 6)
    with GradCAMPlusPlus(model, "rgb") as cam, pytest.raises(RuntimeError, match="2 times"):
        cam(lambda: model(rgb, flow) + model(rgb, flow))
    assert not model.rgb._forward_hooks
    with pytest.raises(RuntimeError, match="context manager"):
        GradCAMPlusPlus(model, "rgb")(lambda: model(rgb, flow))

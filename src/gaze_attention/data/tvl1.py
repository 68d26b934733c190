"""TV-L1 optical flow in PyTorch, batched over frame pairs: OpenCV's DualTVL1 on any device.

The algorithm is the one of OpenCV contrib's `cv::optflow::DualTVL1OpticalFlow`
(modules/optflow/src/tvl1flow.cpp; Zach, Pock & Bischof 2007 with the improvements of Wedel
et al. 2009 and Sanchez et al. 2013), step by step, with the same default parameters:

- images as float in 0..255; a pyramid of `nscales` levels, each the previous one resized by
  `scale_step` with bilinear interpolation (half-pixel centres, sizes rounded), stopping
  before a side falls below 16 px; flow starts at zero on the coarsest level and is resized
  bilinearly and multiplied by 1 / scale_step on the way up;
- per level: the centred gradient of I1 (one-sided halves at the borders), then `warps`
  times: warp I1 and its gradient by the current flow (bicubic, a = -0.75, zero outside the
  image, sample positions quantised to 1/32 px as OpenCV's remap does), linearise the data
  term, and run up to `outer_iterations` x (5x5 median filter of the flow, then up to
  `inner_iterations` x (threshold step for v, u = v + theta div p, dual step for p)); both
  loops stop once the summed squared change of u over the image is below
  epsilon^2 * (pixels of the level). The dual variables p are reset at each level only.

Every frame pair of a batch runs its own stopping rule: a pair that has converged in one
warp is frozen until the next warp, exactly as it would be if it ran alone. The result
differs from OpenCV's float32 loops only by rounding order (see tests/data/test_tvl1.py and
benchmarks/tvl1.py for the measured agreement and speed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_REMAP_SUBPIXELS = 32  # OpenCV's INTER_TAB_SIZE: remap positions are quantised to 1/32 px


@dataclass(frozen=True)
class TVL1Params:
    """OpenCV's DualTVL1OpticalFlow defaults (tvl1flow.cpp, the constructor's default values)."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median_filtering: int = 5

    def __post_init__(self) -> None:
        if self.gamma != 0.0:
            raise ValueError("gamma != 0 (the illumination term) is not implemented; OpenCV's default is 0")
        if self.median_filtering not in (0, 1, 3, 5):
            raise ValueError(f"median_filtering must be 0, 1, 3 or 5, got {self.median_filtering}")
        if not 0 < self.scale_step < 1 or self.nscales < 1 or self.warps < 1:
            raise ValueError("need 0 < scale_step < 1, nscales >= 1, warps >= 1")


def _resize_bilinear(x: torch.Tensor, out_h: int, out_w: int, sy: float, sx: float) -> torch.Tensor:
    """cv::resize INTER_LINEAR of x [B, C, H, W]: source coordinate (d + 0.5) * s - 0.5, clamped."""
    _, _, h, w = x.shape
    ys = ((torch.arange(out_h, device=x.device, dtype=x.dtype) + 0.5) * sy - 0.5).clamp(0, h - 1)
    xs = ((torch.arange(out_w, device=x.device, dtype=x.dtype) + 0.5) * sx - 0.5).clamp(0, w - 1)
    y0 = ys.floor().long()
    x0 = xs.floor().long()
    y1 = (y0 + 1).clamp(max=h - 1)
    x1 = (x0 + 1).clamp(max=w - 1)
    wy = (ys - y0).view(1, 1, -1, 1)
    wx = (xs - x0).view(1, 1, 1, -1)
    top = x[:, :, y0]  # [B, C, out_h, W]
    bot = x[:, :, y1]
    rows = top + (bot - top) * wy
    left, right = rows[..., x0], rows[..., x1]
    return left + (right - left) * wx


def _downscale(x: torch.Tensor, step: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    # cv::resize with fx = fy = step: dsize = round(size * step), source step = 1 / step.
    out_h, out_w = round(h * step), round(w * step)
    return _resize_bilinear(x, out_h, out_w, 1.0 / step, 1.0 / step)


def _upscale_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return _resize_bilinear(x, h, w, x.shape[-2] / h, x.shape[-1] / w)


def _centered_gradient(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """img [B, H, W] -> dx, dy; centred differences inside, half one-sided differences at borders."""
    dx = torch.empty_like(img)
    dy = torch.empty_like(img)
    dx[:, :, 1:-1] = 0.5 * (img[:, :, 2:] - img[:, :, :-2])
    dx[:, :, 0] = 0.5 * (img[:, :, 1] - img[:, :, 0])
    dx[:, :, -1] = 0.5 * (img[:, :, -1] - img[:, :, -2])
    dy[:, 1:-1] = 0.5 * (img[:, 2:] - img[:, :-2])
    dy[:, 0] = 0.5 * (img[:, 1] - img[:, 0])
    dy[:, -1] = 0.5 * (img[:, -1] - img[:, -2])
    return dx, dy


def _forward_gradient(u: torch.Tensor) -> torch.Tensor:
    """u [..., H, W] -> [..., 2, H, W] forward differences (x, y), zero in the last column / row."""
    dx = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1))
    dy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    return torch.stack((dx, dy), dim=-3)


def _divergence(p: torch.Tensor) -> torch.Tensor:
    """p [..., 2, H, W] -> [..., H, W]: backward differences, zero outside the first row / column
    (the negative adjoint of `_forward_gradient`)."""
    px, py = p.unbind(-3)
    return px - F.pad(px[..., :, :-1], (1, 0)) + py - F.pad(py[..., :-1, :], (0, 0, 1, 0))


def _median(u: torch.Tensor, k: int) -> torch.Tensor:
    """cv::medianBlur(k) of float images [B, H, W]: replicated border, exact median of k*k."""
    r = k // 2
    padded = F.pad(u.unsqueeze(1), (r, r, r, r), mode="replicate")  # [B, 1, H+2r, W+2r]
    h, w = u.shape[-2:]
    windows = padded.unfold(2, k, 1).unfold(3, k, 1)  # [B, 1, H, W, k, k]
    return windows.reshape(u.shape[0], h, w, k * k).median(dim=-1).values


def _warp(images: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """cv::remap(INTER_CUBIC, BORDER_CONSTANT 0) of images [B, C, H, W] at (x + u1, y + u2)."""
    _, _, h, w = images.shape
    ys = torch.arange(h, device=images.device, dtype=images.dtype).view(1, h, 1)
    xs = torch.arange(w, device=images.device, dtype=images.dtype).view(1, 1, w)
    q = _REMAP_SUBPIXELS
    mx = torch.round((xs + u1) * q) / q  # [B, H, W] sample positions in pixels
    my = torch.round((ys + u2) * q) / q
    # align_corners=True maps -1 / 1 to the centres of the first / last pixel.
    grid = torch.stack((2 * mx / max(w - 1, 1) - 1, 2 * my / max(h - 1, 1) - 1), dim=-1)
    return F.grid_sample(images, grid, mode="bicubic", padding_mode="zeros", align_corners=True)


def _one_scale(i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor, prm: TVL1Params) -> torch.Tensor:
    """Flow refinement on one pyramid level; i0, i1: [B, H, W]; u: [B, 2, H, W] (u1, u2)."""
    b, h, w = i0.shape
    scaled_eps = prm.epsilon * prm.epsilon * h * w
    l_t = prm.lambda_ * prm.theta
    taut = prm.tau / prm.theta
    fl_eps = torch.finfo(i0.dtype).eps
    i1x, i1y = _centered_gradient(i1)
    stack = torch.stack((i1, i1x, i1y), dim=1)  # [B, 3, H, W]
    p = torch.zeros(b, 2, 2, h, w, dtype=u.dtype, device=u.device)  # [B, flow comp, x/y, H, W]
    for _ in range(prm.warps):
        warped = _warp(stack, u[:, 0], u[:, 1])
        i1w, gi = warped[:, 0], warped[:, 1:]  # I1(x + u0) [B, H, W]; its gradient [B, 2, H, W]
        grad = (gi * gi).sum(1)  # |grad I1(x + u0)|^2
        rho_c = i1w - (gi * u).sum(1) - i0
        lg = l_t * grad
        # The threshold step's inner branch: -rho / |grad|^2 where the gradient is not ~0.
        inv_grad = torch.where(grad > fl_eps, 1.0 / torch.where(grad > fl_eps, grad, 1.0), 0.0)
        active = torch.ones(b, dtype=torch.bool, device=i0.device)  # per pair: error > scaled_eps
        n_active = b
        for _ in range(prm.outer_iterations):
            if n_active == 0:
                break
            if prm.median_filtering > 1:
                med = _median(u.reshape(b * 2, h, w), prm.median_filtering).view(b, 2, h, w)
                u = med if n_active == b else torch.where(active.view(b, 1, 1, 1), med, u)
            for _ in range(prm.inner_iterations):
                if n_active == 0:
                    break
                # Thresholding step (TH) for v.
                rho = rho_c + (gi * u).sum(1)
                coef = torch.where(rho < -lg, l_t, torch.where(rho > lg, -l_t, -rho * inv_grad))
                v = u + coef.unsqueeze(1) * gi
                # u = v + theta div p; the stopping error is the summed squared change of u.
                new_u = v + prm.theta * _divergence(p)
                err = ((new_u - u) ** 2).sum(dim=(1, 2, 3))  # [B]
                # Dual step for p.
                g = _forward_gradient(new_u)  # [B, 2, 2, H, W]
                ng = 1.0 + taut * torch.linalg.vector_norm(g, dim=2, keepdim=True)
                new_p = (p + taut * g) / ng
                if n_active == b:
                    u, p = new_u, new_p
                else:  # converged pairs wait for the next warp, as they would alone
                    a = active.view(b, 1, 1, 1)
                    u = torch.where(a, new_u, u)
                    p = torch.where(a.unsqueeze(1), new_p, p)
                active = active & (err > scaled_eps)
                n_active = int(active.sum())
    return u


@torch.no_grad()
def tvl1(i0: torch.Tensor, i1: torch.Tensor, params: TVL1Params | None = None) -> torch.Tensor:
    """TV-L1 flow from i0 to i1, batched.

    i0, i1: [B, H, W] grey images in 0..255 (uint8 or float; float32 is used), on any device.
    Returns the flow [B, 2, H, W] in pixels (u to the right, v down) on the same device, as
    OpenCV's `DualTVL1OpticalFlow_create().calc(i0, i1, None)` gives it for each pair.
    """
    prm = params or TVL1Params()
    if i0.shape != i1.shape or i0.dim() != 3:
        raise ValueError(f"expected two [B, H, W] image batches of one shape, got {tuple(i0.shape)}, {tuple(i1.shape)}")
    if min(i0.shape[-2:]) < 3:
        raise ValueError(f"images must be at least 3x3 pixels, got {tuple(i0.shape[-2:])}")
    pyr0 = [i0.float()]
    pyr1 = [i1.float()]
    for _ in range(1, prm.nscales):
        n0 = _downscale(pyr0[-1].unsqueeze(1), prm.scale_step).squeeze(1)
        if min(n0.shape[-2:]) < 16:
            break
        pyr0.append(n0)
        pyr1.append(_downscale(pyr1[-1].unsqueeze(1), prm.scale_step).squeeze(1))
    b, h, w = pyr0[-1].shape
    u = torch.zeros(b, 2, h, w, dtype=pyr0[-1].dtype, device=pyr0[-1].device)
    for s in range(len(pyr0) - 1, -1, -1):
        u = _one_scale(pyr0[s], pyr1[s], u, prm)
        if s == 0:
            break
        h, w = pyr0[s - 1].shape[-2:]
        u = _upscale_to(u, h, w) / prm.scale_step
    return u


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' (or None): the first CUDA device when there is one, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


__all__ = ["TVL1Params", "resolve_device", "tvl1"]

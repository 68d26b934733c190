"""Grad-CAM++ for 3-D (video) convolutional networks.

Grad-CAM++ (Chattopadhay et al., WACV 2018) weights each feature channel of a layer by a
positive-gradient average whose per-position coefficients use the second- and third-order
terms of an exponential class score, so that several instances of a class all show up.
For a 5-D activation A [B, K, T, H, W] with gradient g = dS_c/dA of the class score S_c:

    alpha = g^2 / (2 g^2 + sum_{t,h,w}(A) g^3)
    w_k   = sum_{t,h,w} alpha * relu(g)
    cam   = relu(sum_k w_k A_k)          # [B, T, H, W]

The paper this package reproduces (Min & Corso, WACV 2021) shows this map over time on
I3D's last Inception block (`Mixed_5c`) to compare models trained with and without gaze.
Our backbone is two-stream and fuses the streams by summing, so several layers can be
hooked at once; their linear maps are summed before the ReLU, which for plain Grad-CAM
equals the map of the fused feature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["frame", "clip", "none"]

__all__ = [
    "CamResult",
    "GradCAMPlusPlus",
    "cam_from_activations",
    "grad_cam_plus_plus",
    "normalize_maps",
    "upsample_maps",
]


@dataclass
class CamResult:
    """Output of a Grad-CAM++ run.

    cam: [B, T, H, W] map (upsampled and normalised as asked); raw: [B, T', h, w] the
    map at the layer's resolution before normalisation; logits: [B, C]; target: [B] class
    indices the map explains; output: whatever the forward callable returned.
    """

    cam: Tensor
    raw: Tensor
    logits: Tensor
    target: Tensor
    output: Any


def _logits_of(output: Any) -> Tensor:
    """The logits tensor of a model output (a tensor or anything with `.logits`)."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, dict) and isinstance(output.get("logits"), Tensor):
        return output["logits"]
    raise TypeError(f"cannot find logits in a {type(output).__name__}")


def cam_from_activations(activations: Tensor, gradients: Tensor, eps: float = 1e-7) -> Tensor:
    """Grad-CAM++ linear map (before ReLU) from a layer's activations and gradients.

    activations, gradients: [B, K, T, H, W] (any number of trailing dims works).
    Returns [B, T, H, W] = sum_k w_k A_k.
    """
    a = activations.detach().float()
    g = gradients.detach().float()
    dims = tuple(range(2, a.dim()))
    g2 = g * g
    g3 = g2 * g
    sum_a = a.sum(dim=dims, keepdim=True)  # [B, K, 1, 1, 1]
    denom = 2.0 * g2 + sum_a * g3
    # Where the gradient vanishes alpha is 0/0; Grad-CAM++ defines it as 0 there.
    alpha = torch.where(g != 0, g2 / torch.where(denom != 0, denom, torch.full_like(denom, eps)),
                        torch.zeros_like(g))
    weights = (alpha * F.relu(g)).sum(dim=dims, keepdim=True)  # [B, K, 1, 1, 1]
    return (weights * a).sum(dim=1)  # [B, T, H, W]


def upsample_maps(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Trilinear upsampling of [B, T', h, w] maps to [B, *size] (size = (T, H, W))."""
    if tuple(maps.shape[1:]) == tuple(size):
        return maps
    out = F.interpolate(maps[:, None].float(), size=tuple(size), mode="trilinear",
                        align_corners=False)
    return out[:, 0]


def normalize_maps(maps: Tensor, norm: Norm = "clip", eps: float = 1e-12) -> Tensor:
    """Min-max normalise [B, T, H, W] maps to [0, 1] per frame or per clip.

    A constant map (e.g. all zero after the ReLU) becomes all zero rather than NaN.
    """
    if norm == "none":
        return maps
    if norm == "frame":
        dims: tuple[int, ...] = (2, 3)
    elif norm == "clip":
        dims = (1, 2, 3)
    else:
        raise ValueError(f"norm must be 'frame', 'clip' or 'none', got {norm!r}")
    lo = maps.amin(dim=dims, keepdim=True)
    hi = maps.amax(dim=dims, keepdim=True)
    span = hi - lo
    return torch.where(span > eps, (maps - lo) / span.clamp_min(eps), torch.zeros_like(maps))


class GradCAMPlusPlus:
    """Grad-CAM++ on named layers of any module; use as a context manager.

    >>> with GradCAMPlusPlus(model, ["backbone.model_rgb.Mixed_5c",
    ...                              "backbone.model_flow.Mixed_5c"]) as cam:
    ...     res = cam(lambda: model(rgb, flow), size=rgb.shape[2:], norm="frame")

    Hooks are registered on entry and removed on exit. Each hooked layer must run once
    per forward call; its map is summed over layers before the ReLU.
    """

    def __init__(self, model: nn.Module, layers: str | Sequence[str]):
        self.model = model
        self.layer_names = [layers] if isinstance(layers, str) else list(layers)
        if not self.layer_names:
            raise ValueError("at least one layer name is needed")
        modules = dict(model.named_modules())
        missing = [n for n in self.layer_names if n not in modules]
        if missing:
            raise KeyError(f"no module named {missing} in {type(model).__name__}")
        self._modules = [modules[n] for n in self.layer_names]
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._acts: dict[str, list[Tensor]] = {}

    def __enter__(self) -> GradCAMPlusPlus:
        self._handles = [m.register_forward_hook(self._hook(n))
                         for n, m in zip(self.layer_names, self._modules, strict=True)]
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the hooks (also done on exiting the context)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._acts = {}

    def _hook(self, name: str) -> Callable[[nn.Module, Any, Tensor], Tensor | None]:
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> Tensor | None:
            if not isinstance(output, Tensor):
                raise TypeError(f"layer {name} returned {type(output).__name__}, not a tensor")
            if not torch.is_grad_enabled():
                return None
            replaced = None
            if not output.requires_grad:
                # Frozen weights and a plain input leave the layer out of the graph; a
                # leaf that requires grad puts it back (only the part after it matters).
                replaced = output.detach().requires_grad_(True)
                output = replaced
            self._acts.setdefault(name, []).append(output)
            return replaced

        return hook

    def __call__(
        self,
        forward: Callable[[], Any],
        target: int | Sequence[int] | Tensor | None = None,
        size: Sequence[int] | None = None,
        norm: Norm = "clip",
    ) -> CamResult:
        """Run `forward()` (returns logits [B, C] or an object with `.logits`) and explain it.

        target: class per sample (an int for all, a sequence/tensor of B), or None for
        the predicted class. size: (T, H, W) to upsample the map to (trilinear), or None.
        norm: min-max normalisation per "frame", per "clip", or "none".
        """
        if not self._handles:
            raise RuntimeError("use GradCAMPlusPlus as a context manager (with ... as cam:)")
        self._acts = {}
        with torch.enable_grad():
            output = forward()
            logits = _logits_of(output)  # [B, C]
            if not logits.requires_grad:
                raise RuntimeError("the logits do not depend on the hooked layers")
            b = logits.shape[0]
            if target is None:
                tgt = logits.detach().argmax(dim=1)
            elif isinstance(target, int):
                tgt = torch.full((b,), target, dtype=torch.long)
            else:
                tgt = torch.as_tensor(target, dtype=torch.long).reshape(-1).expand(b)
            tgt = tgt.to(logits.device)
            acts = []
            for name in self.layer_names:
                calls = self._acts.get(name, [])
                if len(calls) != 1:
                    raise RuntimeError(f"layer {name} ran {len(calls)} times in one forward; "
                                       "Grad-CAM++ needs exactly one")
                acts.append(calls[0])
            # Scores of different samples are independent, so one backward of their
            # sum gives every sample its own gradient.
            score = logits.gather(1, tgt[:, None]).sum()
            grads = torch.autograd.grad(score, acts, allow_unused=True)
        maps = None
        for act, grad in zip(acts, grads, strict=True):
            if grad is None:
                grad = torch.zeros_like(act)
            m = cam_from_activations(act, grad)  # [B, T', h, w]
            maps = m if maps is None else maps + m
        raw = F.relu(maps)
        cam = upsample_maps(raw, size) if size is not None else raw
        cam = normalize_maps(cam, norm)
        self._acts = {}
        return CamResult(cam=cam.detach(), raw=raw.detach(), logits=logits.detach(),
                         target=tgt.detach(), output=output)


def grad_cam_plus_plus(
    model: nn.Module,
    layers: str | Sequence[str],
    forward: Callable[[], Any],
    target: int | Sequence[int] | Tensor | None = None,
    size: Sequence[int] | None = None,
    norm: Norm = "clip",
) -> CamResult:
    """One-shot Grad-CAM++: hook `layers` of `model`, run `forward()`, remove the hooks."""
    with GradCAMPlusPlus(model, layers) as cam:
        return cam(forward, target=target, size=size, norm=norm)

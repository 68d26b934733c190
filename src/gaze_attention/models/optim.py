"""Optimizer parameter groups for fine-tuning: layer-wise learning-rate decay (VideoMAE recipe).

VideoMAE fine-tunes with AdamW whose learning rate shrinks by `layer_decay` per block from the
top: block i of L gets lr x layer_decay^(L - i), the embeddings layer_decay^(L + 1), and the
heads (final norm, gaze head, attention head) the full lr. Biases, norms, position tables and
the class token get no weight decay. A backbone without blocks (the I3D) gives one group of
everything at the full lr with weight decay, as `torch.optim.SGD(model.parameters())` does.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gaze_attention.models.vit import vit_layer_count

NO_DECAY_NAMES = ("pos_embed", "time_embed", "cls_token", "q_bias", "v_bias")


def layer_id(name: str, depth: int) -> int:
    """0 for the embeddings, i + 1 for block i, depth + 1 for everything after the blocks."""
    if name.startswith("backbone."):
        rest = name[len("backbone.") :]
        if rest.startswith(("patch_embed.", "pos_embed", "cls_token", "time_embed")):
            return 0
        if rest.startswith("blocks."):
            return int(rest.split(".")[1]) + 1
    return depth + 1


def param_groups(
    model: nn.Module, base_lr: float, weight_decay: float, layer_decay: float = 1.0
) -> list[dict[str, Any]]:
    """Parameter groups for `torch.optim.AdamW(groups)`: each has `params`, `lr` (base_lr x
    `lr_scale`), `lr_scale` (for a scheduler to multiply its lr by) and `weight_decay`."""
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    backbone = getattr(model, "backbone", None)
    depth = vit_layer_count(backbone) if backbone is not None else 0
    if depth == 0:
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params, "lr": base_lr, "lr_scale": 1.0, "weight_decay": weight_decay}]
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid = layer_id(name, depth)
        decay = p.dim() > 1 and not name.endswith(NO_DECAY_NAMES)
        scale = layer_decay ** (depth + 1 - lid)
        group = groups.setdefault(
            (lid, decay),
            {"params": [], "lr": base_lr * scale, "lr_scale": scale, "weight_decay": weight_decay if decay else 0.0},
        )
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]


__all__ = ["layer_id", "param_groups"]

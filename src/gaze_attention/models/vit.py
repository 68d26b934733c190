"""Video transformer backbones: VideoMAE (joint space-time) and TimeSformer (divided).

VideoMAE (Tong et al., NeurIPS 2022): Conv3d tubelet embedding, a fixed sinusoidal position
table, pre-norm blocks with joint attention over all T/t x H/p x W/p tokens, q and v biases
but no k bias. TimeSformer (Bertasius et al., ICML 2021): Conv2d patch embedding per frame, a
class token, learned space and time embeddings, and blocks that attend over time (then a
`temporal_fc`), then over space per frame (with the class token), then an MLP.

Module names follow the timm-style layout of the original releases (`patch_embed.proj`,
`blocks.N.attn.qkv`, `q_bias`, `norm1`, `mlp.fc1`, ...); `models/vit_weights.py` maps the
Hugging Face names onto them. Both give the gaze head the tokens after block `gaze_block` and
the attention head the final tokens, as `[B, C, T', H', W']` average-pooled to `grid`.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from gaze_attention.models.backbone import Backbone

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
KINETICS_MEAN = [0.45, 0.45, 0.45]  # TimeSformer's preprocessor
KINETICS_STD = [0.225, 0.225, 0.225]

# Shared keys of both layouts (ViT-B/16 defaults). `grid`: [slices, side] of the gaze grid, the
# token grid average-pooled by whole factors; null keeps the token grid. `gaze_block`: the gaze
# head reads the tokens after this many blocks; null: round(2/3 of depth).
VIT_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768,
    "depth": 12,
    "heads": 12,
    "intermediate_size": 3072,
    "patch_size": 16,
    "qkv_bias": True,
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu",
    "drop_path": 0.0,
    "attn_drop": 0.0,
    "grad_checkpointing": False,
    "gaze_block": None,
    "grid": None,
}

ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
}

VIT_SIZES: dict[str, dict[str, int]] = {
    "ViT-S": {"hidden_size": 384, "depth": 12, "heads": 6, "intermediate_size": 1536},
    "ViT-B": {"hidden_size": 768, "depth": 12, "heads": 12, "intermediate_size": 3072},
    "ViT-L": {"hidden_size": 1024, "depth": 24, "heads": 16, "intermediate_size": 4096},
}


def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """Fixed position table [positions, dim]: sin at even, cos at odd channels (VideoMAE)."""
    pos = torch.arange(positions, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)  # [P, D]
    table = torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a sample's residual branch with probability p (rescaled)."""
    if p == 0.0 or not training:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(1 - p)
    return x * keep / (1 - p)


class Attention(nn.Module):
    """Multi-head self-attention through `scaled_dot_product_attention`.

    `split_bias`: VideoMAE's q and v biases with no k bias (`q_bias`, `v_bias`); otherwise one
    `qkv` bias (TimeSformer) or none.
    """

    def __init__(self, dim: int, heads: int, *, qkv_bias: bool, split_bias: bool, attn_drop: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden_size {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias and not split_bias)
        if qkv_bias and split_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape  # [B, N, C]
        bias = self.qkv.bias
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).view(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, h, N, d] each
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {act!r} is not supported; expected one of {', '.join(ACTIVATIONS)}")
        self.fc1 = nn.Linear(dim, hidden)
        self.act = ACTIVATIONS[act]()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class JointBlock(nn.Module):
    """Pre-norm block with joint space-time attention (VideoMAE)."""

    def __init__(self, cfg: dict[str, Any], drop: float) -> None:
        super().__init__()
        dim, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.drop = drop
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, cfg["heads"], qkv_bias=cfg["qkv_bias"], split_bias=True, attn_drop=cfg["attn_drop"])
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, cfg["intermediate_size"], cfg["hidden_act"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x)), self.drop, self.training)  # [B, N, C]
        return x + drop_path(self.mlp(self.norm2(x)), self.drop, self.training)


class DividedBlock(nn.Module):
    """TimeSformer block: temporal attention + `temporal_fc`, spatial attention with the class
    token repeated per frame (its updates averaged over frames), then the MLP."""

    def __init__(self, cfg: dict[str, Any], drop: float) -> None:
        super().__init__()
        dim, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.drop = drop
        kw = {"qkv_bias": cfg["qkv_bias"], "split_bias": False, "attn_drop": cfg["attn_drop"]}
        self.temporal_norm1 = nn.LayerNorm(dim, eps=eps)
        self.temporal_attn = Attention(dim, cfg["heads"], **kw)
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, cfg["heads"], **kw)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, cfg["intermediate_size"], cfg["hidden_act"])

    def forward(self, cls: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, t, c = x.shape  # x: [B, N, T, C] patch tokens; cls: [B, 1, C]
        rt = self.temporal_attn(self.temporal_norm1(x.reshape(b * n, t, c))).view(b, n, t, c)
        x = x + self.temporal_fc(drop_path(rt, self.drop, self.training))
        xs = x.transpose(1, 2).reshape(b * t, n, c)  # [B*T, N, C]: one frame per row
        s = torch.cat([cls.expand(b, t, c).reshape(b * t, 1, c), xs], 1)
        s = drop_path(self.attn(self.norm1(s)).view(b, t, n + 1, c), self.drop, self.training)
        cls = cls + s[:, :, 0].mean(1, keepdim=True)
        x = x + s[:, :, 1:].transpose(1, 2)
        h = torch.cat([cls, x.reshape(b, n * t, c)], 1)  # [B, 1 + N*T, C]
        h = h + drop_path(self.mlp(self.norm2(h)), self.drop, self.training)
        return h[:, :1], h[:, 1:].view(b, n, t, c)


class _VideoViT(Backbone):
    """What both layouts share: config, normalisation, blocks, checkpointing, grid pooling."""

    def __init__(self, config: dict[str, Any], *, frames: int, crop: int) -> None:
        super().__init__()
        cfg = self.resolve(config)
        self.config = cfg
        self.frames, self.crop = frames, crop
        problem = self.clip_problem(cfg, frames, crop, crop)
        if problem:
            raise ValueError(f"{self.kind} backbone for {frames} frames of {crop}x{crop}: {problem}")
        self.token_grid = self.tokens_for(cfg, frames, crop, crop)
        self.pool = tuple(a // b for a, b in zip(self.token_grid, self.grid_for(cfg, frames, crop, crop)))
        depth = cfg["depth"]
        self.gaze_block = self.gaze_block_of(cfg)
        self.grad_checkpointing = bool(cfg["grad_checkpointing"])
        self.gaze_channels = self.out_channels = cfg["hidden_size"]
        # [-1, 1] -> (x01 - mean) / std as one affine map; not in the state dict (config holds it).
        mean, std = torch.tensor(cfg["mean"]), torch.tensor(cfg["std"])
        self.register_buffer("in_scale", (0.5 / std).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("in_shift", ((0.5 - mean) / std).view(1, 3, 1, 1, 1), persistent=False)
        # Stochastic depth rises linearly over the blocks, 0 at the first.
        self.drop_rates = [cfg["drop_path"] * i / max(depth - 1, 1) for i in range(depth)]
        # Grad-CAM target: the last block's tokens as a [B, C, T', H', W'] map, at token resolution.
        self.token_map = nn.Identity()

    @classmethod
    def gaze_block_of(cls, cfg: dict[str, Any]) -> int:
        depth = cfg["depth"]
        block = cfg["gaze_block"] if cfg["gaze_block"] is not None else max(1, round(2 * depth / 3))
        if not 1 <= block <= depth:
            raise ValueError(f"gaze_block must be in 1..depth ({depth}), got {block}")
        return block

    @classmethod
    @abstractmethod
    def tokens_for(cls, cfg: dict[str, Any], frames: int, height: int, width: int) -> tuple[int, int, int]:
        """[T', H', W'] of the token grid for a clip of this size."""

    @classmethod
    def grid_for(cls, config: dict[str, Any], frames: int, height: int, width: int) -> tuple[int, int, int]:
        cfg = cls.resolve(config)
        t, h, w = cls.tokens_for(cfg, frames, height, width)
        if cfg["grid"] is None:
            return t, h, w
        slices, side = cfg["grid"]
        return slices, side, side

    @classmethod
    def clip_problem(cls, config: dict[str, Any], frames: int, height: int, width: int) -> str | None:
        cfg = cls.resolve(config)
        p = cfg["patch_size"]
        if height % p or width % p:
            return f"the crop must be a multiple of the patch size {p}"
        step = cfg.get("tubelet_size", 1)
        if frames % step:
            return f"the frame count must be a multiple of the tubelet size {step}"
        if cfg["grid"] is not None:
            t, h, w = cls.tokens_for(cfg, frames, height, width)
            slices, side = cfg["grid"]
            if slices < 1 or side < 1 or t % slices or h % side or w % side:
                return (
                    f"the token grid [T', H', W'] = {[t, h, w]} does not pool to grid {[slices, side, side]} "
                    "by whole factors"
                )
        return None

    @classmethod
    def grid_rule(cls, config: dict[str, Any]) -> str:
        cfg = cls.resolve(config)
        rule = f"tokens T' = T/{cfg.get('tubelet_size', 1)}, S = H/{cfg['patch_size']}"
        return rule + (f", pooled to grid {cfg['grid']}" if cfg["grid"] is not None else "")

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        return rgb * self.in_scale.to(rgb.dtype) + self.in_shift.to(rgb.dtype)

    def _run(self, block: nn.Module, *args: torch.Tensor) -> Any:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == (1, 1, 1):
            return x
        return F.avg_pool3d(x, self.pool, self.pool)  # [B, C, T'', S, S]

    @abstractmethod
    def tokens(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised pixels [B, 3, T, H, W] -> (tokens after gaze_block, final tokens after the
        last norm), both [B, C, T', H', W'] at token resolution; the final ones equal
        `last_hidden_state` of the Hugging Face model (class token dropped)."""

    def forward_features(
        self, rgb: torch.Tensor, flow: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if flow is not None:
            raise ValueError(f"the {self.kind} backbone is RGB-only: pass flow=None")
        gaze_tokens, last = self.tokens(self.normalize(rgb))
        return self._pool(gaze_tokens), self._pool(self.token_map(last))

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Conv2d | nn.Conv3d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


class VideoMAE(_VideoViT):
    """VideoMAE ViT: tubelet embedding, sinusoidal positions, joint attention.

    `use_mean_pooling` (as in the released configs): true means the encoder ends without a
    final LayerNorm (VideoMAE's classifier normalised after pooling instead).
    """

    kind = "videomae"
    defaults: ClassVar[dict[str, Any]] = {
        **VIT_DEFAULTS,
        "tubelet_size": 2,
        "use_mean_pooling": True,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
    }

    def __init__(self, config: dict[str, Any], *, frames: int, crop: int) -> None:
        super().__init__(config, frames=frames, crop=crop)
        cfg = self.config
        dim, p, tub = cfg["hidden_size"], cfg["patch_size"], cfg["tubelet_size"]
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(3, dim, (tub, p, p), (tub, p, p))
        t, h, w = self.token_grid
        # Fixed, so regenerated for any clip size rather than stored.
        self.register_buffer("pos_embed", sinusoid_table(t * h * w, dim)[None], persistent=False)
        self.blocks = nn.ModuleList(JointBlock(cfg, d) for d in self.drop_rates)
        self.norm = None if cfg["use_mean_pooling"] else nn.LayerNorm(dim, eps=cfg["layer_norm_eps"])
        self._init_weights()

    @classmethod
    def tokens_for(cls, cfg: dict[str, Any], frames: int, height: int, width: int) -> tuple[int, int, int]:
        p = cfg["patch_size"]
        return frames // cfg["tubelet_size"], height // p, width // p

    def tokens(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.patch_embed.proj(pixels)  # [B, C, T', H', W']
        b, c, t, h, w = x.shape
        x = x.flatten(2).transpose(1, 2) + self.pos_embed.to(x.dtype)  # [B, N, C], N = T'H'W'
        gaze = x
        for i, block in enumerate(self.blocks):
            x = self._run(block, x)
            if i + 1 == self.gaze_block:
                gaze = x
        if self.norm is not None:
            x = self.norm(x)

        def as_map(tok: torch.Tensor) -> torch.Tensor:
            return tok.transpose(1, 2).reshape(b, c, t, h, w)

        return as_map(gaze), as_map(x)


class TimeSformer(_VideoViT):
    """TimeSformer (divided space-time attention), as Hugging Face `TimesformerModel`."""

    kind = "timesformer"
    defaults: ClassVar[dict[str, Any]] = {**VIT_DEFAULTS, "mean": KINETICS_MEAN, "std": KINETICS_STD}

    def __init__(self, config: dict[str, Any], *, frames: int, crop: int) -> None:
        super().__init__(config, frames=frames, crop=crop)
        cfg = self.config
        dim, p = cfg["hidden_size"], cfg["patch_size"]
        t, h, w = self.token_grid
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, p, p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + h * w, dim))
        self.time_embed = nn.Parameter(torch.zeros(1, t, dim))
        self.blocks = nn.ModuleList(DividedBlock(cfg, d) for d in self.drop_rates)
        self.norm = nn.LayerNorm(dim, eps=cfg["layer_norm_eps"])
        self._init_weights()
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    @classmethod
    def tokens_for(cls, cfg: dict[str, Any], frames: int, height: int, width: int) -> tuple[int, int, int]:
        p = cfg["patch_size"]
        return frames, height // p, width // p

    def tokens(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, t = pixels.shape[:3]
        frames = pixels.transpose(1, 2).flatten(0, 1)  # [B*T, 3, H, W]
        x = self.patch_embed.proj(frames)  # [B*T, C, H', W']
        c, h, w = x.shape[1:]
        pos = self.pos_embed.to(x.dtype)
        x = x.flatten(2).transpose(1, 2) + pos[:, 1:]  # [B*T, N, C]
        x = x.view(b, t, h * w, c).transpose(1, 2) + self.time_embed.to(x.dtype)  # [B, N, T, C]
        cls = (self.cls_token + self.pos_embed[:, :1]).to(x.dtype).expand(b, 1, c)
        gaze = x
        for i, block in enumerate(self.blocks):
            cls, x = self._run(block, cls, x)
            if i + 1 == self.gaze_block:
                gaze = x
        x = self.norm(x)

        def as_map(tok: torch.Tensor) -> torch.Tensor:
            return tok.permute(0, 3, 2, 1).reshape(b, c, t, h, w)  # [B, N, T, C] -> [B, C, T, H', W']

        return as_map(gaze), as_map(x)


def vit_layer_count(backbone: nn.Module) -> int:
    """Blocks of a ViT backbone (0 for others), for layer-wise learning-rate decay."""
    return len(backbone.blocks) if isinstance(backbone, _VideoViT) else 0


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "VIT_SIZES",
    "Attention",
    "DividedBlock",
    "JointBlock",
    "TimeSformer",
    "VideoMAE",
    "sinusoid_table",
    "vit_layer_count",
]

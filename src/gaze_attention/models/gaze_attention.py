"""The gaze-integrated attention network.

Min & Corso, "Integrating Human Gaze into Attention for Egocentric Activity Recognition",
WACV 2021. A backbone (the paper's two-stream I3D, or a video transformer) gives the gaze
head's input and the features, both [B, C, T', S, S]; a gaze head predicts per-slice logits
over the S x S grid; a gaze sample z drives a soft attention map sigmoid(FC(z)) over the
features; the attended and the plain pooled features are summed and classified.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from gaze_attention.estimators import GAZE_MODES, gaze_sample
from gaze_attention.models.backbone import Backbone, TwoStreamI3D
from gaze_attention.models.batchnorm import bn_relu
from gaze_attention.models.i3d import BN_EPS, BN_MOMENTUM, INCEPTION_CHANNELS, InceptionModule, scaled
from gaze_attention.models.registry import backbone_class


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network (stored in every checkpoint)."""

    num_classes: int = 106
    frames: int = 24
    crop: int = 224
    width: float = 1.0
    use_flow: bool = True
    dropout: float = 0.7
    bn_momentum: float = BN_MOMENTUM
    # "i3d" (width, use_flow apply) | "videomae" | "timesformer" (RGB only); backbone_config
    # holds that backbone's own keys (models/vit.py: sizes, patch, drop_path, grid, mean/std).
    # The defaults are the I3D of checkpoints written before backbones had names.
    backbone: str = "i3d"
    backbone_config: dict[str, Any] = field(default_factory=dict)

    @property
    def grid(self) -> tuple[int, int]:
        """(T', S): temporal slices and grid side the backbone produces for this input."""
        t, s, _ = backbone_class(self.backbone).grid_for(self.backbone_config, self.frames, self.crop, self.crop)
        return t, s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        d = dict(d)
        if "backbone_config" in d:
            d["backbone_config"] = copy.deepcopy(dict(d["backbone_config"] or {}))
        return cls(**d)


PRESETS: dict[str, ModelConfig] = {
    # The paper: 24 frames at 224x224, full-width two-stream I3D, 106 EGTEA actions.
    "paper": ModelConfig(),
    # CPU scale: 24 frames at 112x112 (T' = 3, S = 4, as the paper's T' = 3), an eighth of
    # the channels: 29 GFLOP for a training step of 8 clips against the paper's 454 per clip.
    # BatchNorm statistics follow faster (momentum 0.1): short runs never settle them at 0.01.
    "tiny": ModelConfig(frames=24, crop=112, width=0.125, dropout=0.5, bn_momentum=0.1),
    # VideoMAE ViT-B/16 (MCG-NJU/videomae-base*), 16 frames at 224: 8 x 14 x 14 tokens, the gaze
    # grid pooled to 8 slices of 7 x 7 (the paper's 7 x 7 cells); gaze head after block 8 of 12.
    "vit-b": ModelConfig(
        frames=16, crop=224, use_flow=False, dropout=0.5, backbone="videomae",
        backbone_config={"grid": [8, 7], "gaze_block": 8, "drop_path": 0.1},
    ),
    # TimeSformer-B (facebook/timesformer-base-finetuned-k400), 8 frames at 224: 8 x 14 x 14.
    "timesformer-b": ModelConfig(
        frames=8, crop=224, use_flow=False, dropout=0.5, backbone="timesformer",
        backbone_config={"grid": [8, 7], "gaze_block": 8, "drop_path": 0.1},
    ),
    # CPU scale, trained from scratch: 16 frames at 112, tubelets 2 x 16 x 16 -> 8 x 7 x 7 = 392
    # tokens (the gaze grid itself), width 192, 4 blocks of 3 heads; gaze head after block 3.
    "vit-tiny": ModelConfig(
        frames=16, crop=112, use_flow=False, dropout=0.5, backbone="videomae",
        backbone_config={
            "hidden_size": 192, "depth": 4, "heads": 3, "intermediate_size": 768, "gaze_block": 3,
            "use_mean_pooling": False,
        },
    ),
}


class GazeAttentionOutput(NamedTuple):
    logits: torch.Tensor  # [B, C]
    gaze_logits: torch.Tensor | None  # [B, T', S, S]  pi (None in gaze mode "none")
    perturbed: torch.Tensor | None  # [B, T', S, S]  pi + Gumbel noise, when noise was drawn
    z: torch.Tensor  # [B, T', S, S]  the gaze map the head used
    features: torch.Tensor  # [B, C_f, T', S, S]  x5
    attention: torch.Tensor  # [B, T', S, S]  sigmoid(a)


class GazeHead(nn.Module):
    """Per-slice gaze logits over the grid from x4: Mixed_5b, Mixed_5c, then three convs."""

    def __init__(self, in_channels: int, *, width: float = 1.0) -> None:
        super().__init__()
        self.Mixed_5b = InceptionModule(
            in_channels, tuple(scaled(c, width) for c in INCEPTION_CHANNELS["Mixed_5b"])
        )
        self.Mixed_5c = InceptionModule(
            self.Mixed_5b.out_channels, tuple(scaled(c, width) for c in INCEPTION_CHANNELS["Mixed_5c"])
        )
        c256, c64 = scaled(256, width), scaled(64, width)
        self.g1 = nn.Conv3d(self.Mixed_5c.out_channels, c256, (1, 3, 3), padding=(0, 1, 1))
        self.b1 = nn.BatchNorm3d(c256, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.g2 = nn.Conv3d(c256, c64, (1, 3, 3), padding=(0, 1, 1))
        self.b2 = nn.BatchNorm3d(c64, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.g3 = nn.Conv3d(c64, 1, 1)

    def forward(self, x4: torch.Tensor) -> torch.Tensor:
        x = self.Mixed_5c(self.Mixed_5b(x4))
        x = bn_relu(self.g1(x), self.b1)
        x = bn_relu(self.g2(x), self.b2)
        return self.g3(x).squeeze(1)  # [B, T', S, S]


class TokenGazeHead(nn.Module):
    """Per-slice gaze logits from a transformer's token map [B, C, T', S, S]: LayerNorm over
    channels, a 1x3x3 conv to C/4 channels, GELU, a 1x1x1 conv to one logit per cell."""

    def __init__(self, in_channels: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        hidden = max(8, in_channels // 4)
        self.norm = nn.LayerNorm(in_channels, eps=eps)
        self.g1 = nn.Conv3d(in_channels, hidden, (1, 3, 3), padding=(0, 1, 1))
        self.g2 = nn.Conv3d(hidden, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x.movedim(1, -1)).movedim(-1, 1)  # [B, C, T', S, S]
        return self.g2(F.gelu(self.g1(x))).squeeze(1)  # [B, T', S, S]


class AttentionHead(nn.Module):
    """Gaze-driven attention over x5 and the action classifier.

    a = FC(flatten(z)); f = mean(x5 * sigmoid(a)) + mean(x5); logits = conv1x1(dropout(f)).
    """

    def __init__(
        self, *, features: int, num_classes: int, grid: tuple[int, int], dropout: float = 0.7
    ) -> None:
        super().__init__()
        self.grid = grid
        n = grid[0] * grid[1] * grid[1]
        self.fc = nn.Linear(n, n)
        self.fc_f = nn.Conv3d(features, num_classes, 1)
        self.dropout = nn.Dropout(dropout)

    def attention_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z.flatten(1)).view_as(z)  # [B, T', S, S]

    def attention_map(self, z: torch.Tensor) -> torch.Tensor:
        """sigmoid(a): [B, T', S, S]."""
        return torch.sigmoid(self.attention_logits(z))

    def pooled(self, z: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Attended plus residual average-pooled features [B, C_f]."""
        return self.pool_attended(self.attention_map(z), features)

    @staticmethod
    def pool_attended(attention: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """mean(x5 * attention) + mean(x5): [B, T', S, S], [B, C_f, T', S, S] -> [B, C_f]."""
        x = features.flatten(2)  # [B, C_f, N]
        att = attention.flatten(1).to(x.dtype)  # [B, N]
        return (x @ att.unsqueeze(-1)).squeeze(-1) / x.shape[-1] + x.mean(-1)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        f = self.dropout(pooled)
        return F.linear(f, self.fc_f.weight.flatten(1), self.fc_f.bias)  # [B, C]

    def forward(self, z: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pooled(z, features))

    def candidate_logits(self, z: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Head logits (no dropout) with slice t of z set to one_hot(k), others unchanged.

        Closed form: replacing slice t moves a by one column-block difference of the FC
        weight, and the classifier is linear, so it is folded into x5 first. Returns
        [B, T', K, C]. Works for any z (one-hot or soft), any batch, in float32.
        """
        t_slices, side = z.shape[1], z.shape[-1]
        k = side * side
        with torch.autocast(device_type=features.device.type, enabled=False):
            x = features.float().flatten(2)  # [B, C_f, N]
            n = x.shape[-1]
            w_cls = self.fc_f.weight.float().flatten(1)  # [C, C_f]
            # [B, C, N]: class scores of every position. One GEMM per sample reads x in place;
            # a broadcast matmul would first copy x transposed (slower on CPU at B >= 2).
            p = torch.stack([w_cls @ x_b for x_b in x])
            base = p.mean(-1) + self.fc_f.bias.float()  # [B, C]: residual term + bias
            w = self.fc.weight.float()  # [N_out, N_in]
            zf = z.float().flatten(1)  # [B, N]
            a = F.linear(zf, w, self.fc.bias.float())  # [B, N]
            w_blocks = w.t().reshape(t_slices, k, n)  # [T', K, N]: column of cell (t, k)
            # Contribution of slice t's current z to a, to be swapped for column (t, k).
            current = torch.einsum("btk,tkn->btn", zf.view(-1, t_slices, k), w_blocks)  # [B, T', N]
            cand = a[:, None, None, :] - current[:, :, None, :] + w_blocks[None]  # [B, T', K, N]
            att = torch.sigmoid(cand).reshape(-1, t_slices * k, n)  # [B, T'K, N]
            # base + att @ p^T / n in one batched kernel.
            logits = torch.baddbmm(base[:, None, :], att, p.transpose(1, 2), alpha=1.0 / n)
        return logits.view(-1, t_slices, k, logits.shape[-1])  # [B, T', K, C]

    def candidate_losses(self, z: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the head with slice t set to cell k: [B, T', S*S].

        Dropout does not apply and the module's train/eval mode is left untouched.
        """
        logits = self.candidate_logits(z, features)  # [B, T', K, C]
        target = logits.gather(-1, labels.view(-1, 1, 1, 1).expand(*logits.shape[:3], 1))
        return torch.logsumexp(logits, -1) - target.squeeze(-1)


def _with_overrides(config: ModelConfig, overrides: dict[str, Any]) -> ModelConfig:
    """`replace`, except that a `backbone_config` override adds to the preset's keys (a new
    `backbone` name starts from that backbone's defaults)."""
    overrides = dict(overrides)
    if "backbone_config" in overrides:
        same = overrides.get("backbone", config.backbone) == config.backbone
        base = config.backbone_config if same else {}
        overrides["backbone_config"] = {**copy.deepcopy(base), **dict(overrides["backbone_config"] or {})}
    elif overrides.get("backbone", config.backbone) != config.backbone:
        overrides["backbone_config"] = {}
    return replace(config, **overrides)


def build_backbone(cfg: ModelConfig) -> Backbone:
    """The backbone a ModelConfig names, with its config."""
    cls = backbone_class(cfg.backbone)
    if cls is TwoStreamI3D:
        keys = TwoStreamI3D.resolve(cfg.backbone_config)
        return TwoStreamI3D(width=cfg.width, use_flow=cfg.use_flow, **keys)
    if cfg.use_flow:
        raise ValueError(f"the {cfg.backbone} backbone is RGB-only: set use_flow: false")
    return cls(cfg.backbone_config, frames=cfg.frames, crop=cfg.crop)


class GazeAttentionNet(nn.Module):
    """Backbone + gaze head + gaze-driven attention head."""

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        """Built from its config (stored in checkpoints); keyword `overrides` replace single
        fields of it, e.g. `GazeAttentionNet(PRESETS["tiny"], num_classes=3)`."""
        super().__init__()
        cfg = _with_overrides(config or ModelConfig(), overrides)
        if cfg.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {cfg.num_classes}")
        if cfg.frames < 1 or cfg.crop < 1:
            raise ValueError(f"frames and crop must be positive, got {cfg.frames} and {cfg.crop}")
        self.config = cfg
        self.backbone = build_backbone(cfg)
        if isinstance(self.backbone, TwoStreamI3D):
            self.gaze: nn.Module = GazeHead(self.backbone.pool5_channels, width=cfg.width)
        else:
            self.gaze = TokenGazeHead(self.backbone.gaze_channels)
        self.head = AttentionHead(
            features=self.backbone.out_channels,
            num_classes=cfg.num_classes,
            grid=cfg.grid,
            dropout=cfg.dropout,
        )
        if cfg.bn_momentum != BN_MOMENTUM:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = cfg.bn_momentum

    @property
    def grid(self) -> tuple[int, int]:
        """(T', S)."""
        return self.config.grid

    def _check_inputs(self, rgb: torch.Tensor, flow: torch.Tensor | None) -> None:
        cfg = self.config
        if rgb.dim() != 5 or rgb.shape[1] != 3:
            raise ValueError(f"rgb must be [B, 3, T, H, W] (3 colour channels), got {tuple(rgb.shape)}")
        if cfg.use_flow:
            if flow is None:
                raise ValueError("this model has a flow stream: pass flow [B, 2, T, H, W]")
            if flow.dim() != 5 or flow.shape[1] != 2:
                raise ValueError(f"flow must be [B, 2, T, H, W] (u and v), got {tuple(flow.shape)}")
            if flow.shape[0] != rgb.shape[0] or flow.shape[2:] != rgb.shape[2:]:
                raise ValueError(
                    f"rgb {tuple(rgb.shape)} and flow {tuple(flow.shape)} differ in batch or size"
                )
        elif flow is not None:
            raise ValueError("this model is RGB-only (use_flow=False): pass flow=None")
        kind = backbone_class(cfg.backbone)
        size = tuple(rgb.shape[2:])
        problem = kind.clip_problem(cfg.backbone_config, *size)
        got = None if problem else kind.grid_for(cfg.backbone_config, *size)
        want = (cfg.grid[0], cfg.grid[1], cfg.grid[1])
        if problem:
            raise ValueError(
                f"input clip [T, H, W] = {list(size)} does not fit this model ({problem}): "
                f"expected {cfg.frames} frames of {cfg.crop}x{cfg.crop}"
            )
        if got != want:
            raise ValueError(
                f"input clip [T, H, W] = {list(size)} gives a {got} grid, but this model's "
                f"attention head is built for {want} ({kind.grid_rule(cfg.backbone_config)}): "
                f"expected {cfg.frames} frames of {cfg.crop}x{cfg.crop}"
            )

    def forward_features(
        self, rgb: torch.Tensor, flow: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(gaze head input, features), both [B, C, T', S, S]: for the I3D the fused endpoints
        x4 [B, 832, T', S, S] and x5 [B, 1024, T', S, S]; for a ViT the pooled tokens after
        `gaze_block` and after the last block. rgb in [-1, 1]: the backbone normalises it."""
        self._check_inputs(rgb, flow)
        return self.backbone.forward_features(rgb, flow)

    def forward(
        self,
        rgb: torch.Tensor,
        flow: torch.Tensor | None = None,
        *,
        gaze_mode: str = "sample",
        tau: float = 1.0,
        generator: torch.Generator | None = None,
        z: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> GazeAttentionOutput:
        """rgb [B, 3, T, H, W] and flow [B, 2, T, H, W] in [-1, 1].

        gaze_mode picks the gaze map the head sees (see `gaze_attention.estimators.GAZE_MODES`);
        "none" gives a uniform map and skips the gaze head. A given z (e.g. recorded
        fixations) overrides the mode. noise: Gumbel noise [B, T', S, S] drawn by the caller
        for gaze mode "sample" in place of the generator's (inference seeds each window on its
        own, so a window's sample does not depend on what else is in the batch).
        """
        if gaze_mode not in GAZE_MODES:
            raise ValueError(f"unknown gaze mode {gaze_mode!r}; expected one of {', '.join(GAZE_MODES)}")
        x4, x5 = self.forward_features(rgb, flow)
        batch = rgb.shape[0]
        t_slices, side = self.grid
        gaze_logits = perturbed = None
        if gaze_mode != "none":
            gaze_logits = self.gaze(x4)  # [B, T', S, S]
        if z is not None:
            if z.shape != (batch, t_slices, side, side):
                raise ValueError(
                    f"z must be [B, T', S, S] = {(batch, t_slices, side, side)}, got {tuple(z.shape)}"
                )
        elif gaze_logits is None:
            z = x5.new_full((batch, t_slices, side, side), 1.0 / (side * side))
        else:
            perturbed, z = gaze_sample(gaze_logits, gaze_mode, tau=tau, generator=generator, noise=noise)
        attention = self.head.attention_map(z.to(x5.dtype))
        return GazeAttentionOutput(
            logits=self.head.classify(self.head.pool_attended(attention, x5)),
            gaze_logits=gaze_logits,
            perturbed=perturbed,
            z=z,
            features=x5,
            attention=attention,
        )


def build_model(
    preset: str | ModelConfig = "paper", *, backbone_weights: str | os.PathLike | None = None, **overrides: Any
) -> GazeAttentionNet:
    """Build a network from a preset name (`PRESETS`) or a ModelConfig, with overrides.

    backbone_weights: published backbone weights, loaded strictly (`load_backbone_weights`):
    for a ViT a Hugging Face folder (its config.json then sets the architecture keys and its
    preprocessor_config.json the mean/std; a warning names what differs from the preset) or a
    `.pth`/`.bin`/`.safetensors` file; for the I3D a two-stream `*_base.pt`.
    """
    if isinstance(preset, ModelConfig):
        cfg = preset
    else:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        cfg = PRESETS[preset]
    if backbone_weights is None:
        return GazeAttentionNet(cfg, **overrides)
    from gaze_attention.models.vit_weights import architecture_overrides, load_backbone_weights

    cfg = _with_overrides(cfg, overrides)
    cfg = _with_overrides(cfg, architecture_overrides(cfg, backbone_weights))
    model = GazeAttentionNet(cfg)
    load_backbone_weights(model, backbone_weights)
    return model

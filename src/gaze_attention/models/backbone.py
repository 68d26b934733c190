"""The backbone interface, and the two-stream I3D as one backbone.

A backbone turns a clip (RGB in [-1, 1], optional flow) into two maps `[B, C, T', H', W']`:
the gaze head's input (an intermediate map) and the attention head's features, on the same
grid. It owns its input normalisation and says, from its config alone, which grid a clip of
a given size gives, so `ModelConfig.grid` needs no network.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from gaze_attention.models.i3d import (
    INCEPTION_CHANNELS,
    SPATIAL_STRIDE,
    TEMPORAL_STRIDE,
    InceptionI3d,
    output_grid,
)


class Backbone(nn.Module, ABC):
    """Base of every backbone; subclasses set the class attributes and implement the methods."""

    kind: ClassVar[str]
    supports_flow: ClassVar[bool] = False
    #: backbone_config keys with their defaults (the ModelConfig dict is checked against them).
    defaults: ClassVar[dict[str, Any]] = {}

    gaze_channels: int
    out_channels: int

    @classmethod
    def resolve(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in; an unknown key is an error naming it."""
        unknown = sorted(set(config) - set(cls.defaults))
        if unknown:
            raise ValueError(
                f"unknown backbone_config keys for the {cls.kind!r} backbone: {', '.join(unknown)} "
                f"(known: {', '.join(sorted(cls.defaults))})"
            )
        return {**cls.defaults, **config}

    @classmethod
    @abstractmethod
    def grid_for(cls, config: dict[str, Any], frames: int, height: int, width: int) -> tuple[int, int, int]:
        """[T', H', W'] of the maps for a clip of this size."""

    @classmethod
    def clip_problem(cls, config: dict[str, Any], frames: int, height: int, width: int) -> str | None:
        """Why a clip of this size cannot go through the backbone (None when it can)."""
        return None

    @classmethod
    @abstractmethod
    def grid_rule(cls, config: dict[str, Any]) -> str:
        """How the grid follows from the clip, for error messages."""

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB in [-1, 1] (the data path's range) -> this backbone's input range."""
        return rgb

    @abstractmethod
    def forward_features(
        self, rgb: torch.Tensor, flow: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(gaze input, features), both [B, C, T', H', W']."""

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_features(rgb, flow)


class TwoStreamI3D(Backbone):
    """RGB (3 ch) and optional flow (2 ch) I3D; endpoints summed across streams.

    Gaze input: `MaxPool3d_5a_2x2` (x4, 832 ch at full width); features: `Mixed_5c` (x5, 1024
    ch). Takes [-1, 1] as is (the Kinetics I3D's range). backbone_config `mixed`: the Inception
    modules each stream builds (default all nine; e.g. the `tiny-finetune` network's five);
    `stem_stride`: the stem convolution's spatial stride, 2 (I3D) or 4 (no `MaxPool3d_2a_3x3`);
    `stem_temporal_kernel`: the stem convolution's temporal size (I3D's 7).
    """

    kind = "i3d"
    supports_flow = True
    defaults: ClassVar[dict[str, Any]] = {
        "mixed": list(INCEPTION_CHANNELS), "stem_stride": 2, "stem_temporal_kernel": 7,
    }  # fmt: skip

    def __init__(
        self,
        *,
        width: float = 1.0,
        use_flow: bool = True,
        mixed: Sequence[str] | None = None,
        stem_stride: int = 2,
        stem_temporal_kernel: int = 7,
    ) -> None:
        super().__init__()
        self.model_rgb = InceptionI3d(3, width, mixed, stem_stride, stem_temporal_kernel)
        self.model_flow = InceptionI3d(2, width, mixed, stem_stride, stem_temporal_kernel) if use_flow else None
        self.pool5_channels = self.model_rgb.pool5_channels
        self.out_channels = self.model_rgb.out_channels
        self.gaze_channels = self.pool5_channels

    @classmethod
    def grid_for(cls, config: dict[str, Any], frames: int, height: int, width: int) -> tuple[int, int, int]:
        return output_grid(frames, height, width)

    @classmethod
    def grid_rule(cls, config: dict[str, Any]) -> str:
        return f"T' = ceil(T/{TEMPORAL_STRIDE}), S = ceil(H/{SPATIAL_STRIDE})"

    def forward_features(
        self, rgb: torch.Tensor, flow: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x4, x5 = self.model_rgb(rgb)  # [B, 832, T', S, S], [B, 1024, T', S, S]
        if self.model_flow is not None:
            f4, f5 = self.model_flow(flow)
            x4, x5 = x4 + f4, x5 + f5
        return x4, x5


__all__ = ["Backbone", "TwoStreamI3D"]

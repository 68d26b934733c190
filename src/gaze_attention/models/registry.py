"""The backbones a `ModelConfig.backbone` name can give (the one registry of them)."""

from __future__ import annotations

from gaze_attention.models.backbone import Backbone, TwoStreamI3D
from gaze_attention.models.vit import TimeSformer, VideoMAE

_CLASSES: dict[str, type[Backbone]] = {c.kind: c for c in (TwoStreamI3D, VideoMAE, TimeSformer)}
BACKBONES = tuple(_CLASSES)  # ("i3d", "videomae", "timesformer")


def backbone_class(kind: str) -> type[Backbone]:
    """The Backbone subclass of a `ModelConfig.backbone` name."""
    if kind not in _CLASSES:
        raise ValueError(f"unknown backbone {kind!r}; expected one of {', '.join(_CLASSES)}")
    return _CLASSES[kind]


__all__ = ["BACKBONES", "backbone_class"]

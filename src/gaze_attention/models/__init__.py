"""Networks of Gaze-Attention: backbones (two-stream I3D, VideoMAE, TimeSformer), gaze head,
attention head, and loading published weights."""

from gaze_attention.models.backbone import Backbone, TwoStreamI3D
from gaze_attention.models.gaze_attention import (
    PRESETS,
    AttentionHead,
    GazeAttentionNet,
    GazeAttentionOutput,
    GazeHead,
    ModelConfig,
    TokenGazeHead,
    build_backbone,
    build_model,
)
from gaze_attention.models.i3d import InceptionI3d, InceptionModule, Unit3D
from gaze_attention.models.optim import param_groups
from gaze_attention.models.reference import (
    CheckpointMismatchError,
    load_reference_checkpoint,
    save_reference_checkpoint,
    to_reference_state_dicts,
)
from gaze_attention.models.registry import BACKBONES, backbone_class
from gaze_attention.models.vit import TimeSformer, VideoMAE
from gaze_attention.models.vit_weights import (
    BackboneWeightsWarning,
    filter_checkpoint,
    hf_backbone_config,
    load_backbone_weights,
    load_initial_weights,
)

__all__ = [
    "BACKBONES",
    "PRESETS",
    "AttentionHead",
    "Backbone",
    "BackboneWeightsWarning",
    "CheckpointMismatchError",
    "GazeAttentionNet",
    "GazeAttentionOutput",
    "GazeHead",
    "InceptionI3d",
    "InceptionModule",
    "ModelConfig",
    "TimeSformer",
    "TokenGazeHead",
    "TwoStreamI3D",
    "Unit3D",
    "VideoMAE",
    "backbone_class",
    "build_backbone",
    "build_model",
    "filter_checkpoint",
    "hf_backbone_config",
    "load_backbone_weights",
    "load_initial_weights",
    "load_reference_checkpoint",
    "param_groups",
    "save_reference_checkpoint",
    "to_reference_state_dicts",
]

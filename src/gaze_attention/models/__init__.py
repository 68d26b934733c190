"""Networks of Gaze-Attention: I3D backbone, gaze head, attention head."""

from gaze_attention.models.gaze_attention import (
    PRESETS,
    AttentionHead,
    GazeAttentionNet,
    GazeAttentionOutput,
    GazeHead,
    ModelConfig,
    TwoStreamI3D,
    build_model,
)
from gaze_attention.models.i3d import InceptionI3d, InceptionModule, Unit3D
from gaze_attention.models.reference import (
    CheckpointMismatchError,
    load_reference_checkpoint,
    save_reference_checkpoint,
    to_reference_state_dicts,
)

__all__ = [
    "PRESETS",
    "AttentionHead",
    "CheckpointMismatchError",
    "GazeAttentionNet",
    "GazeAttentionOutput",
    "GazeHead",
    "InceptionI3d",
    "InceptionModule",
    "ModelConfig",
    "TwoStreamI3D",
    "Unit3D",
    "build_model",
    "load_reference_checkpoint",
    "save_reference_checkpoint",
    "to_reference_state_dicts",
]

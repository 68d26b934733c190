"""Gaze-Attention: egocentric activity recognition with gaze-integrated attention.

Min & Corso, "Integrating Human Gaze into Attention for Egocentric Activity Recognition",
WACV 2021.
"""

__version__ = "0.1.0"

from gaze_attention import estimators, losses  # noqa: E402
from gaze_attention.models import (  # noqa: E402
    PRESETS,
    CheckpointMismatchError,
    GazeAttentionNet,
    GazeAttentionOutput,
    ModelConfig,
    build_model,
    load_reference_checkpoint,
    save_reference_checkpoint,
    to_reference_state_dicts,
)

__all__ = [
    "PRESETS",
    "CheckpointMismatchError",
    "GazeAttentionNet",
    "GazeAttentionOutput",
    "ModelConfig",
    "__version__",
    "build_model",
    "estimators",
    "load_reference_checkpoint",
    "losses",
    "save_reference_checkpoint",
    "to_reference_state_dicts",
]

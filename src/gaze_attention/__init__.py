"""Gaze-Attention: egocentric activity recognition with gaze-integrated attention.

Min & Corso, "Integrating Human Gaze into Attention for Egocentric Activity Recognition",
WACV 2021.

The public names are imported on first use, so that `gaze-attention --help`, the command
line's argument checks and `prepare`'s worker processes do not import torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "PRESETS": "gaze_attention.models",
    "CheckpointMismatchError": "gaze_attention.models",
    "GazeAttentionNet": "gaze_attention.models",
    "GazeAttentionOutput": "gaze_attention.models",
    "ModelConfig": "gaze_attention.models",
    "build_model": "gaze_attention.models",
    "load_reference_checkpoint": "gaze_attention.models",
    "save_reference_checkpoint": "gaze_attention.models",
    "to_reference_state_dicts": "gaze_attention.models",
}
_MODULES = ("estimators", "losses")

__all__ = sorted([*_EXPORTS, *_MODULES, "__version__"])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(f"gaze_attention.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

"""Data: BeGaze and annotation readers, offline preparation, synthetic data, datasets.

Names are imported lazily so that `prepare`'s worker processes do not pay for importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PreparedData": "gaze_attention.data.dataset",
    "ClipDataset": "gaze_attention.data.dataset",
    "ClipRecord": "gaze_attention.data.dataset",
    "seed_worker": "gaze_attention.data.dataset",
    "gaze_targets": "gaze_attention.data.transforms",
    "CropFlip": "gaze_attention.data.transforms",
    "FlowComputer": "gaze_attention.data.flow",
    "read_begaze": "gaze_attention.data.begaze",
    "read_gaze_csv": "gaze_attention.data.begaze",
    "SessionGaze": "gaze_attention.data.begaze",
    "GazeFormatError": "gaze_attention.data.begaze",
    "parse_clip_name": "gaze_attention.data.egtea",
    "read_split": "gaze_attention.data.egtea",
    "read_index": "gaze_attention.data.egtea",
    "AnnotationError": "gaze_attention.data.egtea",
    "PrepareResult": "gaze_attention.data.prepare",
    "make_synthetic_raw": "gaze_attention.data.synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

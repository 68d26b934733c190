"""Engine: training, evaluation and prediction for one process or a torchrun job."""

from gaze_attention.engine.checkpoint import (
    CheckpointError,
    load_model,
    load_reference_model,
    resolve_checkpoint,
)
from gaze_attention.engine.config import TrainConfig, load_config
from gaze_attention.engine.evaluate import evaluate
from gaze_attention.engine.inference import InferenceOptions, WindowPolicy, window_starts
from gaze_attention.engine.metrics import classification_metrics, metrics_from_confusion
from gaze_attention.engine.train import NonFiniteLossError, TrainResult, train

__all__ = [
    "CheckpointError",
    "InferenceOptions",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "WindowPolicy",
    "classification_metrics",
    "evaluate",
    "load_config",
    "load_model",
    "load_reference_model",
    "metrics_from_confusion",
    "resolve_checkpoint",
    "train",
    "window_starts",
]

"""The choice lists of the command line and the engine, in one torch-free place.

Commands import these for argparse `choices` (so `--help` stays fast); the modules that act on
a choice (losses, estimators, flow, config validation) import the same tuples, so a new option
is added here once.
"""

from __future__ import annotations

# Gradient estimators of the gaze distribution during training (`train --estimator`).
ESTIMATORS = ("direct", "gumbel_softmax", "straight_through", "none")

# Gaze map the attention head sees (the model's forward); training uses all of them.
GAZE_MODES = ("sample", "argmax", "expected", "gumbel_softmax", "straight_through", "none")

# Gaze modes that make sense at test time (evaluate, predict, visualize).
EVAL_GAZE_MODES = ("sample", "argmax", "expected", "none")

# Autocast precisions; auto: bf16 where the device runs it faster, else fp32 (engine/precision.py).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# Optical flow of `prepare` ("none": RGB only) and the on-the-fly flow of predict / visualize.
FLOW_METHODS = ("tvl1", "tvl1-torch", "dis", "farneback", "none")
ONLINE_FLOW_METHODS = ("dis", "farneback", "tvl1")

# Optimizers of `optim.optimizer`: the paper's SGD with momentum, or AdamW (beta1 = optim.momentum).
OPTIMIZERS = ("sgd", "adamw")
OPTIMIZER_LABELS = {"sgd": "SGD", "adamw": "AdamW"}  # as reports and docs spell them

# (width, height) of the frames `prepare` writes by default: the paper's 340x256.
PREPARED_SIZE = (340, 256)

# Bundled model presets (gaze_attention.models.PRESETS holds their ModelConfig).
MODEL_PRESETS = ("paper", "tiny", "vit-b", "timesformer-b", "vit-tiny")

__all__ = [
    "ESTIMATORS",
    "EVAL_GAZE_MODES",
    "FLOW_METHODS",
    "GAZE_MODES",
    "MODEL_PRESETS",
    "ONLINE_FLOW_METHODS",
    "OPTIMIZERS",
    "OPTIMIZER_LABELS",
    "PRECISIONS",
    "PREPARED_SIZE",
]

"""One owner of a run's checkpoints: naming (ckpt-N, best-N), keep-last and the best score.

timm's CheckpointSaver keeps the same three duties together; the writing itself (atomic
folders, safetensors, the JSON state) is `engine/checkpoint.py`'s.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from gaze_attention.engine.checkpoint import (
    checkpoint_name,
    clean_partial,
    list_checkpoints,
    prune,
    write_checkpoint,
)
from gaze_attention.engine.train_state import TrainState


class CheckpointSaver:
    """RUN_DIR/checkpoints: the newest `keep_last` ckpt-* and the single best-*.

    Only the process that writes (`enabled`, rank 0) touches the folder; the others still
    know which checkpoints exist once rank 0 has written them (`latest`, `best`).
    """

    def __init__(self, ckpt_dir: Path, keep_last: int, enabled: bool = True) -> None:
        self.dir = Path(ckpt_dir)
        self.keep_last = keep_last
        self.enabled = enabled
        self.best_score = -math.inf

    def clean(self) -> None:
        """Remove hidden leftovers of writes that were killed."""
        if self.enabled:
            clean_partial(self.dir)

    def latest(self) -> Path | None:
        items = list_checkpoints(self.dir, "ckpt")
        return items[-1][1] if items else None

    def best(self) -> Path | None:
        items = list_checkpoints(self.dir, "best")
        return items[-1][1] if items else None

    def save(self, model: nn.Module, state: TrainState, optimizer: torch.optim.Optimizer) -> Path | None:
        """ckpt-<iteration> with the optimizer (for resuming); older ones beyond keep_last go."""
        if not self.enabled:
            return None
        folder = write_checkpoint(
            self.dir / checkpoint_name("ckpt", state.iteration), model, state.to_json(), optimizer
        )
        prune(self.dir, "ckpt", self.keep_last)
        return folder

    def save_if_best(self, model: nn.Module, state: TrainState, score: float) -> Path | None:
        """best-<iteration> when `score` beats every earlier one (the previous best goes)."""
        if not (self.enabled and math.isfinite(score) and score > self.best_score):
            return None
        self.best_score = score
        state.best_score = score
        folder = write_checkpoint(self.dir / checkpoint_name("best", state.iteration), model, state.to_json())
        prune(self.dir, "best", 1)
        return folder

"""The training state of a checkpoint (`state.json`): one schema, written and read here.

Schema 2 adds `inputs`, the geometry of the frames the model was trained on (prepared frame
size, flow method and encoding; frames and crop are in `model_config`), so that predict and
visualize resize a new video as training saw its data on any machine, with or without the
training data. Schema 1 states (no `inputs`, no `schema` key) still read.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from gaze_attention.data.store import FrameGeometry
from gaze_attention.engine.checkpoint import CheckpointError, read_state

SCHEMA = 2  # the checkpoint folder's own format version is checkpoint.VERSION


@dataclass
class TrainState:
    """Where a run is and what rebuilds it: the JSON beside a checkpoint's weights."""

    iteration: int
    config: dict[str, Any]  # the resolved TrainConfig
    model_config: dict[str, Any]  # ModelConfig: rebuilds the network
    class_names: list[str]
    verb_of: list[int] = field(default_factory=list)
    noun_of: list[int] = field(default_factory=list)
    inputs: dict[str, Any] | None = None  # FrameGeometry of the training data (None: schema 1)
    eps: float = math.nan
    lr: float = math.nan
    schedule: dict[str, Any] = field(default_factory=dict)  # lr, milestones (as iterations), gamma, iters
    best_score: float = -math.inf
    world_size: int = 1
    grad_scaler: dict[str, Any] | None = None
    rng: list[dict[str, Any]] = field(default_factory=list)  # every rank's RNG states (ckpt-* only)
    metrics: dict[str, Any] | None = None  # validation summary (best-* only)
    optimizer: dict[str, Any] | None = None  # optimizer hyper-parameters (ckpt-* only; written with it)
    schema: int = SCHEMA

    @property
    def geometry(self) -> FrameGeometry | None:
        return None if self.inputs is None else FrameGeometry.from_dict(self.inputs)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: v for k, v in d.items() if v is not None or k in ("inputs", "grad_scaler")}

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str | os.PathLike = "state.json") -> TrainState:
        names = {f.name for f in fields(cls)}
        missing = [k for k in ("iteration", "config", "model_config", "class_names") if k not in d]
        if missing:
            raise CheckpointError(f"{where} lacks {', '.join(missing)}: not a training state")
        # format / version are the checkpoint folder's (checkpoint.py), not fields of this schema.
        known = {k: v for k, v in d.items() if k in names}
        known["schema"] = int(d.get("schema", 1))
        if known["schema"] > SCHEMA:
            raise CheckpointError(
                f"{where} holds a schema {known['schema']} training state; this gaze-attention reads up to "
                f"schema {SCHEMA}: upgrade it"
            )
        return cls(**known)


def read_train_state(folder: str | os.PathLike) -> TrainState:
    """The training state of a checkpoint folder."""
    return TrainState.from_json(read_state(folder), Path(folder) / "state.json")

"""The training state of a checkpoint (`state.json`): one schema, written and read here.

Schema 2 adds `inputs`, the geometry of the frames the model was trained on (prepared frame
size, flow method and encoding; frames and crop are in `model_config`), so that predict and
visualize resize a new video as training saw its data on any machine, with or without the
training data. Schema 1 states (no `inputs`, no `schema` key) still read.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from gaze_attention.data.store import FrameGeometry
from gaze_attention.errors import GazeAttentionError

FORMAT = "gaze-attention-checkpoint"
STATE_FILE = "state.json"
SCHEMA = 2  # the checkpoint folder's own format version is checkpoint.VERSION


class CheckpointError(GazeAttentionError, RuntimeError):
    """A checkpoint cannot be found or read; the message says which path and why."""


def read_state(folder: str | os.PathLike) -> dict[str, Any]:
    folder = Path(folder)
    try:
        with open(folder / STATE_FILE, encoding="utf-8") as fh:
            state = json.load(fh)
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        raise CheckpointError(f"cannot read {folder / STATE_FILE}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{folder / STATE_FILE} is not a {FORMAT} state file")
    return state


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


def training_geometry(state: TrainState, config: Any = None) -> tuple[FrameGeometry | None, str]:
    """The frame geometry a model was trained on, and where it was found.

    Schema 2 checkpoints carry it; for older ones the training data folder is asked, when it
    still exists where the config says.
    """
    if state.geometry is not None:
        return state.geometry, "the checkpoint"
    root = getattr(getattr(config, "data", None), "root", None)
    if root and Path(root).is_dir():
        from gaze_attention.data.store import FrameStore

        try:
            return FrameStore(root).geometry(), f"the training data {root}"
        except (OSError, ValueError):
            pass
    return None, ""


def video_inputs(
    geometry: FrameGeometry | None,
    *,
    size: tuple[int, int] | None,
    flow: str | None,
    found: str = "the checkpoint",
) -> tuple[tuple[int, int], str, list[str]]:
    """(frame size, flow method, notes for the user) for feeding a new video to a model.

    The model's training geometry wins unless the user overrides it, and every override or
    fallback is said: a frame size other than training's makes the crop see another scale,
    another flow method another motion encoding.
    """
    from gaze_attention.constants import ONLINE_FLOW_METHODS, PREPARED_SIZE

    notes: list[str] = []
    trained_flow = None
    if geometry is not None:
        trained_flow = "tvl1" if geometry.flow == "tvl1-torch" else geometry.flow
    if size is None:
        if geometry is not None:
            size = geometry.frame_size
        else:
            size = PREPARED_SIZE
            notes.append(
                f"the model's training frame size is unknown (a checkpoint of an older version whose training "
                f"data is gone): resizing to {size[0]}x{size[1]}; pass --size WxH if it was trained on another"
            )
    elif geometry is not None and tuple(size) != tuple(geometry.frame_size):
        w, h = geometry.frame_size
        notes.append(
            f"--size {size[0]}x{size[1]} overrides the {w}x{h} frames the model was trained on ({found}): "
            "the crop sees the video at another scale than in training"
        )
    if flow is None:
        flow = trained_flow if trained_flow in ONLINE_FLOW_METHODS else "dis"
    elif trained_flow in ONLINE_FLOW_METHODS and flow != trained_flow:
        notes.append(f"--flow {flow} overrides the {trained_flow} flow the model was trained on ({found})")
    return (int(size[0]), int(size[1])), flow, notes

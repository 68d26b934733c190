"""Loading (and writing, for tests) the checkpoint files of the reference implementation.

Min & Corso (WACV 2021) released three files per trained model, `*_base.pt` (two-stream
I3D: `model_rgb.*`, `model_flow.*`), `*_gaze.pt` (gaze head) and `*_attn.pt` (attention
head: `fc`, `fc_f`), saved from `nn.DataParallel` (keys prefixed `module.`) as legacy
CUDA tensors, plus a Kinetics two-stream initialisation `i3d_both_base.pt`. The widely used
Kinetics I3D files (`rgb_imagenet.pt`, `flow_imagenet.pt`) hold one stream each with its
Kinetics classifier (`logits.*`, ignored here).

All of them load with `torch.load(weights_only=True, map_location="cpu")`: tensors only, no
arbitrary unpickling. Key names map onto ours by a prefix: base -> `backbone.`, gaze ->
`gaze.`, attn -> `head.`, one stream -> `backbone.model_rgb.` / `backbone.model_flow.`.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from gaze_attention.errors import GazeAttentionError
from gaze_attention.fsio import atomic_path

PathLike = str | os.PathLike

PARTS = {"base": "backbone.", "gaze": "gaze.", "attn": "head."}
STREAMS = {"rgb": "backbone.model_rgb.", "flow": "backbone.model_flow."}


class CheckpointMismatchError(GazeAttentionError, RuntimeError):
    """A checkpoint does not fit the model; the message lists every offending key."""

    def __init__(
        self,
        source: str,
        missing: list[str],
        unexpected: list[str],
        wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        self.missing, self.unexpected, self.wrong_shape = missing, unexpected, wrong_shape
        lines = [f"checkpoint {source} does not match the model:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): " + ", ".join(missing))
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): " + ", ".join(unexpected))
        for key, got, want in wrong_shape:
            lines.append(f"  wrong shape: {key}: checkpoint {list(got)}, model {list(want)}")
        super().__init__("\n".join(lines))


def read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a `.pt` state dict (legacy or zip format), on the CPU, `module.` stripped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        # The original VideoMAE / timm training checkpoints also hold their `args` Namespace: a
        # plain attribute bag, allowed; anything else that is not a tensor is still refused.
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message suggests weights_only=False; for a file of unknown origin that would
        # run the code it holds, so say what was found instead.
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise ValueError(
            f"{path} holds Python code or objects{what}, not only tensors: refused, since loading it "
            "could run that code. Use a state dict of tensors (torch.save(model.state_dict(), ...))"
        ) from None
    except Exception as exc:  # pickle errors name no file; ours does
        raise ValueError(f"cannot read {path} as a tensors-only PyTorch state dict: {exc}") from exc
    # Training scripts wrap the weights: `state_dict` (Lightning and others), `model` or
    # `module` (the original VideoMAE / timm releases).
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        out[key[len("module.") :] if key.startswith("module.") else key] = value
    return out


def _load_part(
    model_state: dict[str, torch.Tensor],
    prefix: str,
    tensors: dict[str, torch.Tensor],
    source: str,
    drop: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """Check one part strictly against the model's keys under `prefix`; return renamed tensors."""
    wanted = {k[len(prefix) :]: v for k, v in model_state.items() if k.startswith(prefix)}
    given = {k: v for k, v in tensors.items() if not k.startswith(drop)}
    # Files from PyTorch < 0.4.1 have no BatchNorm batch counters; they carry no information.
    for key in wanted:
        if key.endswith("num_batches_tracked") and key not in given:
            given[key] = torch.zeros((), dtype=torch.long)
    missing = sorted(set(wanted) - set(given))
    unexpected = sorted(set(given) - set(wanted))
    wrong = [
        (k, tuple(given[k].shape), tuple(wanted[k].shape))
        for k in sorted(set(wanted) & set(given))
        if given[k].shape != wanted[k].shape
    ]
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(source, missing, unexpected, wrong)
    return {prefix + k: v for k, v in given.items()}


def load_reference_checkpoint(
    model: nn.Module,
    base: PathLike | None = None,
    gaze: PathLike | None = None,
    attn: PathLike | None = None,
    *,
    rgb: PathLike | None = None,
    flow: PathLike | None = None,
) -> list[str]:
    """Load the authors' files into a `GazeAttentionNet` in place, checking every key strictly.

    base: `*_base.pt` or the Kinetics `i3d_both_base.pt` (a ViT backbone's published weights
    load through `vit_weights.load_initial_weights`); gaze: `*_gaze.pt`; attn:
    `*_attn.pt`; rgb / flow: single-stream Kinetics I3D files (classifier ignored). Parts not
    given keep their current weights. Returns the names of the parts loaded. Raises
    `CheckpointMismatchError` listing missing, unexpected and wrongly shaped keys.
    """
    loaded: list[str] = []
    model_state = model.state_dict()
    update: dict[str, torch.Tensor] = {}
    for name, path in (("base", base), ("gaze", gaze), ("attn", attn)):
        if path is None:
            continue
        drop: tuple[str, ...] = ()
        if name == "base":
            drop = ("model_rgb.logits.", "model_flow.logits.")
            if not any(k.startswith(STREAMS["flow"]) for k in model_state):
                drop += ("model_flow.",)  # an RGB-only model takes the RGB stream alone
        update.update(_load_part(model_state, PARTS[name], read_state_dict(path), str(path), drop))
        loaded.append(name)
    for name, path in (("rgb", rgb), ("flow", flow)):
        if path is None:
            continue
        if not any(k.startswith(STREAMS[name]) for k in model_state):
            raise ValueError(f"{path}: the model has no {name} stream (built with use_flow=False?)")
        update.update(
            _load_part(model_state, STREAMS[name], read_state_dict(path), str(path), drop=("logits.",))
        )
        loaded.append(name)
    if not loaded:
        raise ValueError("give at least one of base, gaze, attn, rgb, flow")
    with torch.no_grad():
        for key, value in update.items():
            model_state[key].copy_(value)
    return loaded


def to_reference_state_dicts(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """The model's state dict split and named as the reference's three files (no `module.`)."""
    state = model.state_dict()
    return {
        part: {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        for part, prefix in PARTS.items()
    }


def save_reference_checkpoint(model: nn.Module, prefix: PathLike) -> dict[str, Path]:
    """Write `{prefix}_base.pt`, `_gaze.pt`, `_attn.pt` in the reference layout (`module.` keys).

    For tests and for exchanging weights with the reference code.
    """
    paths = {}
    for part, tensors in to_reference_state_dicts(model).items():
        path = Path(f"{prefix}_{part}.pt")
        with atomic_path(path) as tmp:
            torch.save({"module." + k: v.detach().cpu() for k, v in tensors.items()}, tmp)
        paths[part] = path
    return paths

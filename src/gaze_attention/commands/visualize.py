"""Draw what a model sees on a clip: predicted gaze, attention and Grad-CAM++ over time.

INPUT is a video file (decoded with PyAV, resized to --size, centre-cropped to the model's
input; flow from DIS when the model uses flow) or a prepared clip folder
PREPARED/images_rgb/<clip> (flow from images_flow/, recorded gaze from gaze/<clip>.npy).
The clip is run in non-overlapping windows of the model's length, as in evaluation.
--out picks the format: .gif or .mp4 (a panel per map; with --compare the models side by side) or .png
(a contact sheet: a row per model and map, evenly spaced frames as columns).

Overlays (--overlays, comma-separated): gaze = softmax(pi) per slice, upsampled;
sample = the gaze cell the attention head used (white box); recorded = the recorded
fixation (magenta dot, prepared clips only); attention = sigmoid(a); gradcam =
Grad-CAM++ of Mixed_5c (both streams summed) for the predicted class or --class.

Example:
  gaze-attention visualize data/images_rgb/P04-R06-GreekSalad-682170-683940-F016368-F016419 \\
      --checkpoint runs/gaze --compare runs/nogaze --out fig.gif
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gaze_attention.commands._args import frame_size
from gaze_attention.constants import EVAL_GAZE_MODES

# Kept literal so that `--help` does not import torch (see gaze_attention.viz.render.OVERLAYS).
DEFAULT_OVERLAYS = "gaze,sample,recorded,attention,gradcam"
REFERENCE_SUFFIXES = ("_base.pt", "_gaze.pt", "_attn.pt")




def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT",
                        help="a video file or a prepared clip folder PREPARED/images_rgb/<clip>")
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="run folder, checkpoint folder, or the authors' *_base.pt prefix")
    parser.add_argument("--out", required=True, metavar="FILE", help="output .gif, .mp4 or .png")
    parser.add_argument("--compare", metavar="CKPT2",
                        help="a second model shown beside the first (e.g. trained without gaze)")
    parser.add_argument("--overlays", default=DEFAULT_OVERLAYS,
                        help=f"comma-separated subset of {DEFAULT_OVERLAYS} (default: all)")
    parser.add_argument("--class", dest="target", metavar="NAME|ID",
                        help="class Grad-CAM++ explains: a class name, a 0-based index, or "
                             "'label' for the clip's label (default: each model's prediction)")
    parser.add_argument("--norm", choices=("frame", "clip"), default="frame",
                        help="normalise attention and Grad-CAM++ per frame or over the clip")
    parser.add_argument("--mode", choices=("auto", *EVAL_GAZE_MODES),
                        default="auto",
                        help="gaze the head sees: a Gumbel-max sample (the reference's test "
                             "time), the argmax, the expectation, or none; auto = none for "
                             "models trained without gaze, else sample")
    parser.add_argument("--seed", type=int, default=0, help="seed of the gaze samples")
    parser.add_argument("--start", type=int, default=0, help="first frame (default 0)")
    parser.add_argument("--max-frames", type=int, default=240,
                        help="frames to show at most (default 240; 0 = all)")
    parser.add_argument("--fps", type=float, default=None,
                        help="output frame rate (default: the input's)")
    parser.add_argument("--sheet-frames", type=int, default=8,
                        help="columns of a .png contact sheet (default 8)")
    parser.add_argument("--layout", choices=("auto", "columns", "rows"), default="auto",
                        help="video layout: columns = models side by side, maps stacked; rows "
                             "= a row of maps per model; auto = columns with --compare, else rows")
    parser.add_argument("--layer", action="append", metavar="MODULE",
                        help="Grad-CAM++ layer, repeatable; maps are summed (default: "
                             "backbone.model_rgb.Mixed_5c and backbone.model_flow.Mixed_5c)")
    parser.add_argument("--size", type=frame_size, default=(340, 256),
                        help="WxH a video is resized to before the centre crop (default "
                             "340x256, as `prepare` writes)")
    parser.add_argument("--num-classes", type=int, default=106,
                        help="classes of the authors' .pt files (default 106)")
    parser.add_argument("--names", metavar="A[,B]",
                        help="titles of the models (default: run folder and estimator)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")


def _is_reference(path: str) -> bool:
    return path.endswith(REFERENCE_SUFFIXES) or Path(f"{path}_base.pt").is_file()


def _load(path: str, device: str, num_classes: int) -> tuple[Any, list[str] | None, str, str]:
    """(model in eval mode, class names or None, default title, gaze mode for 'auto')."""
    from gaze_attention.engine.checkpoint import load_model, load_reference_model, resolve_checkpoint
    from gaze_attention.engine.train import eval_gaze_mode

    if _is_reference(path):
        model = load_reference_model(path, num_classes=num_classes, device=device)
        prefix = path
        for suffix in REFERENCE_SUFFIXES:
            prefix = prefix.removesuffix(suffix)
        return model, None, Path(prefix).name, "sample"
    model, cfg, class_names = load_model(path, device=device)
    folder = resolve_checkpoint(path)
    run = folder.parent.parent if folder.parent.name == "checkpoints" else folder
    title = f"{run.name} [{cfg.estimator.name}]"
    return model, class_names, title, eval_gaze_mode(cfg)


def _resolve_target(text: str | None, class_names: list[str] | None, num_classes: int
                    ) -> int | str | None:
    if text is None or text == "label":
        return text
    if class_names is not None:
        exact = [i for i, n in enumerate(class_names) if n == text]
        folded = [i for i, n in enumerate(class_names) if n.lower() == text.lower()]
        if exact or len(folded) == 1:
            return (exact or folded)[0]
    if text.isdigit() and int(text) < num_classes:
        return int(text)
    raise SystemExit(f"--class {text!r}: not a class name or an index below {num_classes}")


def run(args: argparse.Namespace) -> int:
    import torch

    from gaze_attention.viz.inputs import load_input
    from gaze_attention.viz.render import parse_overlays, render_clip

    try:
        overlays = parse_overlays(args.overlays)
    except ValueError as exc:
        raise SystemExit(f"--overlays: {exc}") from None
    out = Path(args.out)
    if out.suffix.lower() not in (".gif", ".mp4", ".png"):
        raise SystemExit(f"--out must end in .gif, .mp4 or .png, got {out.name}")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"

    paths = [args.checkpoint] + ([args.compare] if args.compare else [])
    loaded = [_load(p, device, args.num_classes) for p in paths]
    models = [m for m, _, _, _ in loaded]
    ref = models[0].config
    for m, p in zip(models[1:], paths[1:], strict=True):
        if m.config.num_classes != ref.num_classes:
            raise SystemExit(f"{p} has {m.config.num_classes} classes, {paths[0]} has "
                             f"{ref.num_classes}: they cannot be compared")
        if (m.config.crop, m.config.use_flow) != (ref.crop, ref.use_flow):
            raise SystemExit(f"{p} takes crop {m.config.crop} / flow {m.config.use_flow}, "
                             f"{paths[0]} crop {ref.crop} / flow {ref.use_flow}: compare models "
                             "with the same input")
    titles = [t for _, _, t, _ in loaded]
    if args.names:
        given = [n.strip() for n in args.names.split(",")]
        titles[: len(given)] = given[: len(titles)]
    if len(set(titles)) < len(titles):
        titles = [f"{i + 1}. {t}" for i, t in enumerate(titles)]

    clip, data_classes = load_input(
        args.input, crop=ref.crop, use_flow=ref.use_flow, start=args.start,
        max_frames=args.max_frames or None, size=args.size,
    )
    class_names = next((c for _, c, _, _ in loaded if c), None) or data_classes
    if class_names is not None and len(class_names) != ref.num_classes:
        class_names = None
    target = _resolve_target(args.target, class_names, ref.num_classes)
    if target == "label" and clip.label is None:
        raise SystemExit("--class label: the input has no label (use a prepared clip that is "
                         "in a split list)")

    models_by_title: dict[str, Any] = {}
    modes: dict[str, str] = {}
    for (model, _, _, auto_mode), title in zip(loaded, titles, strict=True):
        mode = auto_mode if args.mode == "auto" else args.mode
        if mode != "sample":
            title = f"{title} (gaze: {mode})"
        models_by_title[title] = model
        modes[title] = mode
    print(f"{clip.name}: {clip.num_frames} frames, {len(models)} model(s) on {device}",
          flush=True)
    path = render_clip(
        models_by_title, clip, out, class_names, overlays, gaze_mode=modes, target=target,
        norm=args.norm, layers=args.layer, seed=args.seed, fps=args.fps,
        sheet_frames=args.sheet_frames, layout=args.layout,
    )
    print(f"wrote {path}")
    return 0

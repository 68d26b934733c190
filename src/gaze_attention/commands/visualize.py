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
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gaze_attention.commands._args import (
    GAZE_MODES,
    add_class_names_argument,
    add_deprecated_alias,
    add_device_argument,
    add_gaze_mode_argument,
    add_model_source_arguments,
    error,
    frame_size,
    model_overrides,
    non_negative_int,
    positive_int,
    resolve_gaze_mode,
)
from gaze_attention.fsio import check_writable

# Kept literal so that `--help` does not import torch (see gaze_attention.viz.render.OVERLAYS).
DEFAULT_OVERLAYS = "gaze,sample,recorded,attention,gradcam"
REFERENCE_SUFFIXES = ("_base.pt", "_gaze.pt", "_attn.pt")


EXAMPLES = """examples:
  gaze-attention visualize my_video.mp4 --checkpoint demo_out/runs/direct-n30-s0 --out my_video.gif
  gaze-attention visualize prepared/images_rgb/CLIP --checkpoint runs/gaze --compare runs/nogaze \\
      --overlays gradcam,recorded --class label --out compare.png
  gaze-attention visualize kitchen.mp4 --reference-prefix weights/i3d_iga_best1 --out kitchen.mp4 --max-frames 96
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT",
                        help="a video file or a prepared clip folder PREPARED/images_rgb/<clip>")
    add_model_source_arguments(parser)
    parser.add_argument("--out", required=True, metavar="FILE", help="output .gif, .mp4 or .png (required)")
    parser.add_argument("--compare", metavar="CKPT2",
                        help="a second model shown beside the first, e.g. one trained without gaze: a run "
                             "or checkpoint folder, or the authors' PREFIX (default: none)")
    parser.add_argument("--overlays", default=DEFAULT_OVERLAYS, metavar="LIST",
                        help=f"comma-separated subset of {DEFAULT_OVERLAYS} (default: all)")
    parser.add_argument("--class", dest="target", metavar="NAME|ID",
                        help="class Grad-CAM++ explains: a class name, a 0-based index, or "
                             "'label' for the clip's label (default: each model's prediction)")
    parser.add_argument("--norm", choices=("frame", "clip"), default="frame",
                        help="normalise attention and Grad-CAM++ per frame or over the clip")
    add_gaze_mode_argument(parser)
    add_deprecated_alias(parser, "--mode", "--gaze-mode", "gaze_mode", choices=GAZE_MODES)
    parser.add_argument("--seed", type=int, default=0, metavar="SEED",
                        help="seed of the gaze samples (each window's noise comes from SEED, the clip and the window's start)")
    parser.add_argument("--start", type=non_negative_int, default=0, metavar="N", help="first frame")
    parser.add_argument("--max-frames", type=non_negative_int, default=240, metavar="N",
                        help="frames to show at most; 0 = all")
    parser.add_argument("--fps", type=float, default=None, metavar="FPS",
                        help="output frame rate (default: the input's)")
    parser.add_argument("--sheet-frames", type=positive_int, default=8, metavar="N",
                        help="columns of a .png contact sheet")
    parser.add_argument("--layout", choices=("auto", "columns", "rows"), default="auto",
                        help="video layout: columns = models side by side, maps stacked; rows "
                             "= a row of maps per model; auto = columns with --compare, else rows")
    parser.add_argument("--layer", action="append", metavar="MODULE",
                        help="Grad-CAM++ layer, repeatable; maps are summed (default: "
                             "backbone.model_rgb.Mixed_5c and backbone.model_flow.Mixed_5c)")
    parser.add_argument("--size", type=frame_size, default=None, metavar="WxH",
                        help="frame size a video is resized to before the centre crop (default: the "
                             "training frames', recorded in the checkpoint)")
    parser.add_argument("--num-classes", type=positive_int, default=106, metavar="N",
                        help="classes of --reference-prefix files (ignored with --class-names)")
    add_class_names_argument(parser)
    parser.add_argument("--names", metavar="A[,B]",
                        help="titles of the models (default: run folder and estimator)")
    add_device_argument(parser)


def _is_reference(path: str) -> bool:
    return path.endswith(REFERENCE_SUFFIXES) or Path(f"{path}_base.pt").is_file()


def _load(path: str, device: str, num_classes: int, reference: bool, preset: str = "paper",
          overrides: dict[str, Any] | None = None) -> tuple[Any, list[str] | None, str, str]:
    """(model in eval mode, class names or None, default title, gaze mode for 'auto')."""
    from gaze_attention.engine.checkpoint import load_model, load_reference_model, resolve_checkpoint
    from gaze_attention.engine.inference import use_cpu_layout
    from gaze_attention.engine.train import eval_gaze_mode

    if reference:
        model = load_reference_model(path, num_classes=num_classes, preset=preset, device=device,
                                     **(overrides or {}))
        use_cpu_layout(model, device)
        prefix = path
        for suffix in REFERENCE_SUFFIXES:
            prefix = prefix.removesuffix(suffix)
        return model, None, Path(prefix).name, "sample"
    model, cfg, class_names = load_model(path, device=device)
    use_cpu_layout(model, device)
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
    raise ValueError(f"--class {text!r}: not a class name or an index below {num_classes}")


def _model_problem(flag: str, path: str, reference: bool) -> str | None:
    """Why `path` given to `flag` cannot be loaded, found before importing torch; None if it may."""
    if reference:
        prefix = path
        for suffix in REFERENCE_SUFFIXES:
            prefix = prefix.removesuffix(suffix)
        missing = [prefix + s for s in REFERENCE_SUFFIXES if not Path(prefix + s).is_file()]
        if missing:
            return f"{flag} {path}: missing {', '.join(missing)} (the authors' three files)"
        return None
    if not Path(path).exists():
        return (f"{flag} {path}: no such file or folder (a run folder, a checkpoint folder, or "
                "--reference-prefix for the authors' files)")
    return None


def run(args: argparse.Namespace) -> int:
    from gaze_attention.data.egtea import read_index

    out = Path(args.out)
    if out.suffix.lower() not in (".gif", ".mp4", ".png"):
        return error(f"--out must end in .gif, .mp4 or .png, got {out.name}")
    if not Path(args.input).exists():
        return error(f"INPUT {args.input}: no such video file or prepared clip folder")
    problem = check_writable(out, "--out")
    if problem:  # before loading models and rendering, whose result would be lost
        return error(problem)
    primary, reference = args.checkpoint, False
    if args.reference_prefix:
        primary, reference = args.reference_prefix, True
    elif _is_reference(primary):  # the spelling of earlier releases
        print("gaze-attention: note: --checkpoint with the authors' files is deprecated and will be "
              "removed in the next release; use --reference-prefix", file=sys.stderr)
        reference = True
    flag = "--reference-prefix" if args.reference_prefix else "--checkpoint"
    specs = [(flag, primary, reference)]
    if args.compare:
        specs.append(("--compare", args.compare, _is_reference(args.compare)))
    for f, p, r in specs:
        problem = _model_problem(f, p, r)
        if problem:
            return error(problem)
    num_classes = args.num_classes
    names_file: list[str] | None = None
    if args.class_names:
        if not Path(args.class_names).is_file():
            return error(f"--class-names {args.class_names}: no such file")
        names_file = read_index(args.class_names)
        num_classes = len(names_file)
    try:
        overlays_and_models = _prepare(args, specs, num_classes)
    except ValueError as exc:
        return error(str(exc))
    return _render(args, out, *overlays_and_models, names_file)


def _prepare(args: argparse.Namespace, specs: list[tuple[str, str, bool]], num_classes: int
             ) -> tuple[Any, str, list[tuple[Any, list[str] | None, str, str]], list[str]]:
    import torch

    from gaze_attention.engine.checkpoint import CheckpointError
    from gaze_attention.models import CheckpointMismatchError
    from gaze_attention.viz.render import parse_overlays

    try:
        overlays = parse_overlays(args.overlays)
    except ValueError as exc:
        raise ValueError(f"--overlays: {exc}") from None
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    overrides = model_overrides(args.model_set)
    loaded = []
    for flag, path, reference in specs:
        try:
            loaded.append(_load(path, device, num_classes, reference, args.preset, overrides))
        except (CheckpointError, CheckpointMismatchError, FileNotFoundError, TypeError) as exc:
            raise ValueError(f"{flag} {path}: {exc}") from None
    paths = [p for _, p, _ in specs]
    models = [m for m, _, _, _ in loaded]
    ref = models[0].config
    for m, p in zip(models[1:], paths[1:], strict=True):
        if m.config.num_classes != ref.num_classes:
            raise ValueError(f"{p} has {m.config.num_classes} classes, {paths[0]} has "
                             f"{ref.num_classes}: they cannot be compared")
        if (m.config.crop, m.config.use_flow) != (ref.crop, ref.use_flow):
            raise ValueError(f"{p} takes crop {m.config.crop} / flow {m.config.use_flow}, "
                             f"{paths[0]} crop {ref.crop} / flow {ref.use_flow}: compare models "
                             "with the same input")
    titles = [t for _, _, t, _ in loaded]
    if args.names:
        given = [n.strip() for n in args.names.split(",")]
        titles[: len(given)] = given[: len(titles)]
    if len(set(titles)) < len(titles):
        titles = [f"{i + 1}. {t}" for i, t in enumerate(titles)]
    return overlays, device, loaded, titles


def _frame_size(args: argparse.Namespace) -> tuple[tuple[int, int], list[str]]:
    """The frame size a video is resized to: the first model's training frames unless --size says."""
    from gaze_attention.constants import PREPARED_SIZE
    from gaze_attention.data.store import FrameGeometry
    from gaze_attention.engine.checkpoint import resolve_checkpoint
    from gaze_attention.engine.config import TrainConfig
    from gaze_attention.engine.train_state import read_train_state, training_geometry, video_inputs

    if args.reference_prefix or _is_reference(args.checkpoint):
        geometry, found = FrameGeometry(PREPARED_SIZE), "the paper's EGTEA frames"
    else:
        state = read_train_state(resolve_checkpoint(args.checkpoint))
        geometry, found = training_geometry(state, TrainConfig.from_dict(state.config))
    size, _, notes = video_inputs(geometry, size=args.size, flow=None, found=found)
    return size, notes


def _match_label(clip: Any, data_classes: list[str] | None, class_names: list[str] | None,
                 num_classes: int, source: str) -> tuple[Any, str | None]:
    """(The clip with its label as an index of the model's classes or None, a warning or None).

    A prepared clip's label indexes its data set's class list; when that list differs from the
    model's, the same index means another class (or none at all). The label is then looked
    up by name, a warning says the lists differ, and an unknown label is dropped, so that no
    "(wrong)" is printed against a mismatched list.
    """
    import dataclasses

    if clip.label is None or data_classes is None or list(data_classes) == list(class_names or []):
        if clip.label is not None and clip.label >= num_classes:
            return _without_label(clip, f"class {clip.label}"), (
                f"INPUT {source}: its label {clip.label} is beyond the model's {num_classes} classes: "
                "the label is not shown")
        return clip, None
    name = data_classes[clip.label] if 0 <= clip.label < len(data_classes) else f"class {clip.label}"
    index = list(class_names).index(name) if class_names is not None and name in class_names else None
    known = f"{len(class_names)} classes" if class_names is not None else "classes (no names)"
    warning = (f"INPUT {source}: its data set's {len(data_classes)} classes differ from the model's "
               f"{known}: the clip's label {name!r} is "
               + (f"class {index} of the model" if index is not None else "not one of them and is not shown"))
    if index is None:
        return _without_label(clip, name), warning
    return dataclasses.replace(clip, label=index), warning


def _without_label(clip: Any, name: str) -> Any:
    import dataclasses

    out = dataclasses.replace(clip, label=None)
    out.unmatched_label = name  # for the --class label message
    return out


def _render(args: argparse.Namespace, out: Path, overlays: Any, device: str,
            loaded: list[tuple[Any, list[str] | None, str, str]], titles: list[str],
            names_file: list[str] | None) -> int:
    from gaze_attention.viz.inputs import load_input
    from gaze_attention.viz.render import render_clip

    models = [m for m, _, _, _ in loaded]
    ref = models[0].config
    size, notes = _frame_size(args)
    try:
        clip, data_classes = load_input(
            args.input, crop=ref.crop, use_flow=ref.use_flow, start=args.start,
            max_frames=args.max_frames or None, size=size,
        )
    except (FileNotFoundError, ValueError) as exc:
        return error(f"INPUT {args.input}: {exc}")
    model_names = next((c for _, c, _, _ in loaded if c), None) or names_file
    class_names = model_names or data_classes
    if class_names is not None and len(class_names) != ref.num_classes:
        class_names = None
    clip, label_warning = _match_label(clip, data_classes, class_names, ref.num_classes, args.input)
    try:
        target = _resolve_target(args.target, class_names, ref.num_classes)
    except ValueError as exc:
        return error(str(exc))
    if target == "label" and clip.label is None:
        if getattr(clip, "unmatched_label", None):
            return error(f"--class label: the clip's label {clip.unmatched_label!r} is not one of the model's "
                         f"{ref.num_classes} classes (its data set has other classes than the checkpoint)")
        return error("--class label: the input has no label (use a prepared clip that is in a split list)")
    if label_warning:
        print(f"warning: {label_warning}", file=sys.stderr)

    if Path(args.input).is_file():  # after every check (errors stay one line); a clip folder has its own size
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    models_by_title: dict[str, Any] = {}
    modes: dict[str, str] = {}
    for (model, _, _, auto_mode), title in zip(loaded, titles, strict=True):
        mode = resolve_gaze_mode(args.gaze_mode, auto_mode)
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

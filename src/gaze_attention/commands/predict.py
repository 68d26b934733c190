"""Recognise the action in a video: top-k action names and the predicted gaze per window.

Streams the video (PyAV: mp4, mkv, avi, webm, GIF, ...), resizes it like `prepare`, computes
optical flow on the fly (DIS by default; tvl1 is the paper's but slow), and averages the logits
of its windows (default: non-overlapping windows from frame 0, as the authors test; --stride
and --tail for long videos). Memory stays at a few windows, whatever the video's length.
No gaze recording is needed. CKPT: one of our checkpoints or run folders; or the authors'
files with --reference-prefix and --class-names action_idx.txt. Prints the top-k actions
and, per window, the predicted gaze cells; --json writes the same as JSON, --timeline FILE the
per-window timeline (start/end seconds, top-k, gaze cell and pixel) as CSV or JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gaze_attention.commands._args import (
    add_class_names_argument,
    add_gaze_mode_argument,
    add_inference_arguments,
    add_json_argument,
    add_model_source_arguments,
    add_progress_argument,
    add_windows_arguments,
    error,
    frame_size,
    model_overrides,
    positive_int,
    resolve_gaze_mode,
)
from gaze_attention.constants import ONLINE_FLOW_METHODS, PREPARED_SIZE
from gaze_attention.fsio import check_writable, dumps_json, write_json

EXAMPLES = """examples:
  gaze-attention predict my_video.mp4 --checkpoint demo_out/runs/direct-n30-s0   # the demo's model
  gaze-attention predict cooking.mp4 --reference-prefix weights/i3d_iga_best1 --class-names action_idx.txt
  gaze-attention predict day.mkv --checkpoint runs/paper --stride 12 --timeline day.csv  # an hour of video
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "video", metavar="VIDEO", help="video file (anything PyAV opens: mp4, mkv, avi, webm, GIF) or a prepared clip folder"
    )
    add_model_source_arguments(parser)
    add_class_names_argument(parser)
    parser.add_argument(
        "--flow", choices=ONLINE_FLOW_METHODS, default=None,
        help="optical flow computed on the fly: dis (fast), farneback, tvl1 (the paper's, ~0.4 s per frame pair) "
        "(default: the method of the model's training data when it is one of these, else dis)",
    )  # fmt: skip
    parser.add_argument(
        "--size", type=frame_size, default=None, metavar="WxH",
        help="frame size the video is resized to (default: the training frames', recorded in the checkpoint)",
    )  # fmt: skip
    parser.add_argument("--top-k", type=positive_int, default=5, metavar="K", help="actions listed")
    add_gaze_mode_argument(parser)
    add_windows_arguments(parser)
    parser.add_argument(
        "--stride", type=positive_int, default=None, metavar="FRAMES",
        help="frames between window starts (default: the model's window length, no overlap)",
    )  # fmt: skip
    parser.add_argument(
        "--tail", action="store_true", help="add a window ending at the last frame (default: drop the tail)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="SEED", help="seed of the gaze samples")
    add_inference_arguments(parser)
    add_json_argument(parser, "the prediction")
    parser.add_argument(
        "--timeline", metavar="FILE", action="append", default=[],
        help="write the per-window timeline to FILE.csv or FILE.json (repeatable; default: none)",
    )  # fmt: skip
    add_progress_argument(parser)


def run(args: argparse.Namespace) -> int:
    from gaze_attention.data.egtea import read_index
    from gaze_attention.data.store import FrameGeometry
    from gaze_attention.engine.checkpoint import load_reference_model, load_run
    from gaze_attention.engine.distributed import pick_device
    from gaze_attention.engine.inference import use_cpu_layout
    from gaze_attention.engine.precision import resolve_precision
    from gaze_attention.engine.predict import format_prediction, predict_video, write_timeline_csv
    from gaze_attention.engine.train import eval_gaze_mode
    from gaze_attention.engine.train_state import training_geometry, video_inputs

    if not Path(args.video).exists():
        return error(f"VIDEO {args.video}: no such file (a video, or a prepared clip folder)")
    if args.checkpoint and not Path(args.checkpoint).exists():
        return error(f"--checkpoint {args.checkpoint}: no such file or folder (a run folder or checkpoint)")
    if args.reference_prefix and not args.class_names:
        return error("--reference-prefix needs --class-names action_idx.txt (the authors' files hold no names)")
    device = pick_device(args.device)
    for path in args.timeline:
        if not path.lower().endswith((".csv", ".json")):
            return error(f"--timeline {path}: the file must end in .csv or .json")
    outputs = [("--json", args.json)] if args.json not in (None, "-") else []
    for flag, path in outputs + [("--timeline", p) for p in args.timeline]:
        problem = check_writable(path, flag)
        if problem:  # before the prediction, which would be lost after minutes of work
            return error(problem)
    if args.checkpoint:
        model, cfg, names, state = load_run(args.checkpoint, device=device)
        gaze_mode = resolve_gaze_mode(args.gaze_mode, eval_gaze_mode(cfg))
        geometry, found = training_geometry(state, cfg)
    else:
        if not Path(args.class_names).is_file():
            return error(f"--class-names {args.class_names}: no such file")
        names = read_index(args.class_names)
        model = load_reference_model(
            args.reference_prefix, len(names), preset=args.preset, device=device,
            **model_overrides(args.model_set),
        )  # fmt: skip
        gaze_mode = resolve_gaze_mode(args.gaze_mode, "sample")
        # The authors trained on EGTEA at 340x256 (TV-L1 flow, too slow to default to here).
        geometry, found = FrameGeometry(PREPARED_SIZE), "the paper's EGTEA frames"
    size, flow, notes = video_inputs(geometry, size=args.size, flow=args.flow, found=found)
    if Path(args.video).is_file():  # a prepared clip folder is read at its own size, flow from disk
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    use_cpu_layout(model, device)
    choice = resolve_precision(args.precision, device)  # after every check: errors stay one line
    args.precision = choice.precision
    print(choice, file=sys.stderr)
    result = predict_video(
        model, args.video, names, flow=flow, size=size, top_k=args.top_k,
        gaze_mode=gaze_mode, sparse=args.sparse, stride=args.stride, tail=args.tail, seed=args.seed,
        batch_size=args.batch_size, precision=args.precision,
        progress=not args.no_progress,
    )  # fmt: skip
    if args.json is None:
        print(format_prediction(result))
    elif args.json == "-":
        print(dumps_json(result))
    else:
        write_json(args.json, result)
        print(format_prediction(result))
        print(f"prediction: {args.json}")
    for path in args.timeline:
        if path.lower().endswith(".csv"):
            write_timeline_csv(result, path)
        else:
            write_json(path, {k: v for k, v in result.items() if k != "probabilities"})
        print(f"timeline: {path}", file=sys.stderr)
    return 0

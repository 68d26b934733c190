"""Recognise the action in a video: top-k action names and the predicted gaze per window.

Streams the video (PyAV: mp4, mkv, avi, webm, GIF, ...), resizes it like `prepare`, computes
optical flow on the fly (DIS by default; tvl1 is the paper's but slow), and averages the logits
of its windows (default: non-overlapping windows from frame 0, as the authors test; --stride
and --tail for long videos). Memory stays at a few windows, whatever the video's length.
No gaze recording is needed. CKPT: one of our checkpoints or run folders; or the authors'
files with --reference-prefix and --classes action_idx.txt.

  gaze-attention predict clip.mp4 --checkpoint runs/paper --top-k 5
  gaze-attention predict clip.mp4 --checkpoint runs/paper --json > prediction.json
  gaze-attention predict day.mkv --checkpoint runs/paper --stride 12 --timeline day.csv
"""

from __future__ import annotations

import argparse
import json
import sys

from gaze_attention.commands._args import add_inference_arguments, frame_size
from gaze_attention.constants import EVAL_GAZE_MODES, ONLINE_FLOW_METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "video", metavar="VIDEO", help="video file (anything PyAV opens) or a prepared clip folder"
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="CKPT", help="checkpoint folder/file or run folder")
    src.add_argument("--reference-prefix", metavar="PREFIX", help="authors' PREFIX_{base,gaze,attn}.pt")
    parser.add_argument(
        "--classes", metavar="FILE", help="action_idx.txt naming the classes (--reference-prefix)"
    )
    parser.add_argument("--preset", default="paper", help="model preset of --reference-prefix")
    parser.add_argument(
        "--flow", choices=ONLINE_FLOW_METHODS, default="dis", help="optical flow method (default dis)"
    )
    parser.add_argument(
        "--size", type=frame_size, default=None, help="prepared frame size WxH (default 340x256)"
    )
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--gaze-mode", choices=EVAL_GAZE_MODES, default=None)
    parser.add_argument("--sparse", action="store_true", help="at most 10 windows")
    parser.add_argument(
        "--stride", type=int, default=None, metavar="FRAMES",
        help="frames between window starts (default: the model's window length, no overlap)",
    )  # fmt: skip
    parser.add_argument(
        "--tail", action="store_true", help="add a window ending at the last frame (default: drop the tail)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the gaze samples (default 0)")
    add_inference_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--timeline", metavar="FILE", action="append", default=[],
        help="write the per-window timeline to FILE.csv or FILE.json (repeatable)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from gaze_attention.data.egtea import read_index
    from gaze_attention.engine.checkpoint import CheckpointError, load_model, load_reference_model
    from gaze_attention.engine.distributed import pick_device
    from gaze_attention.engine.predict import format_prediction, predict_video, write_timeline_csv
    from gaze_attention.engine.train import eval_gaze_mode
    from gaze_attention.models import CheckpointMismatchError

    device = pick_device(args.device)
    size = args.size
    for path in args.timeline:
        if not path.lower().endswith((".csv", ".json")):
            print(f"error: --timeline {path}: the file must end in .csv or .json", file=sys.stderr)
            return 2
    try:
        if args.checkpoint:
            model, cfg, names = load_model(args.checkpoint, device=device)
            gaze_mode = args.gaze_mode or eval_gaze_mode(cfg)
            if size is None and cfg.data.root:
                size = _prepared_size(cfg.data.root)
        else:
            if not args.classes:
                print("error: --reference-prefix needs --classes action_idx.txt", file=sys.stderr)
                return 2
            names = read_index(args.classes)
            model = load_reference_model(args.reference_prefix, len(names), preset=args.preset, device=device)
            gaze_mode = args.gaze_mode or "sample"
        result = predict_video(
            model, args.video, names, flow=args.flow, size=size or (340, 256), top_k=args.top_k,
            gaze_mode=gaze_mode, sparse=args.sparse, stride=args.stride, tail=args.tail, seed=args.seed,
            batch_size=args.batch_size, precision=args.precision,
            progress=not args.no_progress,
        )  # fmt: skip
    except (CheckpointError, CheckpointMismatchError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1) if args.json else format_prediction(result))
    for path in args.timeline:
        if path.lower().endswith(".csv"):
            write_timeline_csv(result, path)
        else:
            with open(path, "w", encoding="utf-8") as fh:
                json.dump({k: v for k, v in result.items() if k != "probabilities"}, fh, indent=1)
        print(f"timeline: {path}", file=sys.stderr)
    return 0


def _prepared_size(root: str) -> tuple[int, int] | None:
    """Frame size recorded by `prepare` in the training data's manifest, if still there."""
    import json as _json
    from pathlib import Path

    manifest = Path(root) / "manifest.jsonl"
    if not manifest.is_file():
        return None
    with open(manifest, encoding="utf-8") as fh:
        for line in fh:
            try:
                size = _json.loads(line).get("size")
            except ValueError:
                continue
            if size and len(size) == 2:
                return int(size[0]), int(size[1])
    return None

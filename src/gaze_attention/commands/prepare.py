"""Prepare raw videos and gaze (EGTEA Gaze+ or own recordings) for training.

Decodes each clip, resizes it, computes optical flow, aligns gaze to frames and writes the
reference layout (images_rgb/, images_flow/, gaze/, annotations/, manifest.jsonl). Clips
shorter than --min-frames are extended with session frames (videos/<session>.mp4) or repeated
edge frames. Resumable: a rerun skips finished clips. Exit status 1 if any clip failed.
"""

from __future__ import annotations

import argparse
import os
import sys

from gaze_attention.commands._args import frame_size
from gaze_attention.constants import FLOW_METHODS


def _splits(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,2,3, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("raw_dir", metavar="RAW_DIR", help="raw EGTEA or own-recordings folder")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder for the prepared data")
    parser.add_argument("--splits", type=_splits, default=None, help="split lists to prepare (default: all)")
    parser.add_argument(
        "--flow",
        choices=FLOW_METHODS,
        default="tvl1",
        help="optical flow: tvl1 (paper, slow), dis / farneback (fast), none (RGB only)",
    )
    parser.add_argument("--size", type=frame_size, default=(340, 256), help="WxH, default 340x256")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    parser.add_argument("--min-frames", type=int, default=24, help="extend shorter clips to this")
    parser.add_argument("--jpeg-quality", type=int, default=95)
    parser.add_argument(
        "--annotations", default=None, help="folder of split lists to use instead of RAW_DIR's"
    )
    parser.add_argument(
        "--allow-missing-gaze",
        action="store_true",
        help="prepare clips without a gaze file (their gaze is all nan) instead of failing them",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from gaze_attention.data.egtea import AnnotationError
    from gaze_attention.data.prepare import PrepareError, prepare

    try:
        result = prepare(
            args.raw_dir,
            args.out_dir,
            splits=args.splits,
            flow=args.flow,
            size=args.size,
            workers=max(1, args.workers),
            min_frames=args.min_frames,
            jpeg_quality=args.jpeg_quality,
            annotations=args.annotations,
            allow_missing_gaze=args.allow_missing_gaze,
            progress=not args.no_progress,
        )
    except (PrepareError, AnnotationError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result.summary(), file=sys.stderr if result.failed else sys.stdout)
    return 0 if result.ok else 1

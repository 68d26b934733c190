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

from gaze_attention.commands._args import (
    add_progress_argument,
    add_workers_argument,
    error,
    frame_size,
    positive_int,
)
from gaze_attention.constants import FLOW_METHODS


def _splits(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,2,3, got {text!r}") from None


def _quality(text: str) -> int:
    try:
        q = int(text)
    except ValueError:
        q = 0
    if not 1 <= q <= 100:
        raise argparse.ArgumentTypeError(f"expected a JPEG quality from 1 to 100, got {text!r}")
    return q


EXAMPLES = """examples:
  gaze-attention prepare RAW prepared --splits 1 --flow dis          # EGTEA split 1, fast flow
  gaze-attention prepare RAW prepared --flow tvl1 --workers 16       # the paper's flow (slow)
  gaze-attention prepare demo_raw demo_prepared --flow dis --size 170x128
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("raw_dir", metavar="RAW_DIR", help="raw EGTEA or own-recordings folder")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder for the prepared data")
    parser.add_argument(
        "--splits", type=_splits, default=None, metavar="N[,N...]",
        help="split lists to prepare, e.g. 1,2,3 (default: every split list present)",
    )  # fmt: skip
    parser.add_argument(
        "--flow",
        choices=FLOW_METHODS,
        default="tvl1",
        help="optical flow: tvl1 (the paper's; about 1.3 s per 340x256 frame on one core, a week "
        "for EGTEA on 2 cores), tvl1-torch (the same TV-L1 in PyTorch, batched: for GPUs), dis (~1 ms "
        "per frame) or farneback (fast approximations), none (RGB only)",
    )
    parser.add_argument(
        "--device", default="auto", metavar="DEVICE",
        help="where tvl1-torch runs: auto (cuda if available, else cpu), cpu, cuda or cuda:N",
    )  # fmt: skip
    parser.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="prepare shard I of N (0 <= I < N) into OUT_DIR; run all N (e.g. a SLURM array) for the "
        "whole set (default: everything in one run)",
    )
    parser.add_argument("--size", type=frame_size, default=(340, 256), metavar="WxH", help="stored frame size")
    add_workers_argument(
        parser, os.cpu_count() or 1, f"each prepares one clip at a time (default: all cores, {os.cpu_count() or 1} here)"
    )
    parser.add_argument(
        "--min-frames", type=positive_int, default=24, metavar="N", help="extend shorter clips to N frames"
    )
    parser.add_argument(
        "--jpeg-quality", type=_quality, default=95, metavar="Q",
        help="JPEG quality (1-100) of the RGB and flow images",
    )  # fmt: skip
    parser.add_argument(
        "--annotations", default=None, metavar="DIR",
        help="folder of split lists to use instead of RAW_DIR's (default: RAW_DIR/action_annotation)",
    )  # fmt: skip
    parser.add_argument(
        "--allow-missing-gaze",
        action="store_true",
        help="prepare clips without a gaze file (their gaze is all nan) instead of failing them",
    )
    add_progress_argument(parser)


def run(args: argparse.Namespace) -> int:
    from gaze_attention.data.egtea import AnnotationError
    from gaze_attention.data.prepare import PrepareError, PrepareOptions, prepare

    if not os.path.isdir(args.raw_dir):
        return error(f"RAW_DIR {args.raw_dir}: no such folder (the unpacked EGTEA release or your recordings)")
    if args.annotations is not None and not os.path.isdir(args.annotations):
        return error(f"--annotations {args.annotations}: no such folder")
    try:
        options = PrepareOptions(
            splits=args.splits,
            flow=args.flow,
            size=args.size,
            workers=args.workers,  # 0: the main process, as 1
            min_frames=args.min_frames,
            jpeg_quality=args.jpeg_quality,
            annotations=args.annotations,
            allow_missing_gaze=args.allow_missing_gaze,
            progress=not args.no_progress,
            shard=args.shard,
            flow_device=args.device,
            estimate=True,
        )
        result = prepare(args.raw_dir, args.out_dir, options=options)
    except (PrepareError, AnnotationError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result.summary(), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1

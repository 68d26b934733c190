"""Prepare raw videos and gaze (EGTEA Gaze+, own recordings, or long recordings with segments) for training.

Decodes each clip, resizes it, computes optical flow, aligns gaze to frames and writes the
reference layout (images_rgb/, images_flow/, gaze/, annotations/, manifest.jsonl). Clips
shorter than --min-frames are extended with session frames (videos/<session>.mp4) or repeated
edge frames. Resumable: a rerun skips finished clips. Exit status 1 if any clip failed.
"""

from __future__ import annotations

import argparse
import math
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
  gaze-attention prepare ego4d_project prepared --videos v2/full_scale --gaze v2/gaze --flow dis  # segments.csv
"""


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    return v


def _offset(text: str) -> float | str:
    """Seconds, or else the path of a CSV file of video,offset lines (read by the run)."""
    try:
        return _seconds(text)
    except argparse.ArgumentTypeError:
        return text


def _non_negative(text: str) -> float:
    v = _seconds(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def _confidence(text: str) -> float:
    v = _seconds(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"expected a confidence from 0 to 1, got {text!r}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "raw_dir", metavar="RAW_DIR",
        help="raw EGTEA, own-recordings or long-recordings folder (the last: segments.csv, videos/, gaze/)",
    )  # fmt: skip
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
    long = parser.add_argument_group(
        "long recordings with segments (RAW_DIR/segments.csv: video,start,end,label[,split,verb,noun]; "
        "see docs/sources.md)"
    )
    long.add_argument("--segments", default=None, metavar="FILE",
                      help="the segments file (default: RAW_DIR/segments.csv)")  # fmt: skip
    long.add_argument(
        "--segments-in-frames", action="store_true",
        help="start and end are frame numbers (first and last frame, both included), not seconds",
    )  # fmt: skip
    long.add_argument(
        "--videos", default=None, metavar="DIR|PATTERN",
        help="folder of the long videos (<video>.mp4, any container, or .vrs), or a path with {video} "
        "(default: RAW_DIR/videos)",
    )  # fmt: skip
    long.add_argument(
        "--gaze", default=None, metavar="DIR|PATTERN",
        help="folder of the gaze files (<video>.csv: Ego4D, Aria MPS, Ego-Exo4D 2-D, BeGaze or frame,x,y), "
        "or a path with {video} (default: RAW_DIR/gaze)",
    )  # fmt: skip
    long.add_argument(
        "--calibration", default=None, metavar="FILE|DIR|PATTERN",
        help="Aria device calibration JSON or MPS online_calibration.jsonl: one file for all videos, a folder "
        "of <video>.json[l], or a path with {video} (default: RAW_DIR/calibration/<video>.json[l], else "
        "RAW_DIR/calibration.json[l], else the .vrs's own)",
    )  # fmt: skip
    long.add_argument(
        "--gaze-offset", type=_offset, default=0.0, metavar="SECONDS|FILE",
        help="gaze time = video time + SECONDS: the gaze clock's reading when the video's first frame is shown "
        "(e.g. T0 for Aria device-time gaze on an mp4 whose first frame was captured at device time T0; default 0), "
        "or a CSV file of video,SECONDS lines, one offset per video",
    )  # fmt: skip
    long.add_argument(
        "--min-confidence", type=_confidence, default=None, metavar="C",
        help="drop gaze samples with confidence below C (default: 0.6 for Ego4D, Pupil Player's; 0 otherwise)",
    )  # fmt: skip
    long.add_argument("--gaze-clock", choices=("canonical", "component"), default="canonical",
                      help="Ego4D's timestamp column (default canonical: the time in the full_scale video)")  # fmt: skip
    long.add_argument(
        "--aria-rotate", choices=("none", "cw90"), default="none",
        help="Aria angle gaze into the image as stored (none: .vrs frames) or turned upright (cw90: "
        "Ego-Exo4D's mp4s)",
    )  # fmt: skip
    long.add_argument("--ivt-velocity", type=_non_negative, default=30.0, metavar="DEG_S",
                      help="I-VT fixation threshold for gaze with angles (Aria), degrees/s (default 30)")  # fmt: skip
    long.add_argument(
        "--ivt-velocity-norm", type=_non_negative, default=0.4, metavar="UNITS_S",
        help="I-VT threshold for gaze in image coordinates, normalised image units/s (default 0.4)",
    )  # fmt: skip
    long.add_argument("--ivt-min-fixation", type=_non_negative, default=0.1, metavar="SECONDS",
                      help="shortest fixation kept by I-VT (default 0.1 s)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from gaze_attention.data.prepare import PrepareOptions, prepare

    if not os.path.isdir(args.raw_dir):
        return error(f"RAW_DIR {args.raw_dir}: no such folder (the unpacked EGTEA release or your recordings)")
    if args.annotations is not None and not os.path.isdir(args.annotations):
        return error(f"--annotations {args.annotations}: no such folder")
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
        segments=args.segments,
        videos=args.videos,
        gaze=args.gaze,
        calibration=args.calibration,
        segments_in_frames=args.segments_in_frames,
        gaze_offset=args.gaze_offset,
        min_confidence=args.min_confidence,
        gaze_clock=args.gaze_clock,
        aria_rotate=args.aria_rotate,
        ivt_velocity=args.ivt_velocity,
        ivt_velocity_norm=args.ivt_velocity_norm,
        ivt_min_fixation=args.ivt_min_fixation,
    )
    result = prepare(args.raw_dir, args.out_dir, options=options)
    print(result.summary(), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1

"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse

from gaze_attention.constants import PRECISIONS


def frame_size(text: str) -> tuple[int, int]:
    """`WxH` (e.g. 340x256) -> (width, height), both positive."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 340x256, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return w, h


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """--batch-size, --precision and --device, as `evaluate` and `predict` take them."""
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="windows per forward pass (default: 8 on a GPU; on a CPU about one 24x224x224 window's worth)",
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")

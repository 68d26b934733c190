"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse

MAX_SIDE = 8192  # pixels; a frame beyond this is a typo (99999x99999 would be 30 GB per frame)


def frame_size(text: str) -> tuple[int, int]:
    """`WxH` (e.g. 340x256) -> (width, height), both in 1..MAX_SIDE."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 340x256, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    if w > MAX_SIDE or h > MAX_SIDE:
        raise argparse.ArgumentTypeError(
            f"{text!r} is larger than {MAX_SIDE} pixels a side; the paper uses 340x256"
        )
    return w, h


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, top-k, counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (worker counts, where 0 means the main process)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """--batch-size, --precision and --device, as `evaluate` and `predict` take them."""
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="windows per forward pass (default: 8 on a GPU; on a CPU about one 24x224x224 window's worth)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="autocast precision; auto (default): bf16 where the device runs it faster, else fp32",
    )
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")

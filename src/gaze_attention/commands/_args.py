"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse


def frame_size(text: str) -> tuple[int, int]:
    """`WxH` (e.g. 340x256) -> (width, height), both positive."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 340x256, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return w, h

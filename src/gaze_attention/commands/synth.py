"""Write a synthetic gaze-dependent data set in the raw EGTEA Gaze+ layout.

Each clip shows moving objects; the label is (motion pattern, kind) of the one a hand holds,
and noisy BeGaze gaze mostly fixates it. Prepare the result with `gaze-attention prepare`.
"""

from __future__ import annotations

import argparse


def _pair(text: str, sep: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.lower().split(sep))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two integers as A{sep}B, got {text!r}") from None
    return a, b


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_RAW_DIR", help="folder to write the raw set to")
    parser.add_argument("--classes", type=int, default=6, help="number of classes (default 6)")
    parser.add_argument("--train-per-class", type=int, default=40, help="default 40")
    parser.add_argument("--test-per-class", type=int, default=15, help="default 15")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--size", type=lambda s: _pair(s, "x"), default=(170, 128), help="WxH, default 170x128"
    )
    parser.add_argument(
        "--frames",
        type=lambda s: _pair(s, "-"),
        default=(24, 40),
        help="clip length range MIN-MAX in frames, default 24-40",
    )
    parser.add_argument("--distractors", type=int, default=2, help="objects besides the held one")
    parser.add_argument("--sessions", type=int, default=4, help="recordings (gaze files)")
    parser.add_argument("--session-videos", action="store_true", help="also write full session videos")


def run(args: argparse.Namespace) -> int:
    from gaze_attention.data.synthetic import make_synthetic_raw

    s = make_synthetic_raw(
        args.out_dir,
        num_classes=args.classes,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
        seed=args.seed,
        size=args.size,
        frames=args.frames,
        distractors=args.distractors,
        sessions=args.sessions,
        session_videos=args.session_videos,
    )
    print(
        f"wrote {s.train} train + {s.test} test clips of {len(s.classes)} classes "
        f"({', '.join(s.classes)}) in {len(s.sessions)} sessions to {s.root}"
    )
    return 0

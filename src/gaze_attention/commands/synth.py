"""Write a synthetic gaze-dependent data set in the raw EGTEA Gaze+ layout.

Each clip shows moving objects; the label is (motion pattern, kind) of the one a hand holds,
and noisy BeGaze gaze mostly fixates it. Prepare the result with `gaze-attention prepare`.
"""

from __future__ import annotations

import argparse

from gaze_attention.commands._args import add_deprecated_alias, error, frame_size, positive_int


def _at_least_two(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, got {value}")
    return value


def _pair(text: str, sep: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.lower().split(sep))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two integers as A{sep}B, got {text!r}") from None
    return a, b


EXAMPLES = """examples:
  gaze-attention synth demo_raw                                   # the demo's set: 6 classes, 330 clips
  gaze-attention synth small_raw --num-classes 3 --train-per-class 4 --test-per-class 2 --size 96x72
  gaze-attention synth short_raw --frames 12-20 --session-videos  # short clips, with session videos
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_RAW_DIR", help="folder to write the raw set to")
    parser.add_argument("--num-classes", type=positive_int, default=6, metavar="N", help="number of classes")
    add_deprecated_alias(parser, "--classes", "--num-classes N", "num_classes", type=positive_int)
    parser.add_argument("--train-per-class", type=positive_int, default=40, metavar="N",
                        help="training clips per class")  # fmt: skip
    parser.add_argument("--test-per-class", type=positive_int, default=15, metavar="N",
                        help="test clips per class")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, metavar="SEED", help="seed of the generated data")
    parser.add_argument("--size", type=frame_size, default=(170, 128), metavar="WxH", help="frame size")
    parser.add_argument(
        "--frames",
        type=lambda s: _pair(s, "-"),
        default=(24, 40),
        metavar="MIN-MAX",
        help="clip length range in frames (default: 24-40)",
    )
    parser.add_argument(
        "--distractors", type=int, default=2, metavar="N", help="moving objects besides the held one"
    )
    parser.add_argument(
        "--sessions", type=_at_least_two, default=4, metavar="N",
        help="recordings (gaze files), at least 2: one per BeGaze layout (7 and 26 columns)",
    )  # fmt: skip
    parser.add_argument("--session-videos", action="store_true", help="also write full session videos")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gaze_attention.data.synthetic import make_synthetic_raw

    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        return error(f"OUT_RAW_DIR {args.out_dir}: is a file, not a folder")

    s = make_synthetic_raw(
        args.out_dir,
        num_classes=args.num_classes,
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

"""Run the paper's ablation at CPU scale on synthetic data and write a report.

Makes a synthetic gaze-dependent data set in the raw EGTEA layout, prepares it (DIS flow),
trains the `tiny` network with each gaze estimator (none, gumbel_softmax, straight_through,
direct) over several seeds, evaluates each, and writes DIR/report/README.md with a table
(mean ± std over seeds), JSON, a bar chart, training curves, accuracy against training clips
per class, the estimators' gradient bias against exact enumeration, and a Grad-CAM++ figure.
No download, no GPU: about 25 minutes on 2 CPU cores (--quick: one seed, a few minutes).
An interrupted demo rerun with the same --out continues where it stopped.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default: %(default)s)")
    parser.add_argument(
        "--quick", action="store_true", help="one seed, 4 classes, 40 iterations, no clips-per-class curve"
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: 0 1 2; --quick: 0)")
    parser.add_argument("--iters", type=int, help="training iterations per run (default: 150; --quick: 40)")
    parser.add_argument("--lr", type=float, help="SGD learning rate (default: 0.005)")
    parser.add_argument("--no-figure", action="store_true", help="skip the Grad-CAM++ figure")
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def run(args: argparse.Namespace) -> int:
    from gaze_attention.demo import run_demo

    overrides = {}
    if args.seeds:
        overrides["seeds"] = tuple(args.seeds)
    if args.iters:
        overrides["iters"] = args.iters
    if args.lr:
        overrides["lr"] = args.lr
    if args.no_figure:
        overrides["figure"] = False
    command = (
        "gaze-attention " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if sys.argv[1:]
        else "gaze-attention demo"
    )
    result = run_demo(args.out, quick=args.quick, progress=not args.quiet, command=command, **overrides)
    print(result.report.read_text())
    print(f"report: {result.report}")
    return 0

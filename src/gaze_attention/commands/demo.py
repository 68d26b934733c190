"""Does gaze help? The paper's ablation at CPU scale, on synthetic data, with paired statistics.

Makes a synthetic gaze-dependent data set in the raw EGTEA layout and prepares it (DIS flow);
pre-trains a backbone once without gaze on a disjoint set of other actions (as the paper starts
from Kinetics; the `tiny-finetune` network: `tiny` with five of I3D's nine Inception modules per
stream); fine-tunes none and direct at 4 and 30 training clips per class over 6 paired seeds,
then over as many more as Stein's two-stage rule asks for where those 6 are too noisy for the
targets (up to --max-seeds, 24), and gumbel_softmax at 30 on the first N with --gumbel-seeds N;
evaluates each on 40 test clips per class and writes DIR/report/README.md: the paired differences direct - none (and direct -
gumbel_softmax) with 95 % confidence intervals per size and whether they reach the target
widths, accuracy per arm, whether the runs use their data and learn gaze, training curves, how
long direct optimization acted, the estimators'
gradient bias against exact enumeration, and a Grad-CAM++ figure. No download, no GPU (times: README, "What the demo
shows"). An interrupted demo rerun with the same --out continues where it stopped; a larger
--max-seeds adds pairs to a finished one (each report names the rerun its targets need), while a
finished run trained with other --iters, --lr or --no-pretrain is refused, never reused.
Every interval is conditional on the one pre-trained backbone; --backbones K repeats the plan on
K of them (beside DIR) and gives the interval over backbones in DIR's report.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from gaze_attention.commands._args import add_deprecated_alias, add_progress_argument, error, positive_int

EXAMPLES = """examples:
  gaze-attention demo                             # the full ablation (24 fine-tuning runs)
  gaze-attention demo --quick --out demo_quick    # 2 seeds, 2 sizes, 16 iterations: a check that it runs
  gaze-attention demo --backbones 5               # the same plan on 5 pre-trained backbones: an interval over them
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default="demo_out", metavar="DIR",
        help="output folder: raw/, prepared/, pretrain/, runs/<estimator>-n<clips>-s<seed>/ (checkpoints), report/",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true", help="4 classes, 2 seeds, 2 sizes, 16 iterations: a check that it all runs"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", metavar="SEED", help="paired training seeds (default: 0 1 2 3 4 5; --quick: 0 1)"
    )
    parser.add_argument(
        "--max-seeds", type=positive_int, metavar="N",
        help="two-stage design: where the pairs of the --seeds (the first stage) are too noisy for the "
        "targets (±3 points over all sizes, ±6 per size), train the seeds after them that Stein's rule "
        "asks for, up to N seeds in all, and give two-stage intervals, which keep their 95 %% however "
        "noisy the first stage came out (default: 24; --quick and --backbones K: none added; "
        "N no more than the --seeds: a fixed design)",
    )  # fmt: skip
    parser.add_argument(
        "--gumbel-seeds", type=positive_int, metavar="N",
        help="the first N seeds also train gumbel_softmax at the largest size, for direct - gumbel_softmax (default: none; --quick: all seeds, every size)",
    )  # fmt: skip
    parser.add_argument(
        "--sizes", type=positive_int, nargs="+", metavar="N",
        help="training clips per class (default: 4 30; --quick: 4 12)",
    )  # fmt: skip
    parser.add_argument(
        "--iters", type=positive_int, metavar="N", help="fine-tuning iterations per run (default: the tiny-finetune preset's 72; --quick: 16)"
    )
    parser.add_argument("--lr", type=float, metavar="LR", help="fine-tuning SGD learning rate (default: 0.01)")
    parser.add_argument(
        "--no-pretrain", action="store_true", help="train every arm from scratch instead of the pre-trained backbone"
    )
    parser.add_argument(
        "--pretrain-seed", type=int, metavar="SEED",
        help="seed of the backbone's pre-training (default: 12345). Every interval is conditional on "
        "that backbone; another seed, into another --out, repeats the demo on another one",
    )  # fmt: skip
    parser.add_argument(
        "--backbones", type=positive_int, default=1, metavar="K",
        help="repeat the plan on K pre-trained backbones (the first --pretrain-seed's, then seeds 1, 2, ...), "
        "each in its own folder beside --out (DIR-backbone1, ...; DIR's data shared by hard links) with its "
        "own report, and add to DIR's "
        "report the interval over the K backbones, which covers the pre-training too (default: 1; "
        "finished runs and backbones are reused)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=positive_int, metavar="N",
        help="torch threads for every run (default: all cores, or fewer for a run that starts while "
        "other processes hold cores). A run's numbers depend on its thread count: give one to "
        "reproduce them on the same CPU",
    )  # fmt: skip
    parser.add_argument("--no-figure", action="store_true", help="skip the Grad-CAM++ figure")
    add_progress_argument(parser)
    add_deprecated_alias(parser, "--quiet", "--no-progress", "no_progress", const=True)


def run(args: argparse.Namespace) -> int:
    from gaze_attention.demo import run_demo
    from gaze_attention.demo.plan import GUMBEL_ARM

    overrides = {}
    if args.seeds:
        overrides["seeds"] = tuple(args.seeds)
    if args.sizes:
        overrides["sizes"] = tuple(args.sizes)
    if args.gumbel_seeds and not args.quick:  # --quick trains gumbel_softmax everywhere already
        overrides["largest_only"] = (GUMBEL_ARM,)
        overrides["largest_only_seeds"] = args.gumbel_seeds
    if args.no_pretrain:
        overrides["pretrain"] = False
    if args.pretrain_seed is not None:
        if args.no_pretrain:
            return error("--pretrain-seed seeds the backbone's pre-training, which --no-pretrain leaves out: give one of them")
        overrides["pretrain_seed"] = args.pretrain_seed
    if args.backbones > 1:
        if args.no_pretrain:
            return error("--backbones repeats the plan on other pre-trained backbones, which --no-pretrain leaves out")
        overrides["backbones"] = args.backbones
    if args.max_seeds is not None:
        if args.quick:
            return error("--max-seeds adds seeds for the targets' power, which --quick does not aim at: give one of them")
        overrides["max_seeds"] = args.max_seeds
    if args.iters:
        overrides["iters"] = args.iters
    if args.lr:
        overrides["lr"] = args.lr
    if args.no_figure:
        overrides["figure"] = False
    if args.threads:
        overrides["threads"] = args.threads
    command = (
        "gaze-attention " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if sys.argv[1:]
        else "gaze-attention demo"
    )
    try:
        result = run_demo(args.out, quick=args.quick, progress=not args.no_progress, command=command, **overrides)
    except ValueError as exc:  # e.g. --out holds a demo made with other data options
        return error(str(exc))
    print(result.report.read_text())
    print(f"report: {result.report}")
    return 0

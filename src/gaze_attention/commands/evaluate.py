"""Evaluate a checkpoint on a split of prepared data (clip accuracy, as in the paper).

Non-overlapping windows of the model's frame count over each clip (--sparse: at most 10
evenly spaced), centre crop, logits averaged over the windows. CKPT is one of our checkpoint
folders, a file inside one, or a run folder (its best checkpoint, else its last); or give the
authors' files with --reference-prefix PATH/i3d_iga_best1 (_base.pt, _gaze.pt, _attn.pt).
Prints the metrics, writes them as JSON with --json and saves a confusion-matrix PNG.
Headline mean class accuracy: mean recall over the classes present in the split; the
reference's convention (absent classes count 0) is reported as mean_class_accuracy_all.
Runs under torchrun too (every clip counted once).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gaze_attention.commands._args import add_inference_arguments
from gaze_attention.constants import EVAL_GAZE_MODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="prepared data folder")
    parser.add_argument("--split", type=int, default=1, help="split number (test_splitN.txt); default 1")
    parser.add_argument("--part", choices=("test", "train"), default="test", help="split list to evaluate")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="CKPT", help="checkpoint folder/file or run folder")
    src.add_argument(
        "--reference-prefix", metavar="PREFIX", help="authors' files PREFIX_base.pt, _gaze.pt, _attn.pt"
    )
    parser.add_argument(
        "--preset", default="paper", help="model preset of --reference-prefix (default paper)"
    )
    parser.add_argument(
        "--model-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model field of --reference-prefix differing from the preset, e.g. width=0.5 (repeatable)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dense", dest="sparse", action="store_false", help="all windows (default)")
    mode.add_argument("--sparse", dest="sparse", action="store_true", help="at most 10 windows per clip")
    parser.set_defaults(sparse=False)
    parser.add_argument(
        "--gaze-mode",
        choices=EVAL_GAZE_MODES,
        default=None,
        help="gaze the attention head sees: sample (reference, default), argmax, expected, none "
        "(default none for models trained without gaze)",
    )
    add_inference_arguments(parser)
    parser.add_argument("--workers", type=int, default=2, help="clip-decoding worker processes")
    parser.add_argument("--max-clips", type=int, default=None, help="evaluate an evenly spaced subset")
    parser.add_argument("--seed", type=int, default=0, help="seed of the gaze samples")
    parser.add_argument("--json", metavar="FILE", help="write all metrics (and per-clip results) here")
    parser.add_argument(
        "--confusion", metavar="PNG", help="confusion-matrix image (default: beside --json, else ./)"
    )
    parser.add_argument("--no-progress", action="store_true")


def _model_overrides(items: list[str]) -> dict[str, object]:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--model-set {item!r} is not KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from gaze_attention.data import PreparedData
    from gaze_attention.engine.checkpoint import (
        CheckpointError,
        load_model,
        load_reference_model,
        read_state,
        resolve_checkpoint,
    )
    from gaze_attention.engine.distributed import init_distributed, shutdown
    from gaze_attention.engine.evaluate import evaluate
    from gaze_attention.engine.metrics import format_summary, save_confusion_png
    from gaze_attention.engine.train import eval_gaze_mode
    from gaze_attention.models import CheckpointMismatchError

    info = init_distributed(args.device)
    try:
        data = PreparedData(args.data)
        source: dict[str, object]
        if args.checkpoint:
            try:
                folder = resolve_checkpoint(args.checkpoint)
                model, cfg, names = load_model(folder, device=info.device)
            except CheckpointError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            if names != data.classes:
                print(
                    f"error: the checkpoint's {len(names)} classes differ from the {data.num_classes} "
                    f"actions of {args.data}",
                    file=sys.stderr,
                )
                return 2
            gaze_mode = args.gaze_mode or eval_gaze_mode(cfg)
            source = {"checkpoint": str(folder), "iteration": read_state(folder)["iteration"]}
        else:
            try:
                model = load_reference_model(
                    args.reference_prefix,
                    data.num_classes,
                    preset=args.preset,
                    device=info.device,
                    **_model_overrides(args.model_set),
                )
            except (FileNotFoundError, ValueError, TypeError, CheckpointMismatchError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            gaze_mode = args.gaze_mode or "sample"
            source = {"reference_prefix": args.reference_prefix, "preset": args.preset}
        confusion = args.confusion
        if confusion is None:
            mode = "sparse" if args.sparse else "dense"
            confusion = (
                str(Path(args.json).with_suffix("")) + "_confusion.png"
                if args.json
                else f"confusion_split{args.split}_{mode}.png"
            )
        channels_last = info.device.type == "cpu" and args.precision != "fp32"
        if channels_last:  # the fast layout for bf16 Conv3d on CPU
            model.to(memory_format=torch.channels_last_3d)
        metrics = evaluate(
            model,
            data,
            args.split,
            part=args.part,
            sparse=args.sparse,
            gaze_mode=gaze_mode,
            batch_size=args.batch_size,
            precision=args.precision,
            channels_last=channels_last,
            device=info.device,
            max_clips=args.max_clips,
            workers=args.workers,
            seed=args.seed,
            dist_info=info,
            progress=not args.no_progress,
        )
        if info.is_main:
            metrics = {**source, "data": args.data, "split": args.split, "part": args.part, **metrics}
            print(format_summary(metrics))
            if args.json:
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                with open(args.json, "w", encoding="utf-8") as fh:
                    json.dump(metrics, fh, indent=1)
                print(f"metrics: {args.json}")
            Path(confusion).parent.mkdir(parents=True, exist_ok=True)
            save_confusion_png(
                np.asarray(metrics["confusion_matrix"]), confusion, data.classes,
                title=f"mean class accuracy {100 * metrics['mean_class_accuracy']:.1f}%",
            )  # fmt: skip
            print(f"confusion matrix: {confusion}")
        return 0
    finally:
        shutdown(info)

"""Evaluate a checkpoint on a split of prepared data (clip accuracy, as in the paper).

Non-overlapping windows of the model's frame count over each clip (--sparse: at most 10
evenly spaced), centre crop, logits averaged over the windows. CKPT is one of our checkpoint
folders, a file inside one, or a run folder (its best checkpoint, else its last); or give the
authors' files with --reference-prefix PATH/i3d_iga_best1 (_base.pt, _gaze.pt, _attn.pt).
Prints the metrics, writes them as JSON with --json PATH and saves a confusion-matrix PNG.
Headline mean class accuracy: mean recall over the classes present in the split; the
reference's convention (absent classes count 0) is reported as mean_class_accuracy_all.
Runs under torchrun too (every clip counted once).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gaze_attention.commands._args import (
    add_gaze_mode_argument,
    add_inference_arguments,
    add_json_argument,
    add_model_source_arguments,
    add_progress_argument,
    add_windows_arguments,
    add_workers_argument,
    error,
    model_overrides,
    positive_int,
    resolve_gaze_mode,
)
from gaze_attention.fsio import check_writable, dumps_json, write_json

EXAMPLES = """examples:
  gaze-attention evaluate --data prepared --split 1 --checkpoint runs/paper --json eval.json
  gaze-attention evaluate --data demo_out/prepared --checkpoint demo_out/runs/direct-n30-s0 --gaze-mode argmax
  gaze-attention evaluate --data prepared --reference-prefix weights/i3d_iga_best1 --sparse
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="prepared data folder, the output of `prepare` (required)")  # fmt: skip
    parser.add_argument("--split", type=positive_int, default=1, metavar="N",
                        help="split number (test_splitN.txt)")  # fmt: skip
    parser.add_argument("--part", choices=("test", "train"), default="test", help="split list to evaluate")
    add_model_source_arguments(parser)
    add_windows_arguments(parser)
    add_gaze_mode_argument(parser)
    add_inference_arguments(parser)
    add_workers_argument(parser, 2, "DataLoader processes decoding clips")
    parser.add_argument("--max-clips", type=positive_int, default=None, metavar="N",
                        help="evaluate an evenly spaced subset of N clips (default: all)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, metavar="SEED", help="seed of the gaze samples")
    add_json_argument(parser, "all metrics and the per-clip results")
    parser.add_argument(
        "--confusion", metavar="PNG",
        help="confusion-matrix image (default: beside --json as NAME_confusion.png, else "
             "./confusion_splitN_MODE.png)",
    )  # fmt: skip
    add_progress_argument(parser)


_model_overrides = model_overrides  # the name earlier code imported


def _write_json(path: Path, obj: dict) -> None:
    """Atomically (fsio): a full disk or a kill never leaves a half-written metrics file, a link
    at PATH is replaced, not written through, and an undefined metric (NaN) is null."""
    write_json(path, obj)


def _write_confusion(path: str, metrics: dict, names: list[str]) -> None:
    """The optional confusion-matrix PNG; a failure is a warning (the metrics are already out)."""
    import numpy as np

    from gaze_attention.engine.metrics import save_confusion_png

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        title = f"mean class accuracy {100 * metrics['mean_class_accuracy']:.1f}%"
        save_confusion_png(np.asarray(metrics["confusion_matrix"]), path, names, title=title)
    except OSError as exc:
        from gaze_attention.errors import describe_os_error

        print(f"warning: confusion matrix not written: {describe_os_error(exc)}", file=sys.stderr)
        return
    print(f"confusion matrix: {path}")


def run(args: argparse.Namespace) -> int:
    from gaze_attention.data import PreparedData
    from gaze_attention.engine.checkpoint import load_reference_model, load_run, resolve_checkpoint
    from gaze_attention.engine.distributed import init_distributed, shutdown
    from gaze_attention.engine.evaluate import evaluate
    from gaze_attention.engine.inference import use_cpu_layout
    from gaze_attention.engine.metrics import format_summary
    from gaze_attention.engine.precision import resolve_for_ranks
    from gaze_attention.engine.train import eval_gaze_mode

    if not Path(args.data).is_dir():
        return error(f"--data {args.data}: no such folder (give the output folder of `gaze-attention prepare`)")
    if args.checkpoint and not Path(args.checkpoint).exists():
        return error(f"--checkpoint {args.checkpoint}: no such file or folder (a run folder or checkpoint)")
    # Before any work: the metrics would be lost after the whole evaluation. (The confusion PNG
    # is optional: its failure stays a warning once the metrics are out.)
    problem = check_writable(args.json, "--json") if args.json and args.json != "-" else None
    if problem:
        return error(problem)
    try:
        data = PreparedData(args.data)
    except (FileNotFoundError, ValueError) as exc:
        return error(f"--data: {exc}")
    info = init_distributed(args.device)
    try:
        choice = resolve_for_ranks(args.precision, info.device, info)
        args.precision = choice.precision
        if info.is_main:
            print(choice, file=sys.stderr)
        source: dict[str, object]
        if args.checkpoint:
            folder = resolve_checkpoint(args.checkpoint)
            model, cfg, names, state = load_run(folder, device=info.device)
            if names != data.classes:
                return error(
                    f"the checkpoint's {len(names)} classes differ from the {data.num_classes} actions of {args.data}"
                )
            gaze_mode = resolve_gaze_mode(args.gaze_mode, eval_gaze_mode(cfg))
            source = {"checkpoint": str(folder), "iteration": state.iteration}
        else:
            model = load_reference_model(
                args.reference_prefix, data.num_classes, preset=args.preset, device=info.device,
                **_model_overrides(args.model_set),
            )  # fmt: skip
            gaze_mode = resolve_gaze_mode(args.gaze_mode, "sample")
            source = {"reference_prefix": args.reference_prefix, "preset": args.preset}
        confusion = args.confusion
        if confusion is None:
            mode = "sparse" if args.sparse else "dense"
            confusion = (
                str(Path(args.json).with_suffix("")) + "_confusion.png"
                if args.json and args.json != "-"
                else f"confusion_split{args.split}_{mode}.png"
            )
        channels_last = use_cpu_layout(model, info.device)
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
            if not metrics.get("num_clips"):
                print(f"warning: no clips in {args.part}_split{args.split}.txt of {args.data}: the accuracies "
                      "are undefined (null in the JSON)", file=sys.stderr)
            metrics = {**source, "data": args.data, "split": args.split, "part": args.part, **metrics}
            to_stdout = args.json == "-"
            # with --json - the JSON alone goes to stdout, so that it can be piped
            print(format_summary(metrics), file=sys.stderr if to_stdout else sys.stdout)
            if to_stdout:
                print(dumps_json(metrics))
            elif args.json:
                _write_json(Path(args.json), metrics)
                print(f"metrics: {args.json}")
            _write_confusion(confusion, metrics, data.classes)
        return 0
    finally:
        shutdown(info)

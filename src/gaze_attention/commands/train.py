"""Train a gaze-attention model on prepared data (one process, or DDP under torchrun).

A training preset (`paper`, `tiny`, or a YAML file) with overrides: the common flags below
and `--set section.key=value` for anything else (e.g. `--set estimator.eps0=100`). The
resolved config is written to OUT/config.yaml and into every checkpoint. --batch-size is the
global batch, divided over the processes of a torchrun launch:

  gaze-attention train --data prepared/ --split 1 --out runs/paper
  torchrun --nproc_per_node=4 -m gaze_attention train --data prepared/ --out runs/paper
  gaze-attention train --resume runs/paper            # continue where it stopped

Ctrl-C (SIGINT) or SIGTERM saves a checkpoint and exits with status 130 / 143; a non-finite
loss stops with status 3, leaving the last checkpoint intact.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gaze_attention.constants import ESTIMATORS, PRECISIONS

# flag dest -> config key
_FLAGS = {
    "data": "data.root",
    "split": "data.split",
    "out": "run.out",
    "estimator": "estimator.name",
    "iters": "optim.iters",
    "batch_size": "optim.batch_size",
    "lr": "optim.lr",
    "seed": "run.seed",
    "precision": "run.precision",
    "workers": "data.workers",
    "val_every": "run.val_every",
    "max_train_per_class": "data.max_train_per_class",
    "device": "run.device",
    "init_reference": "init.reference_prefix",
    "init_base": "init.base",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="prepared data folder (output of `prepare`)")
    parser.add_argument("--split", type=int, help="split number (train_splitN.txt); default 1")
    parser.add_argument("--out", help="run folder for config, logs and checkpoints")
    parser.add_argument(
        "--preset",
        default=None,
        help="training preset: paper (default), tiny, or a YAML file; with --resume the run's own config",
    )
    parser.add_argument("--estimator", choices=ESTIMATORS)
    parser.add_argument("--iters", type=int, help="total training iterations")
    parser.add_argument("--batch-size", type=int, help="global batch size (divided over processes)")
    parser.add_argument("--lr", type=float, help="initial learning rate")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--precision", choices=PRECISIONS, help="autocast precision")
    parser.add_argument("--workers", type=int, help="DataLoader workers per process (0: main process)")
    parser.add_argument(
        "--val-every", type=int, help="sparse validation on the test split every N iterations"
    )
    parser.add_argument("--max-train-per-class", type=int, help="subsample the train split per class")
    parser.add_argument("--device", help="auto (default: cuda if available), cpu, cuda, cuda:N")
    parser.add_argument(
        "--init-reference",
        metavar="PREFIX",
        help="authors' files PREFIX_{base,gaze,attn}.pt as initialisation",
    )
    parser.add_argument("--init-base", metavar="PT", help="two-stream backbone init, e.g. i3d_both_base.pt")
    parser.add_argument("--resume", metavar="PATH", help="run folder or checkpoint to continue from")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="any config key, e.g. optim.milestones=[4000,7000] or run.channels_last=false (repeatable)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def _run_dir_of(checkpoint: Path) -> Path:
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def build_config(args: argparse.Namespace):
    """The resolved TrainConfig of a command line."""
    from gaze_attention.engine.checkpoint import read_state, resolve_checkpoint
    from gaze_attention.engine.config import TrainConfig, load_config

    overrides: dict[str, object] = {}
    for dest, key in _FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides[key] = value
    if args.resume:
        ckpt = resolve_checkpoint(args.resume, prefer="last")
        if args.preset is None:
            base = TrainConfig.from_dict(read_state(ckpt)["config"])
        else:
            base = load_config(args.preset)
        overrides["run.resume"] = str(ckpt)
        overrides.setdefault("run.out", str(_run_dir_of(ckpt)))
    else:
        base = load_config(args.preset or "paper")
    cfg = base.with_overrides(overrides).with_overrides(args.overrides).validate()
    missing = [k for k, v in (("--data", cfg.data.root), ("--out", cfg.run.out)) if v is None]
    if missing:
        raise ValueError(f"missing {' and '.join(missing)}")
    return cfg


def run(args: argparse.Namespace) -> int:
    import yaml

    from gaze_attention.engine.checkpoint import CheckpointError
    from gaze_attention.engine.train import NonFiniteLossError, train

    try:
        cfg = build_config(args)
    except (ValueError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    try:
        result = train(cfg, progress=not args.no_progress)
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.interrupted:
        return 143 if result.stop_signal == "SIGTERM" else 130
    if result.rank == 0 and result.last_checkpoint is not None:
        print(f"done: {result.iteration} iterations; last checkpoint {result.last_checkpoint}")
        if result.best_checkpoint is not None:
            print(f"best checkpoint {result.best_checkpoint}")
    return 0

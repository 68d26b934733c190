"""Train a gaze-attention model on prepared data (one process, or DDP under torchrun).

A training preset (`paper`, `tiny`, or a YAML file) with overrides: the common flags below
and `--set section.key=value` for anything else (e.g. `--set estimator.eps0=100`). The
resolved config is written to OUT/config.yaml and into every checkpoint. --batch-size is the
global batch, divided over the processes of a torchrun launch
(`torchrun --nproc_per_node=4 -m gaze_attention train ...`). RUN_DIR/train.log keeps what was
printed, metrics.csv the loss terms; `--resume RUN_DIR` continues where a run stopped.
Ctrl-C (SIGINT) or SIGTERM saves a checkpoint and exits with status 130 / 143; a non-finite
loss stops with status 3, leaving the last checkpoint intact.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gaze_attention.commands._args import (
    add_device_argument,
    add_precision_argument,
    add_progress_argument,
    add_workers_argument,
    error,
    positive_int,
)
from gaze_attention.constants import ESTIMATORS, OPTIMIZERS

# flag dest -> config key
_FLAGS = {
    "data": "data.root",
    "split": "data.split",
    "out": "run.out",
    "estimator": "estimator.name",
    "iters": "optim.iters",
    "batch_size": "optim.batch_size",
    "lr": "optim.lr",
    "optimizer": "optim.optimizer",
    "seed": "run.seed",
    "precision": "run.precision",
    "workers": "data.workers",
    "val_every": "run.val_every",
    "max_train_per_class": "data.max_train_per_class",
    "device": "run.device",
    "init_reference": "init.reference_prefix",
    "init_base": "init.base",
    "kinetics": "init.kinetics",
    "backbone": "init.backbone",
}


EXAMPLES = """examples:
  gaze-attention train --data prepared --split 1 --out runs/paper             # the paper's setting
  gaze-attention train --data demo_out/prepared --out runs/tiny --preset tiny --iters 300 --workers 0
  gaze-attention train --preset tiny --print-config                            # show a preset's values
"""


def _preset_values() -> dict[str, dict[str, object]]:
    """{flag dest: {preset: value}} of the shipped presets, for --help (YAML only: no torch import)."""
    import yaml

    folder = Path(__file__).resolve().parent.parent / "presets"
    out: dict[str, dict[str, object]] = {}
    # The paper's first, then the other I3D presets, then the ViT ones.
    names = sorted((p.stem for p in folder.glob("*.yaml")),
                   key=lambda n: (n != "paper", n.startswith(("vit-", "timesformer-")), n))
    for name in names:
        try:
            doc = yaml.safe_load((folder / f"{name}.yaml").read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        for dest, key in _FLAGS.items():
            section, _, field = key.partition(".")
            value = (doc.get(section) or {}).get(field)
            if value is not None:
                out.setdefault(dest, {})[name] = value
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    presets = _preset_values()

    def dflt(dest: str, otherwise: str) -> str:
        """The presets' values, e.g. "from the preset: paper 18000, tiny 600"."""
        values = presets.get(dest)
        if not values:
            return otherwise
        return "from the preset: " + ", ".join(f"{p} {v}" for p, v in values.items())

    def d(dest: str, otherwise: str) -> str:
        return f" (default: {dflt(dest, otherwise)})"

    parser.add_argument("--data", metavar="DIR",
                        help="prepared data folder, the output of `prepare` (required unless --resume or "
                             "--print-config; default: none)")  # fmt: skip
    parser.add_argument("--split", type=positive_int, metavar="N",
                        help="split number (train_splitN.txt)" + d("split", "1"))  # fmt: skip
    parser.add_argument("--out", metavar="DIR",
                        help="run folder for config, logs and checkpoints (required unless --resume or "
                             "--print-config; default: none)")  # fmt: skip
    parser.add_argument(
        "--preset",
        default=None,
        metavar="NAME|YAML",
        help="training preset: paper, tiny, tiny-finetune, or a YAML file of the same shape (default: "
        "paper; with --resume the run's own config)",
    )
    parser.add_argument("--estimator", choices=ESTIMATORS,
                        help="how the gaze distribution is trained: direct optimization through argmax, "
                             "Gumbel-Softmax, straight-through, or none (no gaze)"
                             + d("estimator", "direct"))  # fmt: skip
    parser.add_argument("--iters", type=positive_int, metavar="N",
                        help="total training iterations" + d("iters", "18000"))  # fmt: skip
    parser.add_argument("--batch-size", type=positive_int, metavar="N",
                        help="global batch size in clips, divided over torchrun processes"
                             + d("batch_size", "8"))  # fmt: skip
    parser.add_argument("--lr", type=float, metavar="LR",
                        help="initial learning rate of optim.optimizer (x0.1 at optim.milestones)" + d("lr", "0.032"))
    parser.add_argument("--optimizer", choices=OPTIMIZERS,
                        help="sgd with momentum (the paper) or adamw (beta1 = optim.momentum)"
                             + d("optimizer", "sgd"))  # fmt: skip
    parser.add_argument("--seed", type=int, metavar="SEED",
                        help="seed of data order, augmentation, Gumbel noise and dropout" + d("seed", "0"))
    add_precision_argument(parser, default=None, default_text=dflt("precision", "auto"))
    add_workers_argument(parser, None, "DataLoader processes per training process", dflt("workers", "2"))
    parser.add_argument("--val-every", type=positive_int, metavar="N",
                        help="sparse validation on the test split every N iterations (default: none)")
    parser.add_argument("--max-train-per-class", type=positive_int, metavar="N",
                        help="keep at most N training clips per class, a seeded choice (default: all)")
    add_device_argument(parser, default=None, default_text="auto")
    parser.add_argument(
        "--init-reference",
        metavar="PREFIX",
        help="initialise from the authors' files PREFIX_{base,gaze,attn}.pt (default: none)",
    )
    parser.add_argument("--init-base", metavar="PT",
                        help="two-stream backbone initialisation, e.g. i3d_both_base.pt (default: none)")
    parser.add_argument(
        "--kinetics",
        metavar="PATH",
        help="Kinetics backbone: i3d_both_base.pt, or a folder with it or rgb_imagenet.pt + flow_imagenet.pt "
        "(required by the paper preset unless --from-scratch; default: none)",
    )
    parser.add_argument(
        "--backbone",
        metavar="PATH",
        help="published ViT backbone weights: a Hugging Face folder (config.json + model.safetensors), or a "
        "VideoMAE .pth (required by the vit-b and timesformer-b presets unless --from-scratch; default: none)",
    )
    parser.add_argument(
        "--from-scratch", action="store_true",
        help="train without the pre-trained backbone the paper, vit-b and timesformer-b presets require",
    )
    parser.add_argument("--resume", metavar="PATH",
                        help="run folder or checkpoint to continue from (default: start afresh)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in a --out that holds an earlier run, deleting its checkpoints and logs "
        "(without it, a non-empty --out is refused)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="any config key, e.g. optim.milestones=[4000,7000] or run.channels_last=false "
             "(repeatable; default: none)",
    )  # fmt: skip
    add_progress_argument(parser)
    parser.add_argument(
        "--print-config", action="store_true",
        help="print the resolved config (YAML) and exit; needs no --data or --out",
    )  # fmt: skip


def _run_dir_of(checkpoint: Path) -> Path:
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def build_config(args: argparse.Namespace, require_paths: bool = True):
    """The resolved TrainConfig of a command line (`require_paths`: --data and --out must be set)."""
    from gaze_attention.engine.checkpoint import read_state, resolve_resume
    from gaze_attention.engine.config import TrainConfig, load_config

    overrides: dict[str, object] = {}
    for dest, key in _FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides[key] = value
    if args.resume:
        ckpt = resolve_resume(args.resume)
        if args.preset is None:
            base = TrainConfig.from_dict(read_state(ckpt)["config"])
        else:
            base = load_config(args.preset)
        overrides["run.resume"] = str(ckpt)
        overrides.setdefault("run.out", str(_run_dir_of(ckpt)))
    else:
        base = load_config(args.preset or "paper")
    if getattr(args, "from_scratch", False):
        overrides["init.require_backbone"] = False
    if _stretch_milestones(args, overrides):
        from gaze_attention.engine.schedules import scaled_milestones

        # Said at the start of the run, in its "schedule:" line and train.log.
        scaled = scaled_milestones(base, int(overrides["optim.iters"]))
        overrides["optim.milestones"] = list(scaled)
    cfg = base.with_overrides(overrides).with_overrides(args.overrides).validate()
    missing = [k for k, v in (("--data", cfg.data.root), ("--out", cfg.run.out)) if v is None]
    if missing and require_paths:
        raise ValueError(f"missing {' and '.join(missing)}")
    return cfg


def _stretch_milestones(args: argparse.Namespace, overrides: dict[str, object]) -> bool:
    """--iters on a fresh run whose milestones the user did not set: keep the preset's shape."""
    if args.resume or "optim.iters" not in overrides:
        return False
    keys = [item.partition("=")[0].strip() for item in (args.overrides or [])]
    return not any(k in ("optim.milestones", "milestones") for k in keys)


def run(args: argparse.Namespace) -> int:
    import yaml

    from gaze_attention.engine.init import check_init
    from gaze_attention.engine.train import train

    if args.resume and not Path(args.resume).exists():
        return error(f"--resume {args.resume}: no such run folder or checkpoint")
    cfg = build_config(args, require_paths=not args.print_config)
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    check_init(cfg)  # first: a missing Kinetics backbone is the first thing a paper run needs
    if not Path(cfg.data.root).is_dir():
        return error(f"--data {cfg.data.root}: no such folder (give the output folder of `gaze-attention prepare`)")
    result = train(cfg, progress=not args.no_progress, overwrite=args.overwrite)
    if result.interrupted:
        return 143 if result.stop_signal == "SIGTERM" else 130
    if result.rank == 0 and result.last_checkpoint is not None:
        print(f"done: {result.iteration} iterations; last checkpoint {result.last_checkpoint}")
        if result.best_checkpoint is not None:
            print(f"best checkpoint {result.best_checkpoint}")
    return 0

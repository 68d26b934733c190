"""Training loop of Min & Corso (WACV 2021): CE + KL to recorded gaze + the estimator term.

One process, or DistributedDataParallel under torchrun (gloo on CPU, nccl on GPUs). The
global batch is divided over the ranks; each rank draws a distinct shard of every epoch. Only
rank 0 writes the run folder. The data order, the augmentations and the per-rank RNG streams
are functions of (seed, rank, iteration) plus the saved RNG states, so a resumed run
continues exactly where it stopped. SIGINT / SIGTERM finish the current step, save a
checkpoint and return; a non-finite loss or gradient raises `NonFiniteLossError` before the
step is applied, leaving the last checkpoint as it was.

Reading order: `train` (process group, run-folder lock) -> `_train` (setup, then the loop) ->
the pieces the loop calls over one `RunState`: `train_step`, `_LogWindow`, `validate`,
`save_checkpoint` (with `checkpoint_state`).
"""

from __future__ import annotations

import csv
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gaze_attention.engine.checkpoint import (
    CheckpointError,
    capture_rng,
    checkpoint_name,
    clean_partial,
    list_checkpoints,
    load_optimizer,
    load_weights,
    prune,
    read_state,
    resolve_checkpoint,
    resolve_resume,
    restore_rng,
    warn_world_change,
    write_checkpoint,
)
from gaze_attention.engine.config import TrainConfig, save_config
from gaze_attention.engine.distributed import (
    DistInfo,
    SeededDraws,
    ShardedInfiniteSampler,
    all_gather_objects,
    any_flag,
    barrier,
    init_distributed,
    shutdown,
)
from gaze_attention.engine.evaluate import autocast_context, evaluate
from gaze_attention.engine.init import check_init, init_files
from gaze_attention.engine.precision import resolve_for_ranks
from gaze_attention.engine.runlock import claim_for_ranks
from gaze_attention.estimators import eps_schedule
from gaze_attention.losses import TRAIN_GAZE_MODE, training_losses
from gaze_attention.models import GazeAttentionNet, build_model, load_reference_checkpoint

SCALARS = ("loss", "ce", "kl", "do", "flip", "eps", "lr", "grad_norm", "it_per_s")


class NonFiniteLossError(RuntimeError):
    """Training stopped because a loss or gradient was NaN or infinite."""


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    iteration: int  # iterations completed
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    history: list[dict[str, float]]  # one row per `log_every` iterations (the CSV's rows)
    validation: list[dict[str, Any]] = field(default_factory=list)  # iteration + summary metrics
    interrupted: bool = False  # stopped by SIGINT / SIGTERM (a checkpoint was saved)
    stop_signal: str = ""  # "SIGINT" or "SIGTERM" when interrupted
    class_names: list[str] = field(default_factory=list)
    model: nn.Module | None = None  # the trained (unwrapped) model, on its training device
    seen: list[int] = field(default_factory=list)  # training-set indices this rank drew, in order
    rank: int = 0  # this process's rank (only rank 0 wrote files)


def make_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """`optim.optimizer`: SGD with momentum (the paper) or AdamW (beta1 = optim.momentum)."""
    # foreach: the per-tensor path (the CPU default) is ~25x slower on channels_last_3d
    # weights: 2.2 s against 0.08 s per step for the paper network.
    o = cfg.optim
    if o.optimizer == "adamw":
        return torch.optim.AdamW(
            model.parameters(), lr=lr, betas=(o.momentum, 0.999), weight_decay=o.weight_decay, foreach=True
        )
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=o.momentum, weight_decay=o.weight_decay, foreach=True)


def lr_at(cfg: TrainConfig, iteration: int) -> float:
    """Step schedule: lr * gamma ** (number of milestones <= iteration), after a linear warm-up."""
    o = cfg.optim
    lr = o.lr * o.gamma ** sum(iteration >= m for m in o.milestones)
    if iteration < o.warmup:
        lr *= (iteration + 1) / o.warmup
    return lr


def eps_rate(cfg: TrainConfig) -> float:
    """The eps decay rate: the configured one, or the one reaching eps_min at `eps_end` of the run."""
    e = cfg.estimator
    if e.eps_end is None:
        return e.eps_rate
    span = max(1.0, e.eps_end * cfg.optim.iters)
    return math.log(max(e.eps0 / e.eps_min, 1.0)) / span


def eps_at(cfg: TrainConfig, iteration: int) -> float:
    e = cfg.estimator
    return eps_schedule(iteration, e.eps0, eps_rate(cfg), e.eps_every, e.eps_min)


def eval_gaze_mode(cfg: TrainConfig) -> str:
    """Gaze mode matching training: models trained without gaze see uniform gaze at test time."""
    return "none" if cfg.estimator.name == "none" else "sample"


def subsample_per_class(records: list[Any], per_class: int | None, seed: int) -> list[Any]:
    """At most `per_class` records of each label, chosen by a seeded shuffle; original order kept."""
    if per_class is None:
        return list(records)
    rng = np.random.default_rng(seed)
    by_label: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_label.setdefault(int(r.label), []).append(i)
    keep: set[int] = set()
    for label in sorted(by_label):
        idx = by_label[label]
        keep.update(idx[j] for j in rng.permutation(len(idx))[:per_class])
    return [r for i, r in enumerate(records) if i in keep]


def _worker_init(worker_id: int) -> None:
    from gaze_attention.data import seed_worker

    seed_worker(worker_id)  # augmentation seeds come per draw anyway; this seeds numpy and python
    # Ctrl-C reaches the whole process group; workers must survive until the main process saved.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _StopRequest:
    """SIGINT / SIGTERM set a flag (the loop saves and returns); a second signal interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, h in self._old.items():
                signal.signal(s, h)


class _Logger:
    """CSV + TensorBoard scalars + a text log (train.log) on rank 0; nothing elsewhere.

    train.log keeps what a user would have seen (config summary, a row every log_every
    iterations, validations, warnings, the final checkpoint) for runs whose terminal is gone;
    a resumed run appends to it.
    """

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, start: int) -> None:
        self.enabled = enabled
        self.tb = None
        self.csv_path = run_dir / "metrics.csv"
        self.val_path = run_dir / "validation.csv"
        self.log_path = run_dir / "train.log"
        self._showwarning = None
        if not enabled:
            return
        _truncate_csv(self.csv_path, start)
        _truncate_csv(self.val_path, start)
        if start == 0:
            self.log_path.unlink(missing_ok=True)
        # Warnings are shown as usual and also kept in the log.
        self._showwarning = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            self.text(f"warning: {category.__name__}: {message}")
            self._showwarning(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start if start > 0 else None)
            except ImportError as exc:  # tensorboard is a dependency; keep training if it is broken
                warnings.warn(f"TensorBoard logging disabled: {exc}", stacklevel=2)

    def row(self, path: Path, row: dict[str, Any]) -> None:
        new = not path.is_file() or path.stat().st_size == 0
        with open(path, "a", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def text(self, line: str) -> None:
        if not self.enabled:
            return
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def train(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.row(self.csv_path, row)
        self.text(
            f"iteration {int(row['iteration'])}: loss {row['loss']:.4f} ce {row['ce']:.4f} "
            f"kl {row['kl']:.4f} do {row['do']:.4f} flip {row.get('flip', math.nan):.3g} eps {row['eps']:.4g} "
            f"lr {row['lr']:.4g} "
            f"grad_norm {row['grad_norm']:.3g} {row['it_per_s']:.3g} it/s"
        )
        if self.tb is not None:
            for k in SCALARS:
                if k in row:
                    self.tb.add_scalar(f"train/{k}", row[k], int(row["iteration"]))

    def validation(self, iteration: int, m: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.row(self.val_path, {"iteration": iteration, **m})
        shown = ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, int | float) and v is not None)
        self.text(f"validation @ {iteration}: {shown}")
        if self.tb is not None:
            for k, v in m.items():
                if isinstance(v, int | float) and v is not None and math.isfinite(v):
                    self.tb.add_scalar(f"val/{k}", v, iteration)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self._showwarning is not None:
            warnings.showwarning = self._showwarning
            self._showwarning = None


def _truncate_csv(path: Path, start: int) -> None:
    """Keep the rows of iterations <= start (a resumed run rewrites what followed)."""
    if not path.is_file():
        return
    if start == 0:
        path.unlink()
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    keep = [r for r in rows if int(float(r["iteration"])) <= start]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        if keep:
            w = csv.DictWriter(fh, fieldnames=list(keep[0]))
            w.writeheader()
            w.writerows(keep)
    os.replace(tmp, path)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def _num(v: str) -> Any:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f


def _init_weights(model: GazeAttentionNet, cfg: TrainConfig) -> list[str]:
    files = init_files(cfg)
    if not files:
        return []
    return load_reference_checkpoint(
        model, files.get("base"), files.get("gaze"), files.get("attn"), rgb=files.get("rgb"), flow=files.get("flow")
    )


class DivergenceWatch:
    """Says, while a run goes on, when its training cross-entropy climbs far above chance.

    A classifier that has learned nothing sits at ln(C); a window mean well above that (after
    warm-up) means the weights are being pushed into confident wrong answers: almost always a
    learning rate too high for the initialisation. Warns once per climb.
    """

    def __init__(self, num_classes: int, cfg: TrainConfig, margin: float = 1.0) -> None:
        self.chance = math.log(max(num_classes, 2))
        self.limit = self.chance + margin
        self.cfg = cfg
        self.raised = False

    def check(self, row: dict[str, float]) -> str | None:
        it, ce = int(row["iteration"]), float(row["ce"])
        if it <= self.cfg.optim.warmup or not math.isfinite(ce):
            return None
        if ce <= self.chance:
            self.raised = False
            return None
        if self.raised or ce <= self.limit:
            return None
        self.raised = True
        o = self.cfg.optim
        return (
            f"warning: training cross-entropy {ce:.2f} at iteration {it} is far above ln({math.exp(self.chance):.0f})"
            f" = {self.chance:.2f}, the loss of a model that predicts nothing: the run is diverging. "
            f"Likely cause: learning rate {row['lr']:.3g} too high for this initialisation "
            f"(from scratch, lower optim.lr, e.g. lr={o.lr / 4:.3g}, or lengthen optim.warmup, now {o.warmup})."
        )


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code may draw from it
    random.seed(seed)


def train(
    cfg: TrainConfig, progress: bool = True, *, data: Any = None, overwrite: bool = False
) -> TrainResult:
    """Train a model as `cfg` says; returns the run's checkpoints, history and the model.

    data: an already opened `PreparedData` for `cfg.data.root` (saves re-reading the index when
    many runs share one data set). Under torchrun every rank calls this; rank 0 writes.
    The run folder is locked for the run; one that holds files is refused (`RunFolderError`)
    unless `cfg.run.resume` is set or `overwrite` (delete the earlier run's outputs).
    Raises `NonFiniteLossError` when the loss diverges.
    """
    cfg.validate()
    if cfg.run.out is None:
        raise ValueError("run.out (the run folder) is not set")
    check_init(cfg)  # before any data is read: a missing Kinetics backbone is said at once
    info = init_distributed(cfg.run.device)
    try:
        lock = claim_for_ranks(cfg.run.out, info, resume=bool(cfg.run.resume), overwrite=overwrite)
        try:
            return _train(cfg, info, progress, data)
        finally:
            if lock is not None:
                lock.release()
    finally:
        shutdown(info)


def _train(cfg: TrainConfig, info: DistInfo, progress: bool, data: Any) -> TrainResult:
    """Set the run up (data, model, optimizer, resume state, loader, run folder) into a
    `RunState`, then loop: `train_step`, a `_LogWindow` row every `log_every`, `validate` every
    `val_every`, `save_checkpoint` every `checkpoint_every` and at the end."""
    from gaze_attention.data import ClipDataset, PreparedData

    run_dir = Path(cfg.run.out)
    ckpt_dir = run_dir / "checkpoints"
    dev = info.device
    if cfg.optim.batch_size % info.world_size:
        raise ValueError(
            f"optim.batch_size {cfg.optim.batch_size} is the global batch and must divide evenly over "
            f"{info.world_size} processes"
        )
    local_bs = cfg.optim.batch_size // info.world_size
    choice = resolve_for_ranks(cfg.run.precision, dev, info)
    precision = choice.precision  # cfg keeps "auto": a resumed run on other hardware decides anew
    if info.is_main:
        print(choice, flush=True)

    resume_state: dict[str, Any] | None = None
    resume_dir: Path | None = None
    if cfg.run.resume:
        resume_dir = resolve_resume(cfg.run.resume)
        resume_state = read_state(resume_dir)
        if "optimizer" not in resume_state:
            raise CheckpointError(
                f"{resume_dir} holds no optimizer state (a best-* checkpoint?): resume "
                "from a ckpt-* checkpoint or a run folder"
            )
    start = int(resume_state["iteration"]) if resume_state else 0
    _seed_all(cfg.run.seed * 1000 + info.rank)

    if data is None:
        if cfg.data.root is None:
            raise ValueError("data.root (the prepared data folder) is not set")
        data = PreparedData(cfg.data.root)
    model = build_model(cfg.model.preset, num_classes=data.num_classes, **cfg.model.overrides())
    mcfg = model.config
    if resume_state is not None and resume_state["model_config"] != mcfg.to_dict():
        raise CheckpointError(
            f"{resume_dir} was trained with model {resume_state['model_config']}, the config builds "
            f"{mcfg.to_dict()}"
        )
    records = subsample_per_class(
        data.split(cfg.data.split, "train"), cfg.data.max_train_per_class, cfg.run.seed
    )
    # In-memory data (data/memory.py) brings its own dataset class and needs no loader workers.
    dataset = getattr(data, "dataset_class", ClipDataset)(
        data,
        records,
        train=True,
        frames=mcfg.frames,
        crop=mcfg.crop,
        grid=model.grid,
        use_flow=mcfg.use_flow,
        seed=cfg.run.seed,
    )
    val_records = None
    if cfg.run.val_every:
        val_records = data.split(cfg.data.split, "test")

    if resume_state is not None:
        load_weights(model, resume_dir)
    else:
        loaded = _init_weights(model, cfg)
        if loaded and info.is_main:
            print(f"initialised {', '.join(loaded)} from the reference files", flush=True)
    model.to(dev)
    memory = torch.channels_last_3d if cfg.run.channels_last else torch.contiguous_format
    if cfg.run.channels_last:
        model.to(memory_format=torch.channels_last_3d)
        # The classifier's 1x1x1 weight is used as a matrix; channels_last strides on it only
        # make DDP's gradient buckets disagree with the gradient's layout.
        with torch.no_grad():
            w = model.head.fc_f.weight
            w.data = torch.empty(w.shape, dtype=w.dtype, device=w.device).copy_(w.data)  # plain strides
    net: nn.Module = model
    if info.distributed:
        net = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[dev.index] if dev.type == "cuda" else None,
            # Without gaze the gaze head takes no part in the loss.
            find_unused_parameters=cfg.estimator.name == "none",
        )
    optimizer = make_optimizer(model, cfg, lr_at(cfg, start))
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    best_score = -math.inf
    best_ckpt: Path | None = None
    if resume_state is not None:
        load_optimizer(optimizer, resume_dir, resume_state["optimizer"])
        for p, st in optimizer.state.items():
            # Buffers come back contiguous; give them their parameter's layout (channels_last_3d).
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and v.shape == p.shape:
                    st[k] = torch.empty_like(p).copy_(v)
        ranks = resume_state.get("rng", [])
        warn_world_change(len(ranks), info.world_size)
        if info.rank < len(ranks):
            restore_rng(ranks[info.rank], dev)
        if resume_state.get("grad_scaler"):
            scaler.load_state_dict(resume_state["grad_scaler"])
        best_score = resume_state.get("best_score", -math.inf)
        best = list_checkpoints(ckpt_dir, "best")
        best_ckpt = best[-1][1] if best else None

    sampler = ShardedInfiniteSampler(
        len(dataset), rank=info.rank, world_size=info.world_size, seed=cfg.run.seed, start=start * local_bs
    )
    workers = 0 if getattr(data, "in_memory", False) else cfg.data.workers
    loader = torch.utils.data.DataLoader(
        SeededDraws(dataset),
        batch_size=local_bs,
        sampler=sampler,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
        worker_init_fn=_worker_init if workers else None,
        persistent_workers=False,
        prefetch_factor=2 if workers else None,
        generator=torch.Generator(),  # keeps the global RNG (Gumbel noise, dropout) untouched
    )

    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        clean_partial(ckpt_dir)
        save_config(cfg, run_dir / "config.yaml")
    logger = _Logger(run_dir, info.is_main, cfg.run.tensorboard, start)
    history = _read_rows(logger.csv_path) if info.is_main and start else []
    validation = _read_rows(logger.val_path) if info.is_main and start else []
    logger.text(
        (f"resumed from {resume_dir} at iteration {start}; " if start else "")
        + f"{cfg.optim.iters} iterations of {cfg.model.preset} ({mcfg.frames} frames at {mcfg.crop}px, "
        f"width {mcfg.width}), estimator {cfg.estimator.name}, batch {cfg.optim.batch_size} on "
        f"{info.world_size} process(es) ({dev}), lr {cfg.optim.lr} x{cfg.optim.gamma} at "
        f"{list(cfg.optim.milestones)} (warm-up {cfg.optim.warmup}), precision {cfg.run.precision}, seed {cfg.run.seed}; "
        f"data {cfg.data.root} split {cfg.data.split}: {len(records)} training clips of "
        f"{data.num_classes} classes; config {run_dir / 'config.yaml'}"
    )

    rs = RunState(
        cfg=cfg, info=info, dev=dev, precision=precision, memory=memory, model=model, net=net,
        optimizer=optimizer, scaler=scaler, data=data, val_records=val_records, run_dir=run_dir,
        ckpt_dir=ckpt_dir, logger=logger, progress=progress, history=history, validation=validation,
        best_score=best_score, best_ckpt=best_ckpt, last_ckpt=resume_dir,
    )  # fmt: skip
    it = start
    saved_at = start if resume_dir is not None else -1
    stop = _StopRequest()
    interrupted = False
    bar = None
    if progress and info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.optim.iters, initial=start, desc="train", unit="it", dynamic_ncols=True)
    window = _LogWindow(data.num_classes, cfg)
    model.train()
    try:
        with stop.installed():
            batches = iter(loader)
            while it < cfg.optim.iters:
                eps, lr = eps_at(cfg, it), lr_at(cfg, it)
                batch = next(batches)
                rs.seen.extend(int(i) for i in batch["index"])
                terms, stop_now = train_step(rs, batch, it, eps, lr, stop)
                it += 1
                window.add(terms)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        ce=f"{terms[1]:.3f}", kl=f"{terms[2]:.3f}", do=f"{terms[3]:.3f}", eps=f"{eps:.3g}",
                        lr=f"{lr:.3g}", refresh=False,
                    )  # fmt: skip
                if it % cfg.run.log_every == 0 or it == cfg.optim.iters or stop_now:
                    window.flush(rs, it, eps, lr)
                if cfg.run.val_every and (it % cfg.run.val_every == 0 or it == cfg.optim.iters):
                    validate(rs, it)
                    model.train()
                if stop_now:
                    interrupted = True
                    break
                if it % cfg.run.checkpoint_every == 0 and it < cfg.optim.iters:
                    rs.last_ckpt, saved_at = save_checkpoint(rs, it), it
            if saved_at != it:
                rs.last_ckpt = save_checkpoint(rs, it)
    except NonFiniteLossError as exc:
        logger.text(f"error: {exc}")
        raise
    finally:
        if bar is not None:
            bar.close()
        logger.close()
    last_ckpt, best_ckpt = rs.last_ckpt, rs.best_ckpt
    if interrupted and info.is_main:
        print(
            f"{stop.signal_name or 'stop request'}: saved checkpoint {last_ckpt} at iteration {it}; "
            f"continue with --resume {run_dir}",
            flush=True,
        )
        logger.text(f"{stop.signal_name or 'stop request'}: stopped at iteration {it}; checkpoint {last_ckpt}")
    else:
        logger.text(
            f"done: {it} iterations; last checkpoint {last_ckpt}"
            + (f"; best checkpoint {best_ckpt}" if best_ckpt else "")
        )
    _sync_buffers(model, info)
    barrier(info)
    if not info.is_main:
        last_ckpt = resolve_checkpoint(run_dir, prefer="last") if list_checkpoints(ckpt_dir) else None
        best = list_checkpoints(ckpt_dir, "best")
        best_ckpt = best[-1][1] if best else None
    return TrainResult(
        run_dir=run_dir,
        iteration=it,
        last_checkpoint=last_ckpt,
        best_checkpoint=best_ckpt,
        history=history,
        validation=validation,
        interrupted=interrupted,
        stop_signal=stop.signal_name,
        class_names=list(data.classes),
        model=model,
        seen=rs.seen,
        rank=info.rank,
    )


@dataclass
class RunState:
    """What the steps of a run share: the model and its optimizer, the data, the run folder and
    what the run has written so far (history, validations, best and last checkpoints)."""

    cfg: TrainConfig
    info: DistInfo
    dev: torch.device
    precision: str  # resolved ("auto" decided once at the start)
    memory: torch.memory_format
    model: GazeAttentionNet  # the unwrapped model
    net: nn.Module  # what the forward pass calls: the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    data: Any  # PreparedData
    val_records: list[Any] | None
    run_dir: Path
    ckpt_dir: Path
    logger: _Logger
    progress: bool
    history: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    best_score: float = -math.inf
    best_ckpt: Path | None = None
    last_ckpt: Path | None = None
    seen: list[int] = field(default_factory=list)  # training-set indices this rank drew, in order


def train_step(
    rs: RunState, batch: dict[str, Any], it: int, eps: float, lr: float, stop: _StopRequest
) -> tuple[torch.Tensor, bool]:
    """One SGD step on a batch: forward, losses, checks, backward, clipping, update.

    Returns the step's [loss, ce, kl, do, flip, grad_norm] (float64, CPU) and whether every rank
    agreed to stop after it (a SIGINT/SIGTERM that arrived up to the loss check counts for this
    step). A non-finite loss or gradient raises before the update.
    """
    cfg, dev, model = rs.cfg, rs.dev, rs.model
    for g in rs.optimizer.param_groups:
        g["lr"] = lr
    rgb = batch["rgb"].to(dev, non_blocking=True).contiguous(memory_format=rs.memory)
    flow = None
    if model.config.use_flow:
        flow = batch["flow"].to(dev, non_blocking=True).contiguous(memory_format=rs.memory)
    labels = batch["label"].to(dev, non_blocking=True)
    with autocast_context(dev, rs.precision):
        out = rs.net(rgb, flow, gaze_mode=TRAIN_GAZE_MODE[cfg.estimator.name], tau=cfg.estimator.tau)
    losses = training_losses(
        out,
        labels,
        head=model.head,
        estimator=cfg.estimator.name,
        eps=eps,
        gaze_target=batch["gaze"].to(dev),
        gaze_valid=batch["gaze_valid"].to(dev),
        kl_weight=cfg.estimator.kl_weight,
    )
    total = losses["total"]
    bad, stop_now = any_flag(rs.info, not bool(torch.isfinite(total)), stop.requested)
    if bad:
        _raise_nonfinite(it, losses, rs.info, rs.last_ckpt, "loss")
    rs.optimizer.zero_grad(set_to_none=True)
    rs.scaler.scale(total).backward()
    rs.scaler.unscale_(rs.optimizer)
    clip = cfg.optim.clip_grad if cfg.optim.clip_grad is not None else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    if not rs.scaler.is_enabled() and not bool(torch.isfinite(grad_norm)):
        # Gradients are all-reduced, so every rank sees the same norm.
        _raise_nonfinite(it, losses, rs.info, rs.last_ckpt, "gradient")
    rs.scaler.step(rs.optimizer)
    rs.scaler.update()
    terms = [total, losses["ce"], losses["kl"], losses["do"], losses["flip"], grad_norm]
    return torch.stack([t.detach().double().cpu() for t in terms]), stop_now


class _LogWindow:
    """Sums of the step terms over `run.log_every` iterations, written as one row when flushed."""

    def __init__(self, num_classes: int, cfg: TrainConfig) -> None:
        self.sums = torch.zeros(6, dtype=torch.float64)  # loss, ce, kl, do, flip, grad_norm
        self.n = 0
        self.t0 = time.perf_counter()
        self.watch = DivergenceWatch(num_classes, cfg)

    def add(self, terms: torch.Tensor) -> None:
        self.sums += terms
        self.n += 1

    def flush(self, rs: RunState, it: int, eps: float, lr: float) -> None:
        mean = _mean_over_ranks(rs.info, self.sums / self.n)
        elapsed = time.perf_counter() - self.t0
        row = {
            "iteration": it,
            "loss": mean[0],
            "ce": mean[1],
            "kl": mean[2],
            "do": mean[3],
            "flip": mean[4],
            "eps": eps,
            "lr": lr,
            "grad_norm": mean[5],
            "it_per_s": self.n / elapsed if elapsed > 0 else math.nan,
            "time": time.time(),
        }
        rs.history.append(row)
        rs.logger.train(row)
        alarm = self.watch.check(row)
        if alarm and rs.info.is_main:
            print(alarm, file=sys.stderr, flush=True)
            rs.logger.text(alarm)
        self.sums.zero_()
        self.n, self.t0 = 0, time.perf_counter()


def checkpoint_state(rs: RunState, iteration: int) -> dict[str, Any]:
    """The JSON part of a checkpoint: where the run is, its config, schedule and class names."""
    cfg, data = rs.cfg, rs.data
    return {
        "iteration": iteration,
        "eps": eps_at(cfg, iteration),
        "lr": lr_at(cfg, iteration),
        "schedule": {
            "lr": cfg.optim.lr,
            "milestones": list(cfg.optim.milestones),
            "gamma": cfg.optim.gamma,
            "iters": cfg.optim.iters,
        },
        "best_score": rs.best_score,
        "world_size": rs.info.world_size,
        "config": cfg.to_dict(),
        "model_config": rs.model.config.to_dict(),
        "class_names": list(data.classes),
        "verb_of": list(data.verb_of),
        "noun_of": list(data.noun_of),
        "grad_scaler": rs.scaler.state_dict() if rs.scaler.is_enabled() else None,
    }


def save_checkpoint(rs: RunState, iteration: int) -> Path | None:
    """Write ckpt-<iteration> (weights, optimizer, every rank's RNG) and keep the newest few."""
    rngs = all_gather_objects(rs.info, capture_rng(rs.dev))  # every rank takes part
    if not rs.info.is_main:
        return None
    folder = write_checkpoint(
        rs.ckpt_dir / checkpoint_name("ckpt", iteration),
        rs.model,
        dict(checkpoint_state(rs, iteration), rng=rngs),
        rs.optimizer,
    )
    prune(rs.ckpt_dir, "ckpt", rs.cfg.run.keep_last)
    return folder


def validate(rs: RunState, iteration: int) -> None:
    """Sparse evaluation on the split's test list; logs it and keeps the best as best-<iteration>."""
    cfg, info = rs.cfg, rs.info
    _sync_buffers(rs.model, info)
    m = evaluate(
        rs.model,
        rs.data,
        cfg.data.split,
        records=rs.val_records,
        sparse=True,
        gaze_mode=eval_gaze_mode(cfg),
        batch_size=None,
        precision=rs.precision,
        channels_last=cfg.run.channels_last,
        device=rs.dev,
        max_clips=cfg.data.val_max_clips,
        seed=cfg.run.seed,
        dist_info=info,
    )
    keys = (
        "mean_class_accuracy", "mean_class_accuracy_all", "overall_accuracy", "verb_accuracy",
        "noun_accuracy", "gaze_within_one_cell",
    )  # fmt: skip
    summary = {k: m[k] for k in keys if k in m}
    rs.validation.append({"iteration": iteration, **summary})
    rs.logger.validation(iteration, summary)
    score = m["mean_class_accuracy"]
    if info.is_main and math.isfinite(score) and score > rs.best_score:
        rs.best_score = score
        rs.best_ckpt = write_checkpoint(
            rs.ckpt_dir / checkpoint_name("best", iteration),
            rs.model,
            dict(checkpoint_state(rs, iteration), metrics=summary),
        )
        prune(rs.ckpt_dir, "best", 1)
    if info.is_main and rs.progress:
        print(f"validation @ {iteration}: mean class accuracy {100 * score:.2f}%", flush=True)


def _sync_buffers(model: nn.Module, info: DistInfo) -> None:
    """Rank 0's BatchNorm statistics everywhere (DDP only broadcasts them at the next forward)."""
    if info.distributed:
        import torch.distributed as dist

        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def _mean_over_ranks(info: DistInfo, values: torch.Tensor) -> list[float]:
    if info.distributed:
        import torch.distributed as dist

        t = values.to(info.device)
        dist.all_reduce(t)
        values = t.cpu() / info.world_size
    return [float(v) for v in values]


def _raise_nonfinite(
    it: int, losses: dict[str, torch.Tensor], info: DistInfo, last: Path | None, what: str
) -> None:
    terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
    where = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
    raise NonFiniteLossError(
        f"non-finite {what} at iteration {it} on rank {info.rank} ({terms}): training stopped before "
        f"applying the step; {where}. Lower the learning rate, use fp32, or check the data."
    )

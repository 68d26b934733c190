"""Training loop of Min & Corso (WACV 2021): CE + KL to recorded gaze + the estimator term.

One process, or DistributedDataParallel under torchrun (gloo on CPU, nccl on GPUs). The
global batch is divided over the ranks; each rank draws a distinct shard of every epoch. Only
rank 0 writes the run folder. The data order, the augmentations and the per-rank RNG streams
are functions of (seed, rank, iteration) plus the saved RNG states, so a resumed run
continues exactly where it stopped. SIGINT / SIGTERM finish the current step, save a
checkpoint and return; a non-finite loss or gradient raises `NonFiniteLossError` before the
step is applied, leaving the last checkpoint as it was.

Reading order: `train` (process group, run-folder lock) -> `_train`: `_setup` (data, model,
optimizer), `_restore` (a resumed run), `_loader`, `_open_run_folder`, `_loop` (`train_step`,
`_LogWindow`, `validate`, `save_checkpoint`), `_finish`. The schedules are `engine/schedules.py`,
the files the run writes as it goes `engine/runlog.py`, the checkpoints' JSON schema
`engine/train_state.py` and their naming `engine/saver.py`.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gaze_attention.data.store import FrameGeometry
from gaze_attention.engine import schedules
from gaze_attention.engine.checkpoint import (
    CheckpointError,
    capture_rng,
    load_optimizer,
    load_weights,
    resolve_resume,
    restore_rng,
    warn_world_change,
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
from gaze_attention.engine.divergence import DivergenceWatch
from gaze_attention.engine.evaluate import autocast_context, evaluate
from gaze_attention.engine.init import check_init, init_files
from gaze_attention.engine.precision import resolve_for_ranks
from gaze_attention.engine.runlock import claim_for_ranks
from gaze_attention.engine.runlog import RunLog, StepTerms
from gaze_attention.engine.saver import CheckpointSaver
from gaze_attention.engine.schedules import eps_at, eps_rate, freeze_parameters, lr_at, make_optimizer, set_lr
from gaze_attention.engine.signals import StopRequest
from gaze_attention.engine.train_state import TrainState, read_train_state
from gaze_attention.errors import GazeAttentionError
from gaze_attention.losses import TRAIN_GAZE_MODE, training_losses
from gaze_attention.models import GazeAttentionNet, build_model, load_initial_weights

# Re-exported: these lived here before the schedules and the watch had modules of their own.
__all__ = [
    "DivergenceWatch", "NonFiniteLossError", "TrainResult", "eps_at", "eps_rate", "eval_gaze_mode", "lr_at",
    "make_optimizer", "subsample_per_class", "train",
]  # fmt: skip



class NonFiniteLossError(GazeAttentionError, RuntimeError):
    """Training stopped because a loss or gradient was NaN or infinite."""

    exit_code = 3


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


def _init_weights(model: GazeAttentionNet, cfg: TrainConfig) -> list[str]:
    files = init_files(cfg)
    if not files:
        return []
    return load_initial_weights(
        model, files.get("base"), files.get("gaze"), files.get("attn"), rgb=files.get("rgb"), flow=files.get("flow")
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
    data, records = _training_clips(cfg, data)  # before the run folder exists: a bad batch is said at once
    info = init_distributed(cfg.run.device)
    try:
        lock = claim_for_ranks(cfg.run.out, info, resume=bool(cfg.run.resume), overwrite=overwrite)
        try:
            return _train(cfg, info, progress, data, records)
        finally:
            if lock is not None:
                lock.release()
    finally:
        shutdown(info)


@dataclass
class RunState:
    """What the parts of a run share: the model and its optimizer, the data, the run folder and
    what the run has written so far (history, validations, checkpoints)."""

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
    records: list[Any]  # the training clips
    val_records: list[Any] | None
    geometry: FrameGeometry  # of the training frames, kept in every checkpoint
    run_dir: Path
    saver: CheckpointSaver
    logger: RunLog
    progress: bool
    start: int = 0  # the iteration this process starts (resumes) at
    resume_dir: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    best_ckpt: Path | None = None
    last_ckpt: Path | None = None
    seen: list[int] = field(default_factory=list)  # training-set indices this rank drew, in order


def _training_clips(cfg: TrainConfig, data: Any) -> tuple[Any, list[Any]]:
    """The data set and its training clips (at most max_train_per_class each), checked against the batch."""
    from gaze_attention.data import PreparedData

    if data is None:
        if cfg.data.root is None:
            raise ValueError("data.root (the prepared data folder) is not set")
        data = PreparedData(cfg.data.root)
    records = subsample_per_class(data.split(cfg.data.split, "train"), cfg.data.max_train_per_class, cfg.run.seed)
    if not records:
        raise ValueError(f"{data.root}: split {cfg.data.split} has no training clips on disk")
    if cfg.optim.batch_size > len(records):
        raise ValueError(
            f"optim.batch_size {cfg.optim.batch_size} is larger than the {len(records)} training clips of "
            f"{data.root} split {cfg.data.split}: every batch would repeat clips; use --batch-size "
            f"{min(len(records), 8)} or fewer"
        )
    return data, records


def _train(cfg: TrainConfig, info: DistInfo, progress: bool, data: Any, records: list[Any]) -> TrainResult:
    """Set up (data, model, optimizer, run folder), restore a resumed run, loop, finish."""
    resume_dir, resume = _resume_state(cfg)
    rs = _setup(cfg, info, progress, data, records, start=resume.iteration if resume else 0)
    if resume is not None:
        _restore(rs, resume_dir, resume)
    loader = _loader(rs)
    _open_run_folder(rs)
    stop = StopRequest()
    with stop.installed():
        it = _loop(rs, loader, stop)
    return _finish(rs, it, stop)


def _resume_state(cfg: TrainConfig) -> tuple[Path | None, TrainState | None]:
    if not cfg.run.resume:
        return None, None
    folder = resolve_resume(cfg.run.resume)
    state = read_train_state(folder)
    if state.optimizer is None:
        raise CheckpointError(
            f"{folder} holds no optimizer state (a best-* checkpoint?): resume from a ckpt-* checkpoint "
            "or a run folder"
        )
    return folder, state


def _setup(cfg: TrainConfig, info: DistInfo, progress: bool, data: Any, records: list[Any], start: int) -> RunState:
    """Model (initialised, placed, wrapped), optimizer, logger: everything but a resumed run's state."""
    dev = info.device
    if cfg.optim.batch_size % info.world_size:
        raise ValueError(
            f"optim.batch_size {cfg.optim.batch_size} is the global batch and must divide evenly over "
            f"{info.world_size} processes"
        )
    choice = resolve_for_ranks(cfg.run.precision, dev, info)  # cfg keeps "auto": a resumed run decides anew
    if info.is_main:
        print(choice, flush=True)
    _seed_all(cfg.run.seed * 1000 + info.rank)
    model = build_model(cfg.model.preset, num_classes=data.num_classes, **cfg.model.overrides())
    val_records = data.split(cfg.data.split, "test") if cfg.run.val_every else None
    if start == 0:
        loaded = _init_weights(model, cfg)
        if loaded and info.is_main:
            print(f"initialised {', '.join(loaded)} from {', '.join(sorted(set(map(str, init_files(cfg).values()))))}",
                  flush=True)  # fmt: skip
    if cfg.optim.freeze:
        frozen = freeze_parameters(model, cfg.optim.freeze)
        if info.is_main:
            print(f"frozen: {frozen} parameter tensors ({', '.join(cfg.optim.freeze)})", flush=True)
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
    run_dir = Path(cfg.run.out)
    return RunState(
        cfg=cfg, info=info, dev=dev, precision=choice.precision, memory=memory, model=model, net=net,
        optimizer=make_optimizer(model, cfg, lr_at(cfg, start)),
        scaler=torch.amp.GradScaler(dev.type, enabled=choice.precision == "fp16"),
        data=data, records=records, val_records=val_records, geometry=_geometry(data, records),
        run_dir=run_dir, saver=CheckpointSaver(run_dir / "checkpoints", cfg.run.keep_last, info.is_main),
        logger=RunLog(run_dir, info.is_main, cfg.run.tensorboard, start), progress=progress, start=start,
    )  # fmt: skip


def _geometry(data: Any, records: list[Any]) -> FrameGeometry:
    store = getattr(data, "store", None)
    if store is None:  # a data object of the caller's without a FrameStore: read one frame
        h, w = data.image(data.rgb_path(records[0].name, 0)).shape[:2]
        return FrameGeometry((int(w), int(h)))
    return store.geometry(records[0].name)


def _restore(rs: RunState, folder: Path, state: TrainState) -> None:
    """A resumed run's weights, optimizer moments, RNG streams, scaler and best score."""
    if state.model_config != rs.model.config.to_dict():
        raise CheckpointError(
            f"{folder} was trained with model {state.model_config}, the config builds {rs.model.config.to_dict()}"
        )
    load_weights(rs.model, folder)
    load_optimizer(rs.optimizer, folder, state.optimizer)
    for p, st in rs.optimizer.state.items():
        # Buffers come back contiguous; give them their parameter's layout (channels_last_3d).
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and v.shape == p.shape:
                st[k] = torch.empty_like(p).copy_(v)
    warn_world_change(len(state.rng), rs.info.world_size)
    if rs.info.rank < len(state.rng):
        restore_rng(state.rng[rs.info.rank], rs.dev)
    if state.grad_scaler:
        rs.scaler.load_state_dict(state.grad_scaler)
    rs.saver.best_score = state.best_score
    rs.best_ckpt = rs.saver.best()
    rs.resume_dir = rs.last_ckpt = folder


def _loader(rs: RunState) -> torch.utils.data.DataLoader:
    """Batches of this rank's share, continuing at the run's start (the order depends on the seed only)."""
    from gaze_attention.data import ClipDataset
    from gaze_attention.data.dataset import collate_channels_last

    cfg, info, mcfg = rs.cfg, rs.info, rs.model.config
    local_bs = cfg.optim.batch_size // info.world_size
    workers = 0 if getattr(rs.data, "in_memory", False) else cfg.data.workers
    # Batched in this process for a channels-last CPU model: straight into the model's layout
    # (a worker's batch goes through shared memory, which default_collate allocates for it).
    channels_last = workers == 0 and rs.dev.type == "cpu" and rs.memory == torch.channels_last_3d
    # In-memory data (data/memory.py) brings its own dataset class and needs no loader workers.
    dataset = getattr(rs.data, "dataset_class", ClipDataset)(
        rs.data, rs.records, train=True, frames=mcfg.frames, crop=mcfg.crop, grid=rs.model.grid,
        use_flow=mcfg.use_flow, seed=cfg.run.seed, channels_last=channels_last,
    )  # fmt: skip
    sampler = ShardedInfiniteSampler(
        len(dataset), rank=info.rank, world_size=info.world_size, seed=cfg.run.seed, start=rs.start * local_bs
    )
    return torch.utils.data.DataLoader(
        SeededDraws(dataset),
        batch_size=local_bs,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_channels_last if channels_last else None,
        pin_memory=rs.dev.type == "cuda",
        worker_init_fn=_worker_init if workers else None,
        persistent_workers=False,
        prefetch_factor=2 if workers else None,
        generator=torch.Generator(),  # keeps the global RNG (Gumbel noise, dropout) untouched
    )


def _open_run_folder(rs: RunState) -> None:
    """config.yaml, the history a resumed run continues, and the run's summary in train.log."""
    cfg, info, mcfg = rs.cfg, rs.info, rs.model.config
    if info.is_main:
        rs.run_dir.mkdir(parents=True, exist_ok=True)
        rs.saver.clean()
        save_config(cfg, rs.run_dir / "config.yaml")
        if rs.start:
            rs.history, rs.validation = rs.logger.history()
    schedule = schedules.describe(cfg)
    if info.is_main:
        print(f"schedule: {schedule}", flush=True)
    rs.logger.text(
        (f"resumed from {rs.resume_dir} at iteration {rs.start}; " if rs.start else "")
        + f"{cfg.optim.iters} iterations of {cfg.model.preset} ({mcfg.frames} frames at {mcfg.crop}px, "
        f"{_network(mcfg)}), estimator {cfg.estimator.name}, batch {cfg.optim.batch_size} on "
        f"{info.world_size} process(es) ({rs.dev}), {schedule}, precision {cfg.run.precision}, seed {cfg.run.seed}; "
        f"data {cfg.data.root} split {cfg.data.split}: {len(rs.records)} training clips of "
        f"{rs.data.num_classes} classes; config {rs.run_dir / 'config.yaml'}"
    )


def _loop(rs: RunState, loader: torch.utils.data.DataLoader, stop: StopRequest) -> int:
    """train_step until optim.iters or a stop request; a log row every log_every, a validation
    every val_every, a checkpoint every checkpoint_every and at the end. Returns the iteration."""
    cfg = rs.cfg
    it, saved_at = rs.start, rs.start if rs.resume_dir is not None else -1
    window = _LogWindow(rs.data.num_classes, cfg)
    bar = _progress_bar(rs)
    rs.model.train()
    try:
        batches = iter(loader)
        while it < cfg.optim.iters:
            eps, lr = eps_at(cfg, it), lr_at(cfg, it)
            batch = next(batches)
            rs.seen.extend(int(i) for i in batch["index"])
            terms, stop_now = train_step(rs, batch, it, eps, lr, stop)
            it += 1
            window.add(terms)
            if bar is not None:
                t = StepTerms(*terms.tolist())
                bar.update(1)
                bar.set_postfix(ce=f"{t.ce:.3f}", kl=f"{t.kl:.3f}", do=f"{t.do:.3f}", eps=f"{eps:.3g}",
                                lr=f"{lr:.3g}", refresh=False)  # fmt: skip
            if it % cfg.run.log_every == 0 or it == cfg.optim.iters or stop_now:
                window.flush(rs, it, eps, lr)
            if cfg.run.val_every and (it % cfg.run.val_every == 0 or it == cfg.optim.iters):
                validate(rs, it)
                rs.model.train()
            if stop_now:
                break
            if it % cfg.run.checkpoint_every == 0 and it < cfg.optim.iters:
                rs.last_ckpt, saved_at = save_checkpoint(rs, it), it
        if saved_at != it:
            rs.last_ckpt = save_checkpoint(rs, it)
    except NonFiniteLossError as exc:
        rs.logger.text(f"error: {exc}")
        raise
    finally:
        if bar is not None:
            bar.close()
        rs.logger.close()
    return it


def _network(mcfg: Any) -> str:
    if getattr(mcfg, "backbone", "i3d") == "i3d":
        return f"width {mcfg.width}"
    return f"{mcfg.backbone} backbone"


def _progress_bar(rs: RunState) -> Any:
    if not (rs.progress and rs.info.is_main):
        return None
    from tqdm import tqdm

    return tqdm(total=rs.cfg.optim.iters, initial=rs.start, desc="train", unit="it", dynamic_ncols=True)


def _finish(rs: RunState, it: int, stop: StopRequest) -> TrainResult:
    """Say how the run ended, give every rank rank 0's statistics and the checkpoints' names."""
    info = rs.info
    if stop.requested and info.is_main:
        print(
            f"{stop.signal_name or 'stop request'}: saved checkpoint {rs.last_ckpt} at iteration {it}; "
            f"continue with --resume {rs.run_dir}",
            flush=True,
        )
        rs.logger.text(f"{stop.signal_name or 'stop request'}: stopped at iteration {it}; checkpoint {rs.last_ckpt}")
    else:
        rs.logger.text(
            f"done: {it} iterations; last checkpoint {rs.last_ckpt}"
            + (f"; best checkpoint {rs.best_ckpt}" if rs.best_ckpt else "")
        )
    _sync_buffers(rs.model, info)
    barrier(info)
    last_ckpt, best_ckpt = rs.last_ckpt, rs.best_ckpt
    if not info.is_main:
        last_ckpt, best_ckpt = rs.saver.latest(), rs.saver.best()
    return TrainResult(
        run_dir=rs.run_dir,
        iteration=it,
        last_checkpoint=last_ckpt,
        best_checkpoint=best_ckpt,
        history=rs.history,
        validation=rs.validation,
        interrupted=stop.requested,
        stop_signal=stop.signal_name,
        class_names=list(rs.data.classes),
        model=rs.model,
        seen=rs.seen,
        rank=info.rank,
    )


def train_step(
    rs: RunState, batch: dict[str, Any], it: int, eps: float, lr: float, stop: StopRequest
) -> tuple[torch.Tensor, bool]:
    """One optimizer step on a batch: forward, losses, checks, backward, clipping, update.

    Returns the step's `StepTerms` as a float64 CPU tensor and whether every rank agreed to
    stop after it (a SIGINT/SIGTERM that arrived up to the loss check counts for this step).
    A non-finite loss or gradient raises before the update.
    """
    cfg, dev, model = rs.cfg, rs.dev, rs.model
    set_lr(rs.optimizer, lr)
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
    terms = StepTerms(total, losses["ce"], losses["kl"], losses["do"], losses["flip"], grad_norm)
    return torch.stack([t.detach().double().cpu() for t in terms]), stop_now


class _LogWindow:
    """Sums of the step terms over `run.log_every` iterations, written as one row when flushed."""

    def __init__(self, num_classes: int, cfg: TrainConfig) -> None:
        self.sums = torch.zeros(len(StepTerms._fields), dtype=torch.float64)
        self.n = 0
        self.t0 = time.perf_counter()
        self.watch = DivergenceWatch(num_classes, cfg)

    def add(self, terms: torch.Tensor) -> None:
        self.sums += terms
        self.n += 1

    def flush(self, rs: RunState, it: int, eps: float, lr: float) -> None:
        mean = StepTerms(*_mean_over_ranks(rs.info, self.sums / self.n))
        elapsed = time.perf_counter() - self.t0
        row = {
            "iteration": it, "loss": mean.loss, "ce": mean.ce, "kl": mean.kl, "do": mean.do, "flip": mean.flip,
            "eps": eps, "lr": lr, "grad_norm": mean.grad_norm,
            "it_per_s": self.n / elapsed if elapsed > 0 else math.nan, "time": time.time(),
        }  # fmt: skip
        rs.history.append(row)
        rs.logger.train(row)
        alarm = self.watch.check(row)
        if alarm and rs.info.is_main:
            print(alarm, file=sys.stderr, flush=True)
            rs.logger.text(alarm)
        self.sums.zero_()
        self.n, self.t0 = 0, time.perf_counter()


def train_state(rs: RunState, iteration: int) -> TrainState:
    """The JSON part of a checkpoint: where the run is, its config, schedule, classes and inputs."""
    cfg, data = rs.cfg, rs.data
    return TrainState(
        iteration=iteration,
        config=cfg.to_dict(),
        model_config=rs.model.config.to_dict(),
        class_names=list(data.classes),
        verb_of=list(data.verb_of),
        noun_of=list(data.noun_of),
        inputs=rs.geometry.to_dict(),
        eps=eps_at(cfg, iteration),
        lr=lr_at(cfg, iteration),
        schedule={"lr": cfg.optim.lr, "milestones": schedules.milestones(cfg), "gamma": cfg.optim.gamma,
                  "iters": cfg.optim.iters},  # fmt: skip
        best_score=rs.saver.best_score,
        world_size=rs.info.world_size,
        grad_scaler=rs.scaler.state_dict() if rs.scaler.is_enabled() else None,
    )


def save_checkpoint(rs: RunState, iteration: int) -> Path | None:
    """Write ckpt-<iteration> (weights, optimizer, every rank's RNG) and keep the newest few."""
    rngs = all_gather_objects(rs.info, capture_rng(rs.dev))  # every rank takes part
    state = train_state(rs, iteration)
    state.rng = rngs
    return rs.saver.save(rs.model, state, rs.optimizer)


def validate(rs: RunState, iteration: int) -> None:
    """Sparse evaluation on the split's test list; logs it and keeps the best as best-<iteration>."""
    cfg, info = rs.cfg, rs.info
    _sync_buffers(rs.model, info)
    m = evaluate(
        rs.model, rs.data, cfg.data.split, records=rs.val_records, sparse=True, gaze_mode=eval_gaze_mode(cfg),
        batch_size=None, precision=rs.precision, channels_last=cfg.run.channels_last, device=rs.dev,
        max_clips=cfg.data.val_max_clips, seed=cfg.run.seed, dist_info=info,
    )  # fmt: skip
    summary = {k: m[k] for k in VALIDATION_KEYS if k in m}
    rs.validation.append({"iteration": iteration, **summary})
    rs.logger.validation(iteration, summary)
    score = m["mean_class_accuracy"]
    state = train_state(rs, iteration)
    state.metrics = summary
    best = rs.saver.save_if_best(rs.model, state, score)
    rs.best_ckpt = best or rs.best_ckpt
    if info.is_main and rs.progress:
        print(f"validation @ {iteration}: mean class accuracy {100 * score:.2f}%", flush=True)


VALIDATION_KEYS = (
    "mean_class_accuracy", "mean_class_accuracy_all", "overall_accuracy", "verb_accuracy", "noun_accuracy",
    "gaze_within_one_cell",
)  # fmt: skip

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

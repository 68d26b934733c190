"""Clip-level evaluation as in the paper (Min & Corso, WACV 2021; DESIGN.md §1).

Each test clip is cut into non-overlapping windows of the model's frame count (sparse mode:
at most 10 evenly spaced), centre-cropped; the logits of its windows are averaged. Windows
of several clips are batched. In a distributed job every rank evaluates a disjoint set of
clips (no padding), so every clip is counted exactly once.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gaze_attention.engine.checkpoint import unwrap
from gaze_attention.engine.distributed import DistInfo, all_gather_objects, shard
from gaze_attention.engine.metrics import confusion_matrix, gaze_hits, metrics_from_confusion

SPARSE_WINDOWS = 10
EVAL_GAZE_MODES = ("sample", "argmax", "expected", "none")


def window_starts(
    length: int, frames: int, sparse: bool = False, max_windows: int = SPARSE_WINDOWS
) -> list[int]:
    """Start frames of the non-overlapping `frames`-long windows of a clip of `length` frames.

    A clip shorter than one window gets one window at 0 (the dataset edge-pads it); sparse mode
    keeps at most `max_windows` of them, evenly spaced from the first to the last.
    """
    n = max(1, length // frames)
    idx = np.arange(n)
    if sparse and n > max_windows:
        idx = np.unique(np.linspace(0, n - 1, max_windows).round().astype(np.int64))
    return [int(i) * frames for i in idx]


def auto_batch_size(frames: int, crop: int, device: torch.device) -> int:
    """Windows per forward pass when the caller does not say.

    On a GPU, 8. On a CPU, about one paper-sized window (24 x 224 x 224) of input per pass:
    larger batches push the activations out of cache and lower the windows/s (measured on the
    paper network, bf16: 3.6 windows/s one at a time, 2.0 in batches of 8), while small models'
    windows are still worth batching.
    """
    if device.type != "cpu":
        return 8
    return int(max(1, min(16, (24 * 224 * 224) // max(1, frames * crop * crop))))


def autocast_context(device: torch.device, precision: str) -> torch.autocast:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def model_memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last_3d when the model's Conv3d weights are in it (inputs should follow), else contiguous."""
    for p in model.parameters():
        if p.dim() == 5 and p.shape[1] > 1 and p.shape[2:].numel() > 1:
            if not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last_3d):
                return torch.channels_last_3d
            return torch.contiguous_format
    return torch.contiguous_format


def _fixation_cells(points: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Fixation cell (row, col) per slice of one window, as training targets define it: [T', 2]."""
    from gaze_attention.data import gaze_targets

    target, valid = gaze_targets(points.numpy(), grid)  # [T', S, S], [T']
    side = grid[1]
    idx = target.flatten(1).argmax(-1)
    cells = torch.stack([idx // side, idx % side], -1)
    cells[~valid] = -1
    return cells


def _clip_loader(dataset: Any, indices: list[int], workers: int) -> Iterator[tuple[int, dict]]:
    if workers <= 0:
        for i in indices:
            yield i, dataset[i]
        return
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, indices),
        batch_size=None,
        num_workers=workers,
        collate_fn=lambda s: s,
        generator=torch.Generator(),  # keeps the global RNG (gaze sampling) untouched
    )
    yield from zip(indices, loader, strict=True)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    split: int = 1,
    *,
    part: str = "test",
    records: Sequence[Any] | None = None,
    sparse: bool = False,
    gaze_mode: str = "sample",
    batch_size: int | None = None,
    precision: str = "fp32",
    channels_last: bool | None = None,
    device: torch.device | str | None = None,
    max_clips: int | None = None,
    workers: int = 0,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    dist_info: DistInfo | None = None,
    confusion_png: str | os.PathLike | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate a model on a split of prepared data; returns a JSON-able dict of metrics.

    data: a `PreparedData` (the clips of `{part}_split{split}` or `records` are used) or a test
    `ClipDataset`. gaze_mode: "sample" (one Gumbel-max draw per window, the reference),
    "argmax", "expected" or "none" (uniform gaze, for models trained without gaze).
    `max_clips` keeps an evenly spaced subset (for quick validation). batch_size: windows per
    forward pass (None: `auto_batch_size`). The model's train/eval
    mode is restored afterwards. channels_last: input memory format (None: follow the model's
    Conv3d weights).
    """
    from gaze_attention.data import ClipDataset, PreparedData

    if gaze_mode not in EVAL_GAZE_MODES:
        raise ValueError(f"gaze_mode must be one of {', '.join(EVAL_GAZE_MODES)}, got {gaze_mode!r}")
    net = unwrap(model)
    cfg = net.config
    grid = net.grid
    info = dist_info or DistInfo()
    dev = torch.device(device) if device is not None else next(net.parameters()).device
    if batch_size is None:
        batch_size = auto_batch_size(cfg.frames, cfg.crop, dev)
    if precision == "auto":
        from gaze_attention.engine.precision import resolve_precision

        precision = resolve_precision(precision, dev).precision
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")

    if isinstance(data, PreparedData):
        recs = list(records) if records is not None else data.split(split, part)
        dataset = ClipDataset(
            data, recs, train=False, frames=cfg.frames, crop=cfg.crop, grid=grid, use_flow=cfg.use_flow
        )
        names = list(class_names or data.classes)
        verb_of, noun_of = data.verb_of, data.noun_of
    elif isinstance(data, ClipDataset):
        dataset, recs = data, data.records
        names = list(class_names or data.data.classes)
        verb_of, noun_of = data.data.verb_of, data.data.noun_of
    else:
        raise TypeError(f"data must be a PreparedData or a test ClipDataset, got {type(data).__name__}")
    if len(names) != cfg.num_classes:
        raise ValueError(
            f"the model has {cfg.num_classes} classes but the data's action index has {len(names)}"
        )

    all_idx = list(range(len(dataset)))
    if max_clips is not None and len(all_idx) > max_clips:
        all_idx = sorted({int(round(x)) for x in np.linspace(0, len(all_idx) - 1, max_clips)})
    mine = shard(all_idx, info)

    was_training = net.training
    net.eval()
    if channels_last is None:
        memory = model_memory_format(net)
    else:
        memory = torch.channels_last_3d if channels_last else torch.contiguous_format
    generator = torch.Generator(device=dev).manual_seed(seed * 1_000_003 + info.rank)
    sums: dict[int, torch.Tensor] = {}  # clip -> summed logits [C] (float64)
    counts: dict[int, int] = {}
    gaze_total = gaze_exact = gaze_near = 0
    windows = 0
    pending: list[tuple[int, torch.Tensor, torch.Tensor | None, torch.Tensor | None]] = []
    t0 = time.perf_counter()

    def run_batch() -> None:
        nonlocal gaze_total, gaze_exact, gaze_near, windows
        if not pending:
            return
        clip_ids = [p[0] for p in pending]
        rgb = torch.stack([p[1] for p in pending]).to(dev, non_blocking=True).contiguous(memory_format=memory)
        flow = None
        if cfg.use_flow:
            flow = torch.stack([p[2] for p in pending]).to(dev, non_blocking=True)
            flow = flow.contiguous(memory_format=memory)
        with autocast_context(dev, precision):
            out = net(rgb, flow, gaze_mode=gaze_mode, generator=generator)
        logits = out.logits.double().cpu()  # [B, C]
        for j, c in enumerate(clip_ids):
            sums[c] = sums[c] + logits[j] if c in sums else logits[j].clone()
            counts[c] = counts.get(c, 0) + 1
        if out.gaze_logits is not None and pending[0][3] is not None:
            cells = torch.stack([p[3] for p in pending])  # [B, T', 2]
            n, e, w = gaze_hits(out.gaze_logits.float().cpu(), cells)
            gaze_total, gaze_exact, gaze_near = gaze_total + n, gaze_exact + e, gaze_near + w
        windows += len(pending)
        pending.clear()

    bar = None
    if progress and info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=len(mine), desc="evaluate", unit="clip", dynamic_ncols=True)
    try:
        for clip, sample in _clip_loader(dataset, mine, workers):
            rgb, flow = sample["rgb"], sample.get("flow")  # [3, L, H, W], [2, L, H, W]
            points = sample.get("gaze_point")  # [L, 2]
            length = rgb.shape[1]
            for s in window_starts(length, cfg.frames, sparse):
                cells = None
                if points is not None and gaze_mode != "none":
                    cells = _fixation_cells(points[s : s + cfg.frames], grid)
                pending.append(
                    (
                        clip,
                        rgb[:, s : s + cfg.frames],
                        flow[:, s : s + cfg.frames] if flow is not None else None,
                        cells,
                    )
                )
                if len(pending) >= batch_size:
                    run_batch()
            if bar is not None:
                bar.update(1)
        run_batch()
    finally:
        if bar is not None:
            bar.close()
        net.train(was_training)

    local = {
        "clips": [(c, sums[c].numpy(), counts[c]) for c in sorted(sums)],
        "gaze": (gaze_total, gaze_exact, gaze_near),
        "windows": windows,
    }
    gathered = all_gather_objects(info, local)
    results: dict[int, tuple[np.ndarray, int]] = {}
    g_total = g_exact = g_near = n_windows = 0
    for part_result in gathered:
        for c, s, k in part_result["clips"]:
            results[c] = (s / k, k)  # mean logits over the clip's windows
        n, e, w = part_result["gaze"]
        g_total, g_exact, g_near = g_total + n, g_exact + e, g_near + w
        n_windows += part_result["windows"]

    order = sorted(results)
    labels = [int(recs[c].label) for c in order]
    preds = [int(np.argmax(results[c][0])) for c in order]
    cm = confusion_matrix(labels, preds, cfg.num_classes)
    metrics = metrics_from_confusion(cm, names, verb_of, noun_of)
    top5 = {c: np.argsort(-results[c][0])[:5].tolist() for c in order}
    metrics.update(
        {
            "top5_accuracy": float(np.mean([lab in top5[c] for c, lab in zip(order, labels)]))
            if order
            else math.nan,
            "num_windows": n_windows,
            "mode": "sparse" if sparse else "dense",
            "gaze_mode": gaze_mode,
            "gaze_slices": g_total,
            "gaze_exact_cell": g_exact / g_total if g_total else None,
            "gaze_within_one_cell": g_near / g_total if g_total else None,
            "seconds": time.perf_counter() - t0,
            "confusion_matrix": cm.tolist(),
            "clips": [
                {
                    "name": recs[c].name,
                    "label": labels[i],
                    "pred": preds[i],
                    "windows": results[c][1],
                    "top5": top5[c],
                }
                for i, c in enumerate(order)
            ],
        }
    )
    if confusion_png is not None and info.is_main:
        from gaze_attention.engine.metrics import save_confusion_png

        try:
            Path(confusion_png).parent.mkdir(parents=True, exist_ok=True)
            save_confusion_png(
                cm,
                confusion_png,
                names,
                title=f"mean class accuracy {100 * metrics['mean_class_accuracy']:.1f}%",
            )
        except OSError as exc:  # an optional picture never costs the metrics
            warnings.warn(f"confusion matrix {confusion_png} not written: {exc}", stacklevel=2)
    return metrics

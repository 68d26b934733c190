"""Clip-level evaluation as in the paper (Min & Corso, WACV 2021): predict -> aggregate -> metrics.

1. `predict_clips`: every window of this process's clips goes through the model
   (`engine.inference`: the authors' windows by default, centre crop, per-window gaze seeds);
   only a few windows are in memory at a time, whatever the clip length.
2. `gather_clip_scores`: the windows' logits are averaged per clip, across processes in a
   distributed job (every rank evaluates a disjoint set of clips, so each is counted once).
3. `clip_metrics`: accuracies, confusion matrix and per-clip scores from the clip logits.

The confusion-matrix picture is drawn by the `evaluate` command (`metrics.save_confusion_png`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from gaze_attention.constants import EVAL_GAZE_MODES
from gaze_attention.engine.checkpoint import unwrap
from gaze_attention.engine.distributed import DistInfo, all_gather_objects, shard
from gaze_attention.engine.inference import (  # noqa: F401  (re-exported for existing imports)
    SPARSE_WINDOWS,
    InferenceOptions,
    PreparedClip,
    Window,
    WindowPolicy,
    auto_batch_size,
    autocast_context,
    fixation_cells,
    model_memory_format,
    run_windows,
    window_starts,
)
from gaze_attention.engine.metrics import confusion_matrix, gaze_hits, metrics_from_confusion


@dataclass
class ClipScores:
    """Summed window logits of the clips one process evaluated, and its gaze counts."""

    sums: dict[int, np.ndarray] = field(default_factory=dict)  # clip index -> summed logits [C] (float64)
    counts: dict[int, int] = field(default_factory=dict)
    gaze: list[int] = field(default_factory=lambda: [0, 0, 0])  # slices, exact cell, within one cell
    windows: int = 0


class _Windows(torch.utils.data.Dataset):
    """The windows of a list of prepared clips, one item per window (for DataLoader workers)."""

    def __init__(self, clips: list[PreparedClip], items: list[tuple[int, int]], frames: int) -> None:
        self.clips, self.items, self.frames = clips, items, frames

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Window:
        c, start = self.items[i]
        return self.clips[c].window(start, self.frames)


def _load_windows(dataset: _Windows, workers: int) -> Iterator[Window]:
    if workers <= 0:
        yield from (dataset[i] for i in range(len(dataset)))
        return
    yield from torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=workers, collate_fn=lambda w: w,
        generator=torch.Generator(),  # keeps the global RNG untouched
    )  # fmt: skip


def predict_clips(
    model: nn.Module,
    data: Any,
    records: Sequence[Any],
    indices: Sequence[int],
    options: InferenceOptions,
    *,
    device: torch.device,
    workers: int = 0,
    progress: bool = False,
) -> ClipScores:
    """Run the windows of `records[i]` for i in `indices` (this process's share) through the model."""
    net = unwrap(model)
    cfg = net.config
    clips = [
        PreparedClip(data, records[i].name, cfg.crop, cfg.use_flow, records[i].num_frames, records[i].flow_frames)
        for i in indices
    ]
    items = [(c, s) for c, clip in enumerate(clips) for s in options.windows.starts(clip.num_frames, cfg.frames)]
    scores = ClipScores()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc="evaluate", unit="window", dynamic_ncols=True)
    try:
        outputs = run_windows(net, _load_windows(_Windows(clips, items, cfg.frames), workers), options, device)
        track_gaze = options.gaze_mode != "none"
        for (c, _), out in zip(items, outputs, strict=True):
            clip = indices[c]
            lg = out.logits.numpy()
            scores.sums[clip] = scores.sums[clip] + lg if clip in scores.sums else lg.copy()
            scores.counts[clip] = scores.counts.get(clip, 0) + 1
            if track_gaze and out.gaze_logits is not None and out.points is not None:
                cells = fixation_cells(out.points, net.grid)  # [T', 2]
                n, e, w = gaze_hits(out.gaze_logits[None], cells[None])
                scores.gaze = [scores.gaze[0] + n, scores.gaze[1] + e, scores.gaze[2] + w]
            scores.windows += 1
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return scores


def gather_clip_scores(local: ClipScores, info: DistInfo) -> tuple[dict[int, tuple[np.ndarray, int]], list[int], int]:
    """All processes' clips -> {clip index: (mean logits [C], windows)}, gaze counts, window count."""
    gathered = all_gather_objects(info, local)
    results: dict[int, tuple[np.ndarray, int]] = {}
    gaze = [0, 0, 0]
    windows = 0
    for part in gathered:
        for c, s in part.sums.items():
            results[c] = (s / part.counts[c], part.counts[c])
        gaze = [a + b for a, b in zip(gaze, part.gaze, strict=True)]
        windows += part.windows
    return results, gaze, windows


def clip_metrics(
    results: dict[int, tuple[np.ndarray, int]],
    records: Sequence[Any],
    class_names: Sequence[str],
    verb_of: Sequence[int] | None,
    noun_of: Sequence[int] | None,
) -> dict[str, Any]:
    """Accuracies, confusion matrix and per-clip results (with the clip's mean logits)."""
    order = sorted(results)
    labels = [int(records[c].label) for c in order]
    preds = [int(np.argmax(results[c][0])) for c in order]
    cm = confusion_matrix(labels, preds, len(class_names))
    metrics = metrics_from_confusion(cm, list(class_names), verb_of, noun_of)
    top5 = {c: np.argsort(-results[c][0])[:5].tolist() for c in order}
    metrics["top5_accuracy"] = (
        float(np.mean([lab in top5[c] for c, lab in zip(order, labels)])) if order else math.nan
    )
    metrics["confusion_matrix"] = cm.tolist()
    metrics["clips"] = [
        {
            "name": records[c].name,
            "label": labels[i],
            "pred": preds[i],
            "windows": results[c][1],
            "top5": top5[c],
            "logits": [float(v) for v in results[c][0]],  # mean over windows: for late fusion
        }
        for i, c in enumerate(order)
    ]
    return metrics


def _prepared(data: Any, split: int, part: str, records: Sequence[Any] | None) -> tuple[Any, list[Any]]:
    """(PreparedData, records) from a PreparedData or a test ClipDataset."""
    from gaze_attention.data import ClipDataset, PreparedData

    if isinstance(data, ClipDataset):
        return data.data, list(records if records is not None else data.records)
    if isinstance(data, PreparedData):
        return data, list(records if records is not None else data.split(split, part))
    raise TypeError(f"data must be a PreparedData or a ClipDataset, got {type(data).__name__}")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    split: int = 1,
    *,
    part: str = "test",
    records: Sequence[Any] | None = None,
    sparse: bool = False,
    windows: WindowPolicy | None = None,
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
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate a model on a split of prepared data; returns a JSON-able dict of metrics.

    data: a `PreparedData` (the clips of `{part}_split{split}` or `records`) or a ClipDataset
    (its records). windows: the window policy (default: the authors'; `sparse` = at most 10
    evenly spaced). gaze_mode, seed, batch_size, precision, channels_last: see
    `engine.inference.InferenceOptions`. `max_clips` keeps an evenly spaced subset (quick
    validation); workers: processes reading windows. The model's train/eval mode is restored.
    """
    if gaze_mode not in EVAL_GAZE_MODES:
        raise ValueError(f"gaze_mode must be one of {', '.join(EVAL_GAZE_MODES)}, got {gaze_mode!r}")
    t0 = time.perf_counter()
    net = unwrap(model)
    info = dist_info or DistInfo()
    dev = torch.device(device) if device is not None else next(net.parameters()).device
    prepared, recs = _prepared(data, split, part, records)
    names = list(class_names or prepared.classes)
    if len(names) != net.config.num_classes:
        raise ValueError(f"the model has {net.config.num_classes} classes but the data's action index has {len(names)}")
    policy = windows or (WindowPolicy.sparse() if sparse else WindowPolicy())
    options = InferenceOptions(gaze_mode=gaze_mode, seed=seed, batch_size=batch_size, precision=precision,
                               channels_last=channels_last, windows=policy)  # fmt: skip

    every = list(range(len(recs)))
    if max_clips is not None and len(every) > max_clips:
        every = sorted({int(round(x)) for x in np.linspace(0, len(every) - 1, max_clips)})
    local = predict_clips(net, prepared, recs, shard(every, info), options, device=dev, workers=workers,
                          progress=progress and info.is_main)  # fmt: skip
    results, (g_total, g_exact, g_near), n_windows = gather_clip_scores(local, info)
    metrics = clip_metrics(results, recs, names, prepared.verb_of, prepared.noun_of)
    metrics.update(
        {
            "num_windows": n_windows,
            "mode": "sparse" if policy.max_windows else "dense",
            "windows": {"stride": policy.stride, "tail": policy.tail, "max_windows": policy.max_windows},
            "gaze_mode": gaze_mode,
            "seed": seed,
            "gaze_slices": g_total,
            "gaze_exact_cell": g_exact / g_total if g_total else None,
            "gaze_within_one_cell": g_near / g_total if g_total else None,
            "seconds": time.perf_counter() - t0,
        }
    )
    return metrics

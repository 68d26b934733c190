"""Recognise the action in a raw video, window by window, with bounded memory.

The video streams through `engine.inference.VideoReader` (resize as `prepare` does, 8-bit flow
on the fly, centre crop) in the windows of a `WindowPolicy` (default: the authors' test loop);
the window logits are averaged as in evaluation. No gaze recording is needed: the gaze head's
most likely cell per temporal slice is reported with each window, as a timeline.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gaze_attention.data.store import FrameStore
from gaze_attention.engine.checkpoint import unwrap
from gaze_attention.engine.inference import (  # noqa: F401  (re-exported for existing imports)
    PREPARED_SIZE,
    CenterCrop,
    InferenceOptions,
    PreparedClip,
    VideoReader,
    WindowPolicy,
    auto_batch_size,
    autocast_context,
    average_logits,
    model_memory_format,
    run_windows,
    window_starts,
)
from gaze_attention.fsio import write_text


def _top(logits: torch.Tensor, class_names: Sequence[str], k: int) -> list[dict[str, Any]]:
    p = torch.softmax(logits.double(), -1)
    values, idx = p.topk(k)
    return [
        {"class": class_names[j], "index": int(j), "probability": float(v)}
        for v, j in zip(values.tolist(), idx.tolist())
    ]


PREDICT_TAKES = ("a video file, or a prepared clip folder PREPARED/images_rgb/<clip> holding 0001.jpg, 0002.jpg, "
                 "... (the output of `gaze-attention prepare`) or a rawframes folder <clip>/img_00001.jpg, ...")


def open_source(path: Path, size: tuple[int, int], crop: int, use_flow: bool) -> tuple[Any, float, tuple[int, int]]:
    """(source, fps, frame size of the source in pixels) of a video file or a prepared clip folder."""
    if path.is_dir():  # a prepared clip folder (ours or rawframes), read at its own frame size
        store, name = FrameStore.for_clip_folder(path)
        if store.counts(name)[0] == 0:
            raise FileNotFoundError(f"{path}: a prepared clip folder without frames: predict takes {PREDICT_TAKES}")
        clip = PreparedClip(store, name, crop, use_flow)
        height, width = store.image(store.rgb_path(name, 0)).shape[:2]
        return clip, 24.0, (width, height)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    reader = VideoReader(path, size)
    return reader, reader.fps, (reader.width, reader.height)


@torch.no_grad()
def predict_video(
    model: nn.Module,
    video: str | os.PathLike,
    class_names: Sequence[str],
    *,
    flow: str = "dis",
    size: tuple[int, int] = PREPARED_SIZE,
    top_k: int = 5,
    gaze_mode: str = "sample",
    sparse: bool = False,
    stride: int | None = None,
    tail: bool = False,
    batch_size: int | None = None,
    precision: str = "fp32",
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Top-k actions of a video and a per-window timeline (its own top-k and the predicted gaze).

    video: a file PyAV opens, or a prepared clip folder PREPARED/images_rgb/<clip>. flow: dis
    (fast, default), farneback or tvl1 (the paper's, slow); ignored by RGB-only models. size:
    the prepared frame size (w, h) the model was trained on. Windows: the authors' by default;
    stride (frames between starts), tail (a last window ending at the final frame) and sparse
    (at most 10) change them. Gaze per window and slice: the argmax cell of the gaze logits as
    (row, col) and its centre in pixels of the original video.
    """
    net = unwrap(model)
    cfg = net.config
    if len(class_names) != cfg.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {cfg.num_classes} classes")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    video = Path(video)
    t0 = time.perf_counter()
    source, fps, (width0, height0) = open_source(video, size, cfg.crop, cfg.use_flow)
    policy = WindowPolicy(stride=stride, tail=tail, max_windows=10 if sparse else None)
    options = InferenceOptions(gaze_mode=gaze_mode, seed=seed, batch_size=batch_size, precision=precision,
                               windows=policy)  # fmt: skip
    length = source.num_frames
    starts = policy.starts(length, cfg.frames)
    if isinstance(source, VideoReader):
        windows = source.windows(starts, cfg.frames, cfg.crop, flow if cfg.use_flow else None)
        frame_w, frame_h = size
        # Times from the frames' own timestamps: right for variable-frame-rate video too.
        start_s, end_s = (lambda i: float(source.timestamps[i])), source.end_time
    else:
        start_s, end_s = (lambda i: i / fps), (lambda i: (i + 1) / fps)
        windows = source.windows(starts, cfg.frames)
        frame_w, frame_h = width0, height0
    geometry = CenterCrop(frame_h, frame_w, cfg.crop)
    scale = geometry.box.width / frame_w  # fit_short_side may have upscaled the prepared frames

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(starts), desc=video.name, unit="window", dynamic_ncols=True)
    k = min(top_k, cfg.num_classes)
    side = net.grid[1]
    slice_len = cfg.frames // net.grid[0]
    timeline, logits = [], []
    try:
        for out in run_windows(net, windows, options):
            logits.append(out.logits)
            end = out.start + max(out.frames, 1) - 1
            entry: dict[str, Any] = {
                "start_frame": out.start,
                "end_frame": end,
                "start_s": start_s(out.start),
                "end_s": end_s(end),
                "top": _top(out.logits, class_names, k),
            }
            if out.gaze_logits is not None:
                entry["gaze"] = []
                for t, c in enumerate(out.gaze_logits.flatten(1).argmax(-1).tolist()):  # [T']
                    row, col = divmod(c, side)
                    # Cell centre: crop -> resized frame -> prepared size -> original video pixels.
                    x = (geometry.box.x0 + (col + 0.5) * cfg.crop / side) / scale * width0 / frame_w
                    y = (geometry.box.y0 + (row + 0.5) * cfg.crop / side) / scale * height0 / frame_h
                    entry["gaze"].append(
                        {"slice": t, "first_frame": out.start + t * slice_len, "row": row, "col": col, "x": x, "y": y}
                    )
            timeline.append(entry)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if not logits:
        raise ValueError(f"{video}: no frames could be decoded")
    mean = average_logits(logits)
    return {
        "video": str(video),
        "frames": length,
        "fps": fps,
        "video_size": [width0, height0],
        "flow": flow if cfg.use_flow else None,
        "gaze_mode": gaze_mode,
        "seed": seed,
        "windows_policy": {"frames": cfg.frames, "stride": policy.stride or cfg.frames, "tail": tail,
                           "max_windows": policy.max_windows},  # fmt: skip
        "grid": list(net.grid),
        "top": _top(mean, class_names, k),
        "probabilities": torch.softmax(mean, -1).tolist(),
        "windows": timeline,
        "seconds": {"total": time.perf_counter() - t0},
    }


def write_timeline_csv(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """One row per window: times, frames, top-k classes with probabilities, gaze cell and pixel per slice."""
    path = Path(path)
    windows = result["windows"]
    k = len(windows[0]["top"]) if windows else 0
    slices = len(windows[0].get("gaze", [])) if windows else 0
    header = ["start_s", "end_s", "start_frame", "end_frame"]
    header += [f"{c}{i}" for i in range(1, k + 1) for c in ("class", "p")]
    header += [f"gaze{t}_{c}" for t in range(slices) for c in ("row", "col", "x", "y")]
    buf = io.StringIO(newline="")
    out = csv.writer(buf)
    out.writerow(header)
    for w in windows:
        row: list[Any] = [f"{w['start_s']:.3f}", f"{w['end_s']:.3f}", w["start_frame"], w["end_frame"]]
        for t in w["top"]:
            row += [t["class"], f"{t['probability']:.6f}"]
        for g in w.get("gaze", []):
            row += [g["row"], g["col"], f"{g['x']:.1f}", f"{g['y']:.1f}"]
        out.writerow(row)
    return write_text(path, buf.getvalue())


def format_prediction(result: dict[str, Any], max_windows: int = 50) -> str:
    """Human-readable top-k and per-window lines (the first `max_windows` windows)."""
    lines = [f"{result['video']}: {result['frames']} frames at {result['fps']:.1f} fps, "
             f"{len(result['windows'])} window(s)"]  # fmt: skip
    for i, t in enumerate(result["top"], 1):
        lines.append(f"  {i}. {t['class']:<32s} {100 * t['probability']:6.2f}%")
    for w in result["windows"][:max_windows]:
        best = w["top"][0]
        text = (f"  {w['start_s']:8.2f}-{w['end_s']:8.2f} s (frames {w['start_frame']:5d}-{w['end_frame']:5d}): "
                f"{best['class']} ({100 * best['probability']:.1f}%)")  # fmt: skip
        if "gaze" in w:
            cells = " ".join(f"({g['row']},{g['col']})" for g in w["gaze"])
            text += f"  gaze cells {cells}"
        lines.append(text)
    if len(result["windows"]) > max_windows:
        lines.append(f"  ... {len(result['windows']) - max_windows} more window(s): see --timeline-csv / --json")
    return "\n".join(lines)

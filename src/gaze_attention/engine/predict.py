"""Recognise the action in a raw video: decode, resize, optical flow on the fly, windows.

The video goes through the same steps as `prepare` + the test-time dataset (resize to the
prepared frame size, 8-bit flow, centre crop, non-overlapping windows of the model's frame
count) and the window logits are averaged, as in evaluation. No gaze recording is needed:
the gaze head's most likely cell per temporal slice is reported with each window.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gaze_attention.engine.checkpoint import unwrap
from gaze_attention.engine.evaluate import (
    auto_batch_size,
    autocast_context,
    model_memory_format,
    window_starts,
)


def _video_info(path: Path) -> tuple[int, int, float]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return stream.codec_context.width, stream.codec_context.height, float(rate) if rate else 24.0


def load_video(
    path: str | os.PathLike, size: tuple[int, int] = (340, 256), flow: str | None = "dis"
) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB uint8 [L, h, w, 3] resized to size = (w, h) as `prepare` does, and 8-bit flow [L, h, w, 2]."""
    import cv2

    from gaze_attention.data import FlowComputer
    from gaze_attention.data.prepare import decode_video

    frames = decode_video(path, size)  # BGR [h, w, 3] each
    if not frames:
        raise ValueError(f"no frames decoded from {path}")
    rgb = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames])
    uv = None
    if flow is not None:
        uv = FlowComputer(flow).video([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames])
    return rgb, uv


@torch.no_grad()
def predict_video(
    model: nn.Module,
    video: str | os.PathLike,
    class_names: Sequence[str],
    *,
    flow: str = "dis",
    size: tuple[int, int] = (340, 256),
    top_k: int = 5,
    gaze_mode: str = "sample",
    sparse: bool = False,
    batch_size: int | None = None,
    precision: str = "fp32",
    seed: int = 0,
) -> dict[str, Any]:
    """Top-k actions of a video and, per window, its own top-k and the predicted gaze.

    flow: dis (fast, default), farneback or tvl1 (the paper's, slow); ignored by RGB-only
    models. size: the prepared frame size (w, h) the model was trained on. Gaze per window and
    slice: the argmax cell of the gaze logits as (row, col) and its centre in pixels of the
    original video.
    """
    from gaze_attention.data import CropFlip
    from gaze_attention.data.transforms import fit_short_side, to_unit_range

    net = unwrap(model)
    cfg = net.config
    if len(class_names) != cfg.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {cfg.num_classes} classes")
    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"video not found: {video}")
    t0 = time.perf_counter()
    width0, height0, fps = _video_info(video)
    rgb, uv = load_video(video, size, flow if cfg.use_flow else None)
    t_decode = time.perf_counter() - t0
    length = len(rgb)
    if length < cfg.frames:  # edge-pad short videos, as the test-time dataset does
        idx = np.minimum(np.arange(cfg.frames), length - 1)
        rgb = rgb[idx]
        uv = uv[idx] if uv is not None else None
    rgb = fit_short_side(rgb, cfg.crop)
    scale = rgb.shape[2] / size[0]  # fit_short_side may have upscaled the prepared frames
    if uv is not None:
        uv = fit_short_side(uv, cfg.crop)
    h, w = rgb.shape[1:3]
    crop = CropFlip.center(h, w, cfg.crop)
    x_rgb = to_unit_range(crop.frames(rgb))  # [3, L, crop, crop]
    x_flow = to_unit_range(crop.flow(uv)) if uv is not None else None  # [2, L, crop, crop]

    dev = next(net.parameters()).device
    memory = model_memory_format(net)
    if batch_size is None:
        batch_size = auto_batch_size(cfg.frames, cfg.crop, dev)
    if precision == "auto":
        from gaze_attention.engine.precision import resolve_precision

        precision = resolve_precision(precision, dev).precision
    generator = torch.Generator(device=dev).manual_seed(seed)
    starts = window_starts(x_rgb.shape[1], cfg.frames, sparse)
    was_training = net.training
    net.eval()
    logits_all, gaze_all = [], []
    try:
        for i in range(0, len(starts), batch_size):
            chunk = starts[i : i + batch_size]
            r = torch.stack([x_rgb[:, s : s + cfg.frames] for s in chunk]).to(dev)
            f = None
            if x_flow is not None:
                f = torch.stack([x_flow[:, s : s + cfg.frames] for s in chunk]).to(dev)
                f = f.contiguous(memory_format=memory)
            with autocast_context(dev, precision):
                out = net(r.contiguous(memory_format=memory), f, gaze_mode=gaze_mode, generator=generator)
            logits_all.append(out.logits.float().cpu())
            if out.gaze_logits is not None:
                gaze_all.append(out.gaze_logits.float().cpu())
    finally:
        net.train(was_training)
    logits = torch.cat(logits_all)  # [W, C]
    gaze = torch.cat(gaze_all) if gaze_all else None  # [W, T', S, S]
    k = min(top_k, cfg.num_classes)

    def top(lg: torch.Tensor) -> list[dict[str, Any]]:
        p = torch.softmax(lg.double(), -1)
        values, idx = p.topk(k)
        return [
            {"class": class_names[j], "index": int(j), "probability": float(v)}
            for v, j in zip(values.tolist(), idx.tolist())
        ]

    side = net.grid[1]
    slice_len = cfg.frames // net.grid[0]
    windows = []
    for n, s in enumerate(starts):
        entry: dict[str, Any] = {
            "start_frame": s,
            "end_frame": min(s + cfg.frames, length) - 1,
            "start_s": s / fps,
            "top": top(logits[n]),
        }
        if gaze is not None:
            cells = gaze[n].flatten(1).argmax(-1).tolist()  # [T']
            entry["gaze"] = []
            for t, c in enumerate(cells):
                row, col = divmod(c, side)
                # Cell centre: crop -> resized frame -> prepared size -> original video pixels.
                x = (crop.x0 + (col + 0.5) * cfg.crop / side) / scale * width0 / size[0]
                y = (crop.y0 + (row + 0.5) * cfg.crop / side) / scale * height0 / size[1]
                entry["gaze"].append(
                    {"slice": t, "first_frame": s + t * slice_len, "row": row, "col": col, "x": x, "y": y}
                )
        windows.append(entry)
    return {
        "video": str(video),
        "frames": length,
        "fps": fps,
        "video_size": [width0, height0],
        "flow": flow if cfg.use_flow else None,
        "gaze_mode": gaze_mode,
        "grid": list(net.grid),
        "top": top(logits.mean(0)),
        "windows": windows,
        "seconds": {"decode_and_flow": t_decode, "total": time.perf_counter() - t0},
    }


def format_prediction(result: dict[str, Any]) -> str:
    """Human-readable top-k and per-window lines."""
    lines = [f"{result['video']}: {result['frames']} frames at {result['fps']:.1f} fps, "
             f"{len(result['windows'])} window(s)"]  # fmt: skip
    for i, t in enumerate(result["top"], 1):
        lines.append(f"  {i}. {t['class']:<32s} {100 * t['probability']:6.2f}%")
    for w in result["windows"]:
        best = w["top"][0]
        text = f"  frames {w['start_frame']:5d}-{w['end_frame']:5d}: {best['class']} ({100 * best['probability']:.1f}%)"
        if "gaze" in w:
            cells = " ".join(f"({g['row']},{g['col']})" for g in w["gaze"])
            text += f"  gaze cells {cells}"
        lines.append(text)
    return "\n".join(lines)

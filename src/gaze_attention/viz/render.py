"""What the model sees: gaze, attention and Grad-CAM++ of one or more models on a clip.

The paper's qualitative figure (Min & Corso, WACV 2021) shows Grad-CAM++ of the last
Inception block over time for models with and without gaze. `analyse_clip` runs a model
over a clip in non-overlapping windows (as evaluation does) and returns per-frame maps;
`render_clip` draws them for several models side by side into a GIF, MP4 or PNG contact
sheet; `render_comparison` is the one-call figure for a test sample of `ClipDataset`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gaze_attention.viz.gradcam import GradCAMPlusPlus, Norm, normalize_maps
from gaze_attention.viz.inputs import Clip
from gaze_attention.viz.overlay import (
    draw_cells,
    draw_points,
    frames_to_uint8,
    grid_to_frames,
    label_panel,
    overlay_heatmap,
    stack,
    title_bar,
    upscale,
    wrap_text,
)
from gaze_attention.viz.writers import (
    SheetGroup,
    contact_sheet,
    even_frame_indices,
    write_png,
    write_video,
)

OVERLAYS = ("gaze", "sample", "recorded", "attention", "gradcam")
HEATMAPS = ("gaze", "attention", "gradcam")  # each gets a panel; markers go on every panel

__all__ = [
    "HEATMAPS",
    "OVERLAYS",
    "ClipAnalysis",
    "analyse_clip",
    "default_cam_layers",
    "parse_overlays",
    "render_clip",
    "render_comparison",
    "render_panels",
    "window_starts",
]


@dataclass
class ClipAnalysis:
    """Per-frame results of a model on a clip of L frames (maps are [L, H, W] in [0, 1]).

    probs: [C] softmax of the window-averaged logits; target: the class Grad-CAM++ explains;
    gaze: softmax(pi) per slice, divided by its maximum (None without a gaze head);
    gaze_peak: [L] the largest cell probability behind each frame;
    cells: [L, 2] (row, col) of the gaze cell the head used (argmax of z), -1 without one.
    """

    probs: np.ndarray
    target: int
    grid: tuple[int, int]
    gaze: np.ndarray | None = None
    gaze_peak: np.ndarray | None = None
    attention: np.ndarray | None = None
    cam: np.ndarray | None = None
    cells: np.ndarray | None = None


def parse_overlays(spec: str | Sequence[str]) -> tuple[str, ...]:
    """'gaze,sample' or a sequence -> validated tuple of overlay names."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    bad = [s for s in items if s not in OVERLAYS]
    if bad:
        raise ValueError(f"unknown overlay(s) {bad}; choose from {', '.join(OVERLAYS)}")
    return tuple(dict.fromkeys(items))


def default_cam_layers(model: nn.Module) -> list[str]:
    """`Mixed_5c` of each backbone stream (summed, as the streams are); for a ViT backbone the
    last block's tokens as a [B, C, T', H', W'] map (`backbone.token_map`); else the last Conv3d."""
    names = dict(model.named_modules())
    if "backbone.token_map" in names:
        return ["backbone.token_map"]
    layers = [n for n in ("backbone.model_rgb.Mixed_5c", "backbone.model_flow.Mixed_5c")
              if n in names]
    if layers:
        return layers
    convs = [n for n, m in names.items() if isinstance(m, nn.Conv3d)]
    if not convs:
        raise ValueError("no Mixed_5c or Conv3d layer found: name the Grad-CAM++ layers")
    return [convs[-1]]


def window_starts(num_frames: int, window: int) -> list[int]:
    """Windows whose maps cover every frame: the engine's windows plus one flush with the end
    (`WindowPolicy(tail=True)`); a clip shorter than the window gets one at 0 (padded)."""
    from gaze_attention.engine.inference import WindowPolicy

    return WindowPolicy(tail=True).starts(num_frames, window)


def _first_param_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def analyse_clip(
    model: nn.Module,
    clip: Clip,
    *,
    gradcam: bool = True,
    gaze_mode: str = "sample",
    target: int | None = None,
    norm: Norm = "frame",
    layers: Sequence[str] | None = None,
    seed: int = 0,
) -> ClipAnalysis:
    """Run a gaze-attention model over a clip window by window; collect per-frame maps.

    The windows and gaze samples are those of `evaluate` and `predict` (`engine.inference`):
    `probs` is the softmax of the logits averaged over the authors' windows, so the three
    commands report the same probabilities for the same clip, checkpoint and seed. Frames
    after the last full window get their maps from one more window ending at the last frame
    (`WindowPolicy(tail=True)`), which does not count in `probs`. Each window's gaze sample
    depends on (seed, clip name, window start) only, so the Grad-CAM++ pass sees the same gaze
    as the prediction pass. target: class for Grad-CAM++; None = the clip's prediction. norm:
    min-max normalisation of attention and Grad-CAM++ per "frame" or per "clip".
    """
    from gaze_attention.engine.inference import WindowPolicy, average_logits

    if model.training:
        warnings.warn("analyse_clip: the model is in training mode (call model.eval())",
                      stacklevel=2)
    use_flow = bool(getattr(model.config, "use_flow", False))
    if use_flow and clip.flow is None:
        raise ValueError("the model uses optical flow but the clip has none")
    frames = int(model.config.frames)
    scored = WindowPolicy().starts(clip.num_frames, frames)  # what the prediction averages
    starts = window_starts(clip.num_frames, frames)  # what the maps need
    forward = _window_forward(model, clip, use_flow, gaze_mode, seed)
    if gradcam and target is None and len(starts) > 1:
        # The clip's prediction needs every window first; then explain that one class.
        with torch.no_grad():
            target = int(average_logits([forward(s).logits[0] for s in scored]).argmax())
    outputs, cams = _run_windows(model, forward, starts, gradcam, target, layers, frames, clip)
    logits = average_logits([o.logits for o in outputs if o.start in scored])  # [C]
    if target is None:
        target = int(logits.argmax())
    result = ClipAnalysis(probs=torch.softmax(logits, 0).numpy(), target=int(target), grid=tuple(model.grid))
    _per_frame_maps(result, outputs, cams, starts, frames, clip, norm)
    return result


def _window_forward(model: nn.Module, clip: Clip, use_flow: bool, gaze_mode: str, seed: int):
    """start -> the model's output on the window of `clip` at that start (batch of one)."""
    from gaze_attention.engine.inference import InferenceOptions, TensorClip, forward_windows

    device = _first_param_device(model)
    source = TensorClip(clip.rgb, clip.flow if use_flow else None, name=clip.name)
    options = InferenceOptions(gaze_mode=gaze_mode, seed=seed)
    frames = int(model.config.frames)

    def forward(start: int) -> Any:
        w = source.window(start, frames)
        flow = None if w.flow is None else w.flow[None].to(device)
        return forward_windows(model, w.rgb[None].to(device), flow, [clip.name], [start], options)

    return forward


def _run_windows(model: nn.Module, forward, starts: list[int], gradcam: bool, target: int | None,
                 layers: Sequence[str] | None, frames: int, clip: Clip):
    """Each window's `WindowOutput` (small, on the CPU: a long clip never holds every window's
    features and autograd history at once) and, with Grad-CAM++, its [T, H, W] map."""
    from gaze_attention.engine.inference import WindowOutput

    def keep(start: int, out: Any) -> WindowOutput:
        def cpu(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x[0].detach().float().cpu()

        return WindowOutput(clip=clip.name, start=start, frames=min(frames, clip.num_frames - start),
                            logits=out.logits[0].detach().double().cpu(), gaze_logits=cpu(out.gaze_logits),
                            z=cpu(out.z), attention=cpu(getattr(out, "attention", None)))  # fmt: skip

    if not gradcam:
        with torch.no_grad():
            return [keep(s, forward(s)) for s in starts], []
    outputs, cams = [], []
    size = tuple(clip.rgb.shape[2:])  # (H, W)
    with GradCAMPlusPlus(model, layers or default_cam_layers(model)) as cam:
        for s in starts:
            res = cam(lambda s=s: forward(s), target=target, size=(frames, *size), norm="none")
            outputs.append(keep(s, res.output))
            cams.append(res.cam[0].cpu().numpy())  # [T, H, W]
    return outputs, cams


def _per_frame_maps(result: ClipAnalysis, outputs: list[Any], cams: list[np.ndarray], starts: list[int],
                    frames: int, clip: Clip, norm: Norm) -> None:
    """Fill the per-frame maps of `result`: each frame takes them from the first window that covers it."""
    length, size = clip.num_frames, tuple(clip.rgb.shape[2:])
    t_slices, side = result.grid
    owner = np.full(length, -1)
    for w, s in enumerate(starts):
        span = np.arange(s, min(s + frames, length))
        owner[span[owner[span] < 0]] = w
    local = np.arange(length) - np.asarray(starts)[owner]  # frame index inside its window

    def per_frame(maps: list[np.ndarray]) -> np.ndarray:
        return np.stack([maps[owner[i]][local[i]] for i in range(length)])

    if all(o.gaze_logits is not None for o in outputs):
        slice_of = np.minimum(np.arange(frames) * t_slices // frames, t_slices - 1)  # [T]
        gz, peak, cells = [], [], []
        for o in outputs:
            p = torch.softmax(o.gaze_logits.flatten(1), 1)  # [T', K]
            pmax = p.max(1).values  # [T']
            gz.append(grid_to_frames((p / pmax[:, None]).view(t_slices, side, side), frames, size))
            peak.append(pmax.numpy()[slice_of])
            k = o.z.flatten(1).argmax(1).numpy()  # [T']
            cells.append(np.stack([k // side, k % side], 1)[slice_of])
        result.gaze = per_frame(gz)
        result.gaze_peak = per_frame(peak)
        result.cells = per_frame(cells)
    if all(o.attention is not None for o in outputs):
        att = per_frame([grid_to_frames(o.attention, frames, size) for o in outputs])
        result.attention = normalize_maps(torch.from_numpy(att)[None], norm)[0].numpy()
    if cams:
        result.cam = normalize_maps(torch.from_numpy(per_frame(cams))[None], norm)[0].numpy()


def _class_name(class_names: Sequence[str] | None, index: int) -> str:
    if class_names is not None and 0 <= index < len(class_names):
        return str(class_names[index])
    return f"class {index}"


def _title(name: str, analysis: ClipAnalysis, class_names: Sequence[str] | None,
           label: int | None, top: int = 3) -> list[str]:
    order = np.argsort(-analysis.probs)[:top]
    preds = " | ".join(f"{_class_name(class_names, int(i))} {analysis.probs[i]:.2f}"
                       for i in order)
    lines = [f"{name}: {preds}" if name else preds]
    if label is not None:
        mark = "correct" if int(order[0]) == label else "wrong"
        lines.append(f"true: {_class_name(class_names, label)} ({mark})")
    return lines


def render_panels(
    frames: np.ndarray,
    analysis: ClipAnalysis,
    overlays: Sequence[str],
    gaze_point: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.45,
    scale: int = 1,
) -> list[tuple[str, np.ndarray]]:
    """Labelled panels [(label, frames [L, H, W, 3])]: one per heatmap overlay, markers on all.

    Heatmaps: "gaze" softmax(pi), "attention" sigmoid(a), "gradcam" Grad-CAM++; markers:
    "sample" the gaze cell the head used (white box), "recorded" the recorded fixation
    (magenta dot). With no heatmap chosen, one panel of the frames with the markers.
    scale: integer upscaling of frames and maps before drawing (small crops read better).
    """
    overlays = parse_overlays(overlays)
    frames = upscale(frames, scale)
    panels: list[tuple[str, np.ndarray]] = []
    for kind in (k for k in HEATMAPS if k in overlays):
        if kind == "gaze":
            maps, label = analysis.gaze, "gaze softmax(pi)"
            if analysis.gaze_peak is not None:
                label += f", max p {analysis.gaze_peak.max():.2f}"
        elif kind == "attention":
            maps, label = analysis.attention, "attention sigmoid(a)"
        else:
            maps = analysis.cam
            label = f"Grad-CAM++: {_class_name(class_names, analysis.target)}"
        if maps is None:
            panels.append((f"{kind}: n/a for this model", frames.copy()))
        else:
            panels.append((label, overlay_heatmap(frames, upscale(maps, scale), alpha=alpha)))
    if not panels:
        panels.append(("input", frames.copy()))
    out = []
    for label, img in panels:
        if "sample" in overlays and analysis.cells is not None:
            img = draw_cells(img, analysis.cells, analysis.grid[1])
        if "recorded" in overlays and gaze_point is not None:
            img = draw_points(img, gaze_point)
        out.append((label, img))
    return out


def _resolve_target(target: int | str | None, clip: Clip) -> int | None:
    if target == "label":
        return clip.label
    if isinstance(target, str):
        raise ValueError(f"target must be a class index, 'label' or None, got {target!r}")
    return target


def render_clip(
    models: Mapping[str, nn.Module],
    clip: Clip,
    out_path: str | Path,
    class_names: Sequence[str] | None = None,
    overlays: str | Sequence[str] = ("gaze", "sample", "recorded", "attention", "gradcam"),
    *,
    gaze_mode: str | Mapping[str, str] = "sample",
    target: int | str | None = None,
    norm: Norm = "frame",
    layers: Sequence[str] | None = None,
    seed: int = 0,
    fps: float | None = None,
    sheet_frames: int = 8,
    display: int = 224,
    layout: str = "auto",
) -> Path:
    """Render models on a clip to out_path: .gif/.mp4 (a panel per map) or .png (a sheet).

    gaze_mode: one for all models or one per model name. target: class index, "label" (the
    clip's label, same class for every model) or None (each model's prediction).
    fps: output rate (default: the clip's). sheet_frames: columns of a PNG contact sheet,
    spread evenly over the clip. display: crops smaller than this are upscaled by an
    integer factor for legibility. layout of a video: "columns" (models side by side, their
    maps stacked), "rows" (a row of maps per model), "auto" (columns for several models,
    a row for one).
    """
    if layout not in ("auto", "columns", "rows"):
        raise ValueError(f"layout must be 'auto', 'columns' or 'rows', got {layout!r}")
    if not models:
        raise ValueError("no models to render")
    overlays = parse_overlays(overlays)
    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in (".png", ".gif", ".mp4", ".m4v", ".mov"):
        raise ValueError(f"output must be .png, .gif or .mp4, got {out_path.name}")
    frames = frames_to_uint8(clip.rgb)  # [L, H, W, 3]
    tgt = _resolve_target(target, clip)
    gaze_point = clip.gaze_point if "recorded" in overlays else None
    scale = max(1, display // frames.shape[1])

    blocks: list[tuple[list[str], list[tuple[str, np.ndarray]]]] = []
    for name, model in models.items():
        mode = gaze_mode if isinstance(gaze_mode, str) else gaze_mode[name]
        analysis = analyse_clip(model, clip, gradcam="gradcam" in overlays, gaze_mode=mode,
                                target=tgt, norm=norm, layers=layers, seed=seed)
        title = _title(name, analysis, class_names, clip.label)
        blocks.append((title, render_panels(frames, analysis, overlays, gaze_point,
                                            class_names, scale=scale)))

    if suffix == ".png":
        idx = even_frame_indices(clip.num_frames, sheet_frames)
        groups = [SheetGroup(title=title, rows=panels) for title, panels in blocks]
        labels = [f"frame {i} ({i / clip.fps:.2f} s)" for i in idx]
        sheet = contact_sheet(groups, idx, column_labels=labels,
                              title=[clip.name] if clip.name else None)
        return write_png(out_path, sheet)

    if layout == "auto":
        layout = "columns" if len(blocks) > 1 else "rows"
    labelled = [[label_panel(img, label) for label, img in panels] for _, panels in blocks]
    if layout == "rows":
        rows = [stack(panels, axis="horizontal") for panels in labelled]
        rows = [title_bar(row, title) for row, (title, _) in zip(rows, blocks, strict=True)]
        video = stack(rows, axis="vertical", gap=6)
    else:
        # Equal title heights keep the panels of all models aligned row by row.
        titles = [wrap_text(title, frames.shape[2] * scale) for title, _ in blocks]
        lines = max(len(t) for t in titles)
        columns = [title_bar(stack(panels, axis="vertical"), title, wrap=False, min_lines=lines)
                   for panels, title in zip(labelled, titles, strict=True)]
        video = stack(columns, axis="horizontal", gap=6)
    return write_video(out_path, video, fps=fps or clip.fps)


def render_comparison(
    models: Mapping[str, nn.Module],
    clip_sample: Mapping[str, Any],
    class_names: Sequence[str] | None,
    out_path: str | Path,
    overlays: str | Sequence[str] = ("gradcam", "recorded"),
    *,
    target: int | str | None = "label",
    norm: Norm = "frame",
    gaze_mode: str = "sample",
    frames: int = 8,
    seed: int = 0,
    fps: float = 24.0,
    name: str = "",
) -> Path:
    """One figure for a test clip: a PNG contact sheet with a row per model (paper style).

    clip_sample: a test sample of `ClipDataset` (rgb [3, L, H, W], flow, gaze_point, label).
    By default every model's Grad-CAM++ explains the true class (the predicted class when
    the sample has no label), with the recorded fixation drawn on top. The suffix of
    out_path picks the format, so a .gif or .mp4 works too.
    """
    clip = Clip.from_sample(dict(clip_sample), name=name, fps=fps)
    if target == "label" and clip.label is None:
        target = None
    return render_clip(models, clip, out_path, class_names, overlays, gaze_mode=gaze_mode,
                       target=target, norm=norm, seed=seed, sheet_frames=frames)

"""Drawing on RGB frames: heatmaps, gaze cells and points, title bars, panel layout.

All frames are uint8 numpy arrays [T, H, W, 3] (RGB); maps are float arrays in [0, 1].
Nothing here knows about models: `gaze_attention.viz.render` turns model outputs into the
per-frame maps and markers drawn here.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

Color = tuple[int, int, int]

# Colours absent from the jet colormap, so markers stay visible on any heatmap.
GAZE_POINT_COLOR: Color = (255, 0, 255)
SAMPLE_CELL_COLOR: Color = (255, 255, 255)
BACKGROUND: Color = (24, 24, 24)
TEXT_COLOR: Color = (235, 235, 235)

__all__ = [
    "BACKGROUND",
    "GAZE_POINT_COLOR",
    "SAMPLE_CELL_COLOR",
    "colorize",
    "draw_cells",
    "draw_points",
    "frames_to_uint8",
    "grid_to_frames",
    "label_panel",
    "overlay_heatmap",
    "pad_to",
    "point_pixels",
    "stack",
    "text_image",
    "title_bar",
    "upscale",
    "wrap_text",
]


def frames_to_uint8(rgb: torch.Tensor | np.ndarray) -> np.ndarray:
    """Model input rgb [3, T, H, W] in [-1, 1] -> uint8 frames [T, H, W, 3]."""
    x = rgb.detach().cpu().float().numpy() if isinstance(rgb, torch.Tensor) else np.asarray(rgb)
    x = (x.astype(np.float32) + 1.0) * 127.5
    return np.clip(np.rint(x), 0, 255).astype(np.uint8).transpose(1, 2, 3, 0)


@lru_cache(maxsize=8)
def _lut(cmap: str) -> np.ndarray:
    import matplotlib

    colormap = matplotlib.colormaps[cmap]
    return (colormap(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).round().astype(np.uint8)


def colorize(maps: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """Float maps [..., H, W] in [0, 1] -> uint8 colours [..., H, W, 3] via a matplotlib map."""
    idx = np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float32)) * 255.0, 0, 255)
    return _lut(cmap)[np.rint(idx).astype(np.uint8)]


def overlay_heatmap(
    frames: np.ndarray, maps: np.ndarray, alpha: float = 0.45, cmap: str = "jet"
) -> np.ndarray:
    """Blend maps [T, H, W] in [0, 1] over frames [T, H, W, 3] with a colormap."""
    if maps.shape != frames.shape[:3]:
        raise ValueError(f"maps {maps.shape} do not match frames {frames.shape[:3]}")
    heat = colorize(maps, cmap).astype(np.float32)
    out = (1.0 - alpha) * frames.astype(np.float32) + alpha * heat
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def grid_to_frames(
    maps: torch.Tensor | np.ndarray, frames: int, size: tuple[int, int], spatial: str = "bilinear"
) -> np.ndarray:
    """Per-slice maps [T', S, S] -> per-frame maps [frames, H, W].

    Slice t covers frames [t*frames/T', (t+1)*frames/T') (I3D's temporal stride), so time
    is repeated block-wise; space is upsampled with `spatial` ("bilinear" or "nearest").
    """
    m = torch.as_tensor(np.asarray(maps, dtype=np.float32)) if not isinstance(
        maps, torch.Tensor) else maps.detach().float().cpu()
    t_slices = m.shape[0]
    kwargs = {"align_corners": False} if spatial == "bilinear" else {}
    up = F.interpolate(m[:, None], size=size, mode=spatial, **kwargs)[:, 0]  # [T', H, W]
    which = np.minimum(np.arange(frames) * t_slices // frames, t_slices - 1)
    return up.numpy()[which]


def _contrast_ring(color: Color) -> Color:
    return (0, 0, 0) if sum(color) > 382 else (255, 255, 255)


def draw_cells(
    frames: np.ndarray, cells: np.ndarray, grid: int, color: Color = SAMPLE_CELL_COLOR,
    thickness: int = 2,
) -> np.ndarray:
    """Outline one grid cell per frame: cells [T, 2] = (row, col) on an S x S grid (-1 = none)."""
    out = frames.copy()
    _, h, w, _ = out.shape
    ring = _contrast_ring(color)
    for t, (r, c) in enumerate(np.asarray(cells)):
        if r < 0 or c < 0:
            continue
        y0, y1 = round(r * h / grid), round((r + 1) * h / grid) - 1
        x0, x1 = round(c * w / grid), round((c + 1) * w / grid) - 1
        img = np.ascontiguousarray(out[t])
        cv2.rectangle(img, (x0, y0), (x1, y1), ring, thickness + 2)
        cv2.rectangle(img, (x0, y0), (x1, y1), color, thickness)
        out[t] = img
    return out


def point_pixels(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalised points [T, 2] (x, y in [0, 1], nan = none) -> int pixels [T, 2] (-1 = none).

    A normalised coordinate u falls in pixel floor(u * size), the pixel whose area holds it.
    """
    p = np.asarray(points, dtype=np.float64)
    valid = np.isfinite(p).all(axis=1) & (p >= 0).all(axis=1) & (p <= 1).all(axis=1)
    px = np.full(p.shape, -1, dtype=np.int64)
    if valid.any():
        px[valid, 0] = np.minimum(np.floor(p[valid, 0] * width), width - 1)
        px[valid, 1] = np.minimum(np.floor(p[valid, 1] * height), height - 1)
    return px


def draw_points(
    frames: np.ndarray, points: np.ndarray, color: Color = GAZE_POINT_COLOR, radius: int = 4
) -> np.ndarray:
    """Draw normalised points [T, 2] (x, y, nan = none) as filled dots centred on their pixel."""
    out = frames.copy()
    _, h, w, _ = out.shape
    ring = _contrast_ring(color)
    for t, (x, y) in enumerate(point_pixels(points, h, w)):
        if x < 0:
            continue
        img = np.ascontiguousarray(out[t])
        cv2.circle(img, (int(x), int(y)), radius + 1, ring, -1, lineType=cv2.LINE_8)
        cv2.circle(img, (int(x), int(y)), radius, color, -1, lineType=cv2.LINE_8)
        out[t] = img
    return out


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _fit(text: str, width: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
         draw: ImageDraw.ImageDraw) -> str:
    """Cut `text` with '...' so that it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def wrap_text(lines: Sequence[str], width: int, font_size: int = 13, pad: int = 4) -> list[str]:
    """Greedy word wrap of each line to `width` pixels (words too long are cut with '...')."""
    font = _font(font_size)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    room = width - 2 * pad
    out: list[str] = []
    for line in lines:
        current = ""
        for word in line.split(" "):
            trial = f"{current} {word}" if current else word
            if current and draw.textlength(trial, font=font) > room:
                out.append(_fit(current, room, font, draw))
                current = word
            else:
                current = trial
        out.append(_fit(current, room, font, draw))
    return out


def text_image(
    lines: Sequence[str], width: int, font_size: int = 13, pad: int = 4,
    fg: Color = TEXT_COLOR, bg: Color = BACKGROUND, wrap: bool = False, min_lines: int = 1,
) -> np.ndarray:
    """Render text lines into a uint8 image [h, width, 3].

    Lines too long are wrapped at spaces (`wrap`) or cut with '...'; the image holds at
    least `min_lines` lines, so that bars side by side can be given one height.
    """
    font = _font(font_size)
    if wrap:
        lines = wrap_text(lines, width, font_size, pad)
    line_h = font_size + 4
    img = Image.new("RGB", (width, pad * 2 + line_h * max(len(lines), min_lines, 1)), bg)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * line_h), _fit(line, width - 2 * pad, font, draw), fill=fg,
                  font=font)
    return np.asarray(img)


def title_bar(frames: np.ndarray, lines: Sequence[str], font_size: int = 13,
              wrap: bool = True, min_lines: int = 1) -> np.ndarray:
    """Put a text bar above every frame of [T, H, W, 3] (long lines wrapped)."""
    bar = text_image(lines, frames.shape[2], font_size=font_size, wrap=wrap, min_lines=min_lines)
    bars = np.broadcast_to(bar, (frames.shape[0], *bar.shape))
    return np.concatenate([bars, frames], axis=1)


def label_panel(frames: np.ndarray, label: str, font_size: int = 11) -> np.ndarray:
    """Caption a panel [T, H, W, 3] with a one-line label above it."""
    return title_bar(frames, [label], font_size=font_size, wrap=False)


def upscale(images: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upscaling of frames [T, H, W, 3] or maps [T, H, W] by an integer factor."""
    if factor == 1:
        return images
    t, h, w = images.shape[:3]
    return np.stack([cv2.resize(x, (w * factor, h * factor), interpolation=cv2.INTER_LINEAR)
                     for x in images]).reshape(t, h * factor, w * factor, *images.shape[3:])


def pad_to(frames: np.ndarray, height: int, width: int, color: Color = BACKGROUND) -> np.ndarray:
    """Pad [T, H, W, 3] at the bottom/right to [T, height, width, 3]."""
    t, h, w, _ = frames.shape
    if (h, w) == (height, width):
        return frames
    out = np.empty((t, height, width, 3), dtype=np.uint8)
    out[...] = np.asarray(color, dtype=np.uint8)
    out[:, :h, :w] = frames
    return out


def stack(panels: Sequence[np.ndarray], axis: str = "horizontal", gap: int = 4) -> np.ndarray:
    """Lay out panels [T_i, H_i, W_i, 3] side by side ("horizontal") or on top ("vertical").

    Panels are padded to a common size across the layout axis; a shorter panel holds its
    last frame so clips of different lengths still play together.
    """
    if not panels:
        raise ValueError("no panels to stack")
    t = max(p.shape[0] for p in panels)
    held = [p if p.shape[0] == t else np.concatenate(
        [p, np.repeat(p[-1:], t - p.shape[0], axis=0)]) for p in panels]
    if axis == "horizontal":
        h = max(p.shape[1] for p in held)
        parts = [pad_to(p, h, p.shape[2]) for p in held]
        spacer = np.full((t, h, gap, 3), BACKGROUND, dtype=np.uint8)
        cat_axis = 2
    elif axis == "vertical":
        w = max(p.shape[2] for p in held)
        parts = [pad_to(p, p.shape[1], w) for p in held]
        spacer = np.full((t, gap, w, 3), BACKGROUND, dtype=np.uint8)
        cat_axis = 1
    else:
        raise ValueError(f"axis must be 'horizontal' or 'vertical', got {axis!r}")
    seq: list[np.ndarray] = []
    for i, p in enumerate(parts):
        if i and gap:
            seq.append(spacer)
        seq.append(p)
    return np.concatenate(seq, axis=cat_axis)

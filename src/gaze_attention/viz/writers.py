"""Writers for rendered frames: animated GIF (Pillow), MP4 (PyAV) and PNG contact sheets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from gaze_attention.fsio import atomic_path
from gaze_attention.viz.overlay import BACKGROUND, text_image

__all__ = [
    "SheetGroup",
    "contact_sheet",
    "even_frame_indices",
    "write_gif",
    "write_mp4",
    "write_png",
    "write_video",
]


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"expected frames [T, H, W, 3] with T > 0, got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {frames.dtype}")
    return frames


def write_gif(path: str | Path, frames: np.ndarray, fps: float = 8.0) -> Path:
    """Write uint8 frames [T, H, W, 3] as a looping GIF.

    GIF delays are in centiseconds, so the rate is rounded to that. Pillow merges a frame
    identical to the previous one into it (longer delay), so such frames are not repeated.
    """
    frames = _check_frames(frames)
    images = [Image.fromarray(f).quantize(colors=256, method=Image.Quantize.FASTOCTREE)
              for f in frames]
    duration = max(20, int(round(100.0 / fps)) * 10)
    path = Path(path)
    with atomic_path(path) as tmp:  # never through a link at PATH; no half-written file
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=duration, loop=0, disposal=1)
    return path


def write_mp4(path: str | Path, frames: np.ndarray, fps: float = 8.0, crf: int = 18) -> Path:
    """Write uint8 frames [T, H, W, 3] as H.264 MP4 (libx264; MPEG-4 part 2 if unavailable).

    yuv420p needs even sizes: an odd height or width is padded by one background row/column.
    """
    import av

    frames = _check_frames(frames)
    t, h, w, _ = frames.shape
    he, we = h + h % 2, w + w % 2
    if (he, we) != (h, w):
        padded = np.empty((t, he, we, 3), dtype=np.uint8)
        padded[...] = np.asarray(BACKGROUND, dtype=np.uint8)
        padded[:, :h, :w] = frames
        frames = padded
    rate = Fraction(fps).limit_denominator(1001)
    path = Path(path)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    # The temp name ends in .tmp: the container format is named, not guessed from it.
    container_format = "mov" if path.suffix.lower() == ".mov" else "mp4"
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = we, he
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "medium"}
        else:
            stream.bit_rate = 8_000_000
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write one uint8 image [H, W, 3] as PNG."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, format="PNG")
    return path


def even_frame_indices(num_frames: int, count: int) -> list[int]:
    """`count` frame indices spread evenly over [0, num_frames), centred in their spans."""
    count = max(1, min(count, num_frames))
    return [int((i + 0.5) * num_frames / count) for i in range(count)]


@dataclass
class SheetGroup:
    """A block of contact-sheet rows: a title and (label, frames [T, H, W, 3]) rows."""

    title: Sequence[str]
    rows: Sequence[tuple[str, np.ndarray]] = field(default_factory=list)


def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    """Cut or pad (with the background) an image [h, w, 3] to `height` rows."""
    if image.shape[0] >= height:
        return image[:height]
    pad = np.empty((height - image.shape[0], image.shape[1], 3), dtype=np.uint8)
    pad[...] = np.asarray(BACKGROUND, dtype=np.uint8)
    return np.concatenate([image, pad], axis=0)


def contact_sheet(
    groups: Sequence[SheetGroup],
    frame_indices: Sequence[int],
    column_labels: Sequence[str] | None = None,
    label_width: int = 120,
    gap: int = 3,
    title: Sequence[str] | None = None,
) -> np.ndarray:
    """Tile chosen frames into one image: columns are times, rows are (group, panel).

    An optional title goes on top; every group gets a full-width title bar; every row a
    label strip on its left.
    """
    if not groups or not any(g.rows for g in groups):
        raise ValueError("nothing to put on the contact sheet")
    tile_h = max(f.shape[1] for g in groups for _, f in g.rows)
    tile_w = max(f.shape[2] for g in groups for _, f in g.rows)
    n = len(frame_indices)
    width = label_width + n * (tile_w + gap)
    bg = np.asarray(BACKGROUND, dtype=np.uint8)
    parts: list[np.ndarray] = []
    if title:
        parts.append(text_image(list(title), width, font_size=14, wrap=True))
    if column_labels is not None:
        strips = [text_image([""], label_width, font_size=11)]
        strips += [text_image([label], tile_w + gap, font_size=11) for label in column_labels]
        parts.append(np.concatenate(strips, axis=1))
    for group in groups:
        parts.append(text_image(list(group.title), width, wrap=True))
        for label, frames in group.rows:
            tiles = [_fit_height(text_image([label], label_width, font_size=11, wrap=True),
                                 tile_h)]
            for i in frame_indices:
                f = frames[min(i, frames.shape[0] - 1)]
                tile = np.empty((tile_h, tile_w + gap, 3), dtype=np.uint8)
                tile[...] = bg
                tile[: f.shape[0], : f.shape[1]] = f
                tiles.append(tile)
            parts.append(np.concatenate(tiles, axis=1))
            parts.append(np.full((gap, width, 3), bg))
    return np.concatenate(parts, axis=0)


def write_video(path: str | Path, frames: np.ndarray, fps: float = 8.0) -> Path:
    """Write frames as .gif or .mp4 according to the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return write_gif(path, frames, fps)
    if suffix in (".mp4", ".m4v", ".mov"):
        return write_mp4(path, frames, fps)
    raise ValueError(f"cannot write a video to {path}: use .gif or .mp4")

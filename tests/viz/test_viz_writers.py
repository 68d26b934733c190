"""Writers: files decode back with the frames and sizes written."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from gaze_attention.viz.writers import (
    SheetGroup,
    contact_sheet,
    even_frame_indices,
    write_gif,
    write_mp4,
    write_png,
    write_video,
)


def _moving_square(t: int, h: int, w: int) -> np.ndarray:
    """Frames with a bright square moving right: every frame differs from the last."""
    frames = np.full((t, h, w, 3), 40, np.uint8)
    for i in range(t):
        x = 2 + i * (w - 12) // max(t - 1, 1)
        frames[i, h // 3:h // 3 + 10, x:x + 10] = (250, 200, 30)
    return frames


def test_gif_round_trip(tmp_path: Path) -> None:
    frames = _moving_square(12, 48, 64)
    path = write_gif(tmp_path / "a.gif", frames, fps=10)
    with Image.open(path) as im:
        assert im.size == (64, 48)
        assert im.n_frames == 12
        assert im.info["duration"] == 100
        im.seek(5)
        got = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert np.abs(got - frames[5]).mean() < 6


def test_mp4_round_trip_pads_odd_sizes(tmp_path: Path) -> None:
    frames = _moving_square(10, 47, 65)
    path = write_mp4(tmp_path / "a.mp4", frames, fps=12)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name in ("h264", "libx264", "mpeg4")
        assert float(stream.average_rate) == pytest.approx(12)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 10
    assert decoded[0].shape == (48, 66, 3)
    err = np.abs(decoded[7][:47, :65].astype(np.int16) - frames[7]).mean()
    assert err < 6


def test_write_video_dispatch(tmp_path: Path) -> None:
    frames = _moving_square(3, 16, 16)
    assert write_video(tmp_path / "x.GIF", frames).exists()
    with pytest.raises(ValueError):
        write_video(tmp_path / "x.avi", frames)
    with pytest.raises(ValueError):
        write_gif(tmp_path / "y.gif", frames.astype(np.float32))


def test_contact_sheet(tmp_path: Path) -> None:
    a, b = _moving_square(20, 30, 40), _moving_square(20, 30, 40)
    idx = even_frame_indices(20, 5)
    assert idx == [2, 6, 10, 14, 18]
    sheet = contact_sheet(
        [SheetGroup(["model A: pred 0.9"], [("gradcam", a), ("gaze", b)]),
         SheetGroup(["model B"], [("gradcam", b)])],
        idx, column_labels=[f"frame {i}" for i in idx], label_width=60, gap=2,
    )
    assert sheet.shape[1] == 60 + 5 * (40 + 2)
    np.testing.assert_array_equal(sheet[-2 - 30:-2, 60 + 2 * 42:60 + 2 * 42 + 40], b[10])
    titled = contact_sheet([SheetGroup(["B"], [("gradcam", b)])], idx, title=["clip"],
                           label_width=60, gap=2)
    untitled = contact_sheet([SheetGroup(["B"], [("gradcam", b)])], idx, label_width=60, gap=2)
    assert titled.shape[0] > untitled.shape[0] and titled.shape[1] == untitled.shape[1]
    path = write_png(tmp_path / "s.png", sheet)
    with Image.open(path) as im:
        assert im.size == (sheet.shape[1], sheet.shape[0])
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), sheet)

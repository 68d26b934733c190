"""Overlays: markers land on their pixels, maps line up with frames, layouts add up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gaze_attention.viz.overlay import (
    GAZE_POINT_COLOR,
    SAMPLE_CELL_COLOR,
    colorize,
    draw_cells,
    draw_points,
    frames_to_uint8,
    grid_to_frames,
    overlay_heatmap,
    point_pixels,
    stack,
    title_bar,
    upscale,
)
from gaze_attention.viz.render import ClipAnalysis, parse_overlays, render_panels


def _frames(t: int = 4, h: int = 40, w: int = 56) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 200, size=(t, h, w, 3), dtype=np.uint8)


def test_recorded_gaze_point_lands_on_its_pixel() -> None:
    frames = _frames()
    points = np.array([[0.30, 0.70], [np.nan, np.nan], [0.0, 0.0], [0.999, 0.5]], np.float32)
    out = draw_points(frames, points)
    for t, (x, y) in {0: (16, 28), 2: (0, 0), 3: (55, 20)}.items():
        assert (int(points[t, 0] * 56), int(points[t, 1] * 40)) == (x, y)
        assert tuple(out[t, y, x]) == GAZE_POINT_COLOR
    np.testing.assert_array_equal(out[1], frames[1])  # no fixation: frame untouched
    np.testing.assert_array_equal(point_pixels(points, 40, 56)[1], [-1, -1])


def test_sample_cell_outline_and_interior() -> None:
    frames = np.zeros((2, 70, 70, 3), np.uint8)
    out = draw_cells(frames, np.array([[1, 2], [-1, -1]]), grid=7, thickness=1)
    # Cell (row 1, col 2) of a 7x7 grid spans y 10..19, x 20..29.
    assert tuple(out[0, 10, 25]) == SAMPLE_CELL_COLOR
    assert tuple(out[0, 15, 29]) == SAMPLE_CELL_COLOR
    assert tuple(out[0, 15, 25]) == (0, 0, 0)
    assert not out[1].any()


def test_grid_to_frames_repeats_slices_in_time() -> None:
    maps = torch.zeros(3, 2, 2)
    for t in range(3):
        maps[t, t % 2, t % 2] = 1.0
    up = grid_to_frames(maps, frames=24, size=(8, 8), spatial="nearest")
    assert up.shape == (24, 8, 8)
    for f in range(24):
        np.testing.assert_array_equal(up[f], np.kron(maps[f // 8].numpy(), np.ones((4, 4))))


def test_heatmap_overlay_and_colours() -> None:
    frames = _frames()
    maps = np.zeros(frames.shape[:3], np.float32)
    maps[:, :, 28:] = 1.0
    out = overlay_heatmap(frames, maps, alpha=1.0)
    assert out.dtype == np.uint8 and out.shape == frames.shape
    lo, hi = colorize(np.array([0.0, 1.0]))
    assert (out[:, :, :28] == lo).all() and (out[:, :, 28:] == hi).all()
    assert lo[2] > lo[0] and hi[0] > hi[2]  # jet: blue for 0, red for 1
    with pytest.raises(ValueError):
        overlay_heatmap(frames, maps[:, :10])


def test_frames_to_uint8_inverts_unit_range() -> None:
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(3, 3, 2, 2)
    out = frames_to_uint8(x)
    assert out.shape == (3, 2, 2, 3)
    assert out[:, 0, 0, 0].tolist() == [0, 128, 255]


def test_layout_sizes() -> None:
    a, b = _frames(4, 40, 56), _frames(3, 30, 50)
    side = stack([a, b], axis="horizontal", gap=4)
    assert side.shape == (4, 40, 56 + 4 + 50, 3)
    np.testing.assert_array_equal(side[3, :30, 60:], b[2])  # the shorter clip holds its last frame
    top = stack([a, b], axis="vertical", gap=2)
    assert top.shape == (4, 40 + 2 + 30, 56, 3)
    titled = title_bar(a, ["a long title " * 10, "second line"])
    assert titled.shape[0] == 4 and titled.shape[2] == 56 and titled.shape[1] > 40
    np.testing.assert_array_equal(titled[:, -40:], a)
    assert upscale(a, 2).shape == (4, 80, 112, 3)


def test_panels_carry_markers_on_every_heatmap() -> None:
    t, h = 8, 32
    frames = np.full((t, h, h, 3), 90, np.uint8)
    maps = np.linspace(0, 1, t * h * h, dtype=np.float32).reshape(t, h, h)
    analysis = ClipAnalysis(
        probs=np.array([0.1, 0.7, 0.2]), target=1, grid=(2, 4), gaze=maps, attention=maps,
        cam=maps, cells=np.tile([[0, 3]], (t, 1)), gaze_peak=np.full(t, 0.5),
    )
    gaze = np.tile([[0.55, 0.8]], (t, 1)).astype(np.float32)
    for scale in (1, 2):
        panels = render_panels(frames, analysis, parse_overlays("gaze,attention,gradcam,sample,"
                                                                "recorded"),
                               gaze_point=gaze, class_names=["a", "b", "c"], scale=scale)
        assert [p[0].split(":")[0].split(" ")[0] for p in panels] == ["gaze", "attention",
                                                                      "Grad-CAM++"]
        assert "Grad-CAM++: b" == panels[2][0]
        x, y = int(0.55 * h * scale), int(0.8 * h * scale)
        for _, img in panels:
            assert img.shape == (t, h * scale, h * scale, 3)
            assert (img[:, y, x] == GAZE_POINT_COLOR).all()
            assert (img[:, 0, (3 * h * scale) // 4 + 4] == SAMPLE_CELL_COLOR).all()
    bare = render_panels(frames, analysis, ["recorded"], gaze_point=gaze)
    assert [p[0] for p in bare] == ["input"]
    with pytest.raises(ValueError):
        parse_overlays("gaze,heat")

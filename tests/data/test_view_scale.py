"""Frames are scaled so that a model's crop sees what the paper's 224 crop of 340x256 sees."""

from __future__ import annotations

import numpy as np
import pytest

from gaze_attention.data.transforms import fit_short_side, view_short_side


@pytest.mark.parametrize(
    ("shape", "crop", "expected"),
    [
        ((340, 256), 224, (340, 256)),  # the paper: kept as is
        ((340, 256), 112, (170, 128)),  # tiny on default-size data: the same view as the paper's
        ((170, 128), 112, (170, 128)),
        ((640, 480), 224, (341, 256)),
        ((96, 72), 112, (149, 112)),  # smaller than the crop: upscaled to it
        ((100, 120), 112, (112, 134)),  # portrait
    ],
)
def test_fit_short_side(shape, crop, expected) -> None:
    w, h = shape
    frames = np.random.default_rng(0).integers(0, 255, (3, h, w, 2), dtype=np.uint8)
    out = fit_short_side(frames, crop)
    assert out.shape == (3, expected[1], expected[0], 2)
    assert min(out.shape[1:3]) >= crop
    if expected == shape:
        assert out is frames


def test_view_short_side() -> None:
    assert view_short_side(224) == 256
    assert view_short_side(112) == 128


def test_scaling_keeps_normalised_positions() -> None:
    """Gaze is stored normalised to the frame: a scaled frame must keep a point where it was."""
    frames = np.zeros((1, 256, 340, 3), np.uint8)
    px, py = 250, 70
    frames[0, py - 3 : py + 4, px - 3 : px + 4] = 255  # a 7x7 bright square centred on (px, py)
    out = fit_short_side(frames, 112)[0, ..., 0]  # [128, 170]
    ys, xs = np.nonzero(out > 127)
    h, w = out.shape
    assert abs((xs.mean() + 0.5) / w - (px + 0.5) / 340) < 1 / w
    assert abs((ys.mean() + 0.5) / h - (py + 0.5) / 256) < 1 / h

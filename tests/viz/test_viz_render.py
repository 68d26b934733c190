"""Model-level rendering: inputs, per-frame analysis, panels and output files."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from gaze_attention.viz.inputs import Clip, load_input, load_prepared_clip, load_video
from gaze_attention.viz.overlay import GAZE_POINT_COLOR
from gaze_attention.viz.render import (
    analyse_clip,
    render_clip,
    render_comparison,
    render_panels,
    window_starts,
)

CROP = 64  # the tiny model of conftest.py
CLASSES = ["cut tomato", "open fridge", "take bowl"]


def test_window_starts_cover_the_clip() -> None:
    assert window_starts(10, 16) == [0]
    assert window_starts(16, 16) == [0]
    assert window_starts(32, 16) == [0, 16]
    assert window_starts(40, 16) == [0, 16, 24]


def test_load_video(small_video: Path) -> None:
    clip = load_video(small_video, crop=CROP, use_flow=True, size=(96, 80))
    assert clip.rgb.shape == (3, 20, CROP, CROP) and clip.flow.shape == (2, 20, CROP, CROP)
    assert clip.rgb.min() >= -1 and clip.rgb.max() <= 1
    assert clip.fps == pytest.approx(12)
    assert clip.flow[0, :-1].abs().max() > 0.05  # the square moves right: u != 0
    part = load_video(small_video, crop=CROP, use_flow=False, start=5, max_frames=7)
    assert part.flow is None and part.num_frames == 7
    whole = load_video(small_video, CROP, False)
    torch.testing.assert_close(part.rgb, whole.window(5, 7).rgb)
    assert whole.window(15, None).num_frames == 5
    with pytest.raises(ValueError):
        whole.window(20, 3)


def test_load_prepared_clip_maps_gaze_into_the_crop(prepared_clip: Path) -> None:
    clip, classes = load_prepared_clip(prepared_clip, crop=CROP, use_flow=True)
    assert classes == CLASSES and clip.label == 2
    assert clip.rgb.shape == (3, 20, CROP, CROP) and clip.flow.shape == (2, 20, CROP, CROP)
    # Flow frame 19 does not exist (one fewer than RGB): it repeats frame 18.
    torch.testing.assert_close(clip.flow[:, 19], clip.flow[:, 18])
    # 96x80 frames are first scaled to 88x73 (a short side of 64 * 256/224, the paper's view for a
    # 64 crop), then centre-cropped at (x0, y0) = (12, 4); the recorded point was pixel (24, 24).
    np.testing.assert_allclose(clip.gaze_point[0], [(24 * 88 / 96 - 12) / 64, (24 * 73 / 80 - 4) / 64], rtol=1e-6)
    assert np.isnan(clip.gaze_point[10:15]).all()  # saccades are not fixations
    np.testing.assert_allclose(clip.gaze_point[19], [0.5, (0.5 * 73 - 4) / 64])  # 73 rows: 4 above, 5 below
    same, _ = load_input(prepared_clip, crop=CROP, use_flow=True, start=3, max_frames=4)
    torch.testing.assert_close(same.rgb, clip.rgb[:, 3:7])


def test_recorded_gaze_lands_on_its_pixel_in_rendered_panels(prepared_clip: Path,
                                                             tiny_model) -> None:
    clip, _ = load_prepared_clip(prepared_clip, crop=CROP, use_flow=True)
    analysis = analyse_clip(tiny_model, clip, gradcam=False)
    frames = ((clip.rgb.permute(1, 2, 3, 0) + 1) * 127.5).round().byte().numpy()
    panels = render_panels(frames, analysis, ["gaze", "recorded"], clip.gaze_point)
    img = panels[0][1]
    assert (img[:10, 16, 8] == GAZE_POINT_COLOR).all()  # frames 0-9: pixel (x 8, y 16)
    assert (img[15:, 32, 32] == GAZE_POINT_COLOR).all()
    assert not (img[10:15, 32, 32] == GAZE_POINT_COLOR).all(-1).any()


def test_analysis_is_consistent_across_passes(tiny_model) -> None:
    g = torch.Generator().manual_seed(0)
    clip = Clip(rgb=torch.rand(3, 20, CROP, CROP, generator=g) * 2 - 1,
                flow=torch.rand(2, 20, CROP, CROP, generator=g) * 2 - 1)
    full = analyse_clip(tiny_model, clip, gradcam=True, norm="frame", seed=3)
    plain = analyse_clip(tiny_model, clip, gradcam=False, seed=3)
    # The Grad-CAM++ pass draws the same gaze samples as the prediction pass.
    np.testing.assert_allclose(full.probs, plain.probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(full.cells, plain.cells)
    assert full.target == int(np.argmax(full.probs))
    assert full.cam.shape == full.gaze.shape == full.attention.shape == (20, CROP, CROP)
    assert full.cells.shape == (20, 2) and full.cells.min() >= 0 and full.cells.max() < 2
    for maps in (full.cam, full.gaze, full.attention):
        assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    one_window = clip.window(0, 16)
    given = analyse_clip(tiny_model, one_window, target=1, seed=3)
    assert given.target == 1 and given.cam.shape == (16, CROP, CROP)
    no_gaze = analyse_clip(tiny_model, one_window, gaze_mode="none", gradcam=False)
    assert no_gaze.gaze is None and no_gaze.cells is None and no_gaze.attention is not None
    with pytest.raises(ValueError, match="flow"):
        analyse_clip(tiny_model, Clip(rgb=clip.rgb), gradcam=False)


def test_render_clip_files(tmp_path: Path, tiny_model) -> None:
    g = torch.Generator().manual_seed(1)
    clip = Clip(rgb=torch.rand(3, 16, CROP, CROP, generator=g) * 2 - 1,
                flow=torch.rand(2, 16, CROP, CROP, generator=g) * 2 - 1,
                gaze_point=np.full((16, 2), 0.4, np.float32), label=0, fps=12)
    models = {"gaze": tiny_model, "no gaze": tiny_model}
    modes = {"gaze": "sample", "no gaze": "none"}
    gif = render_clip(models, clip, tmp_path / "a.gif", CLASSES, gaze_mode=modes)
    with Image.open(gif) as im:
        assert im.n_frames == 16
        assert im.size[0] == 2 * CROP * 3 + 6  # two models side by side, crops upscaled x3
    mp4 = render_clip(models, clip, tmp_path / "a.mp4", CLASSES, "attention,sample",
                      gaze_mode=modes, display=CROP)
    with av.open(str(mp4)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 16 and decoded[0].shape[1] == 2 * CROP + 6
    png = render_clip(models, clip, tmp_path / "a.png", CLASSES, "gradcam,gaze",
                      gaze_mode=modes, sheet_frames=4, display=CROP)
    with Image.open(png) as im:
        assert im.size[0] == 120 + 4 * (CROP + 3)
    one = render_clip({"gaze": tiny_model}, clip, tmp_path / "b.gif", CLASSES, "gaze,attention,"
                      "gradcam", display=CROP)
    with Image.open(one) as im:
        assert im.size[0] == 3 * CROP + 2 * 4  # one model: its maps in a row
    with pytest.raises(ValueError):
        render_clip(models, clip, tmp_path / "a.avi", CLASSES)
    with pytest.raises(ValueError):
        render_clip(models, clip, tmp_path / "a.gif", CLASSES, layout="diagonal")


def test_render_comparison_from_a_dataset_sample(tmp_path: Path, tiny_model) -> None:
    g = torch.Generator().manual_seed(2)
    sample = {
        "rgb": torch.rand(3, 16, CROP, CROP, generator=g) * 2 - 1,
        "flow": torch.rand(2, 16, CROP, CROP, generator=g) * 2 - 1,
        "gaze_point": torch.full((16, 2), 0.5),
        "label": torch.tensor(2),
        "index": 0,
    }
    out = render_comparison({"gaze": tiny_model, "other": tiny_model}, sample, CLASSES,
                            tmp_path / "fig.png", frames=4)
    with Image.open(out) as im:
        w, h = im.size
    assert w == 120 + 4 * (3 * CROP + 3)
    assert h > 2 * 3 * CROP  # a row per model

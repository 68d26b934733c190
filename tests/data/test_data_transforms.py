"""Flow encoding and sign, joint crop/flip of pixels and gaze, gaze targets on the grid."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gaze_attention.data.begaze import FIXATION, SACCADE
from gaze_attention.data.dataset import ClipDataset, PreparedData
from gaze_attention.data.flow import FlowComputer, decode_flow, encode_flow
from gaze_attention.data.transforms import CropFlip, gaze_targets


def test_flow_encoding_matches_dense_flow_convention():
    f = np.array([[[0.0, -20.0], [20.0, 40.0]]], dtype=np.float32)  # [1, 2, 2]
    e = encode_flow(f)
    assert e.tolist() == [[[128, 0], [255, 255]]]
    np.testing.assert_allclose(decode_flow(encode_flow(np.full((2, 2, 2), 3.3, np.float32))), 3.3, atol=0.1)


def _texture(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (h, w)).astype(np.uint8)
    return cv2.GaussianBlur(img, (7, 7), 2)


@pytest.mark.parametrize("method", ["dis", "farneback", "tvl1"])
def test_flow_sign_right_shift_and_flip(method):
    a = _texture()
    b = np.roll(a, 3, axis=1)  # the pattern moves 3 px to the right
    uv = FlowComputer(method).video([a, b])  # [2, H, W, 2]
    inner = uv[0, 12:-12, 12:-12]
    assert inner[..., 0].mean() > 128 + 5, "u must be > 128 for motion to the right"
    assert abs(inner[..., 1].astype(float).mean() - 128) < 5
    flipped = CropFlip(0, 0, 48, True, 48, 64).flow(uv)
    assert flipped[0, 12:-12, 12:-12, 0].mean() < 128 - 5, "a mirrored u must point left"
    np.testing.assert_array_equal(flipped[..., 1], CropFlip(0, 0, 48, True, 48, 64).frames(uv)[..., 1])


def test_gaze_targets_first_frame_of_each_slice():
    pts = np.full((6, 2), np.nan, dtype=np.float32)
    pts[0] = [0.1, 0.9]  # slice 0, first frame
    pts[3] = [0.5, 0.5]  # slice 1 (frames 2-3): not its first frame
    pts[4] = [0.99, 0.0]  # slice 2, first frame
    target, valid = gaze_targets(pts, (3, 4))
    assert valid.tolist() == [True, False, True]
    assert target[0, 3, 0] == 1 and target[2, 0, 3] == 1
    assert target.sum().item() == 2 and target[1].sum() == 0
    target, valid = gaze_targets(pts, (3, 4), frame="first_valid")
    assert valid.tolist() == [True, True, True] and target[1, 2, 2] == 1


def _dot_clip(rng, length=12, h=72, w=96):
    """Dark frames (background brightness = 4 x frame index) with a bright dot at the gaze.

    72 px high: at most crop x 256/224 for the 64 crop, so the frames are not rescaled and the
    dot stays a sharp 3x3 square (rescaling is tested in test_view_scale.py)."""
    rgb = np.zeros((length, h, w, 3), np.uint8)
    flow = np.full((length, h, w, 2), 128, np.uint8)
    flow[..., 0] = 200  # constant rightward u: a flip must turn it into 55
    gaze = np.zeros((length, 3), np.float32)
    for i in range(length):
        rgb[i] = 4 * i
        px, py = int(rng.integers(2, w - 2)), int(rng.integers(2, h - 2))
        rgb[i, py - 1 : py + 2, px - 1 : px + 2] = 255
        flow[i, py - 1 : py + 2, px - 1 : px + 2, 1] = 255  # the dot in v as well
        gaze[i] = [(px + 0.5) / w, (py + 0.5) / h, FIXATION if i % 5 else SACCADE]
    return rgb, flow, gaze


def _centroid(img):
    """Centroid (x, y) of the bright pixels of a [H, W] image."""
    ys, xs = np.nonzero(img > 0.5)
    return xs.mean() + 0.5, ys.mean() + 0.5


def test_augmentation_keeps_gaze_on_the_dot(tmp_path, write_prepared):
    rng = np.random.default_rng(0)
    clips = {f"c{k}": _dot_clip(rng) for k in range(4)}
    data = PreparedData(write_prepared(tmp_path, clips))
    crop, s, frames = 64, 4, 6  # cells of 16 px; slices of 2 frames
    ds = ClipDataset(data, data.split(1, "train"), True, frames, crop, (3, s), True, seed=1)
    checked = flipped_seen = 0
    for _ in range(30):
        for i in range(len(ds)):
            x = ds[i]
            rgb, flow = x["rgb"], x["flow"]  # [3, T, 64, 64], [2, T, 64, 64]
            u = flow[0].mean().item()
            assert abs(u - (200 * 2 / 255 - 1)) < 0.02 or abs(u - (55 * 2 / 255 - 1)) < 0.02
            flipped_seen += u < 0
            for t in range(3):
                f = t * (frames // 3)
                bright = rgb[0, f] > 0.9
                if not x["gaze_valid"][t]:
                    # invalid: a saccade frame, or the dot left the crop
                    continue
                cx, cy = _centroid(bright.float().numpy())
                cell = divmod(int(x["gaze"][t].argmax()), s)
                assert x["gaze"][t].sum() == 1
                assert cell == (int(cy // 16), int(cx // 16))
                vx, vy = _centroid((flow[1, f] > 0.9).float().numpy())
                assert abs(vx - cx) < 1 and abs(vy - cy) < 1  # flow moved with the pixels
                checked += 1
    assert checked > 60 and flipped_seen > 10


def test_test_mode_centre_crop_and_points(tmp_path, write_prepared):
    rng = np.random.default_rng(1)
    clips = {"c": _dot_clip(rng, length=5)}
    data = PreparedData(write_prepared(tmp_path, clips))
    ds = ClipDataset(data, data.split(1, "test"), train=False, frames=8, crop=64, grid=(2, 4))
    x = ds[0]
    assert x["rgb"].shape == (3, 8, 64, 64) and x["flow"].shape == (2, 8, 64, 64)
    assert x["gaze_point"].shape == (8, 2)
    # Frames past the end repeat the last one (edge padding).
    torch.testing.assert_close(x["rgb"][:, 7], x["rgb"][:, 4])
    for f in range(8):
        p = x["gaze_point"][f]
        if torch.isfinite(p).all():
            cx, cy = _centroid((x["rgb"][0, f] > 0.9).float().numpy())
            assert abs(p[0].item() * 64 - cx) < 1 and abs(p[1].item() * 64 - cy) < 1


def test_random_start_is_uniform_not_frame_one(tmp_path, write_prepared):
    rng = np.random.default_rng(2)
    data = PreparedData(write_prepared(tmp_path, {"c": _dot_clip(rng, length=20)}))
    ds = ClipDataset(data, data.split(1, "train"), True, 8, 64, (2, 4), use_flow=False, seed=0)
    starts = []
    for _ in range(200):
        x = ds[0]
        # background brightness encodes the frame index: 4 * i
        bg = ((x["rgb"][0, 0] + 1) * 255 / 2).median().item()
        starts.append(round(bg / 4))
    assert set(starts) == set(range(13))  # every start 0..L-T appears

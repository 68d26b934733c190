"""The PyTorch TV-L1 (`tvl1-torch`) against OpenCV's DualTVL1 on real-looking frame pairs.

Two kinds of pairs, small enough for a CPU test: a smooth textured image moved by a known
smooth warp (so both are also compared with the true flow), and consecutive frames of the
synthetic generator (moving objects, a hand, camera shake). Measured: mean end-point error
between the two implementations, and agreement of the 8-bit encoded flow that `prepare`
stores (data/flow.py, the dense_flow convention).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gaze_attention.data.flow import FlowComputer, encode_flow
from gaze_attention.data.synthetic import render_clip
from gaze_attention.data.tvl1 import TVL1Params, _median, tvl1

H, W = 48, 64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tensors of a few 10^4 elements: a second intra-op thread only waits on a busy machine.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = cv2.resize(rng.random((h // 4, w // 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img += 0.5 * cv2.resize(rng.random((h // 8, w // 8)).astype(np.float32), (w, h))
    return (img - img.min()) / (img.max() - img.min()) * 220 + 15


def _warped_pairs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 [n, H, W] pairs with i1(x + f(x)) ~= i0(x), and the true flow f [n, H, W, 2]."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    i0s, i1s, flows = [], [], []
    for k in range(n):
        img = _texture(rng, H + 40, W + 40)  # cut from a larger image: no border effects in i1
        u = 2.0 + 1.5 * np.sin(xx / 17 + k)
        v = -1.0 + np.cos(yy / 13 + k)
        i0s.append(img[20 : 20 + H, 20 : 20 + W])
        i1s.append(cv2.remap(img, xx + 20 - u, yy + 20 - v, cv2.INTER_CUBIC))
        flows.append(np.stack([u, v], -1))
    as8 = lambda a: np.clip(np.rint(a), 0, 255).astype(np.uint8)  # noqa: E731
    return as8(np.stack(i0s)), as8(np.stack(i1s)), np.stack(flows)


def _synthetic_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    frames, *_ = render_clip(np.random.default_rng(1), 3, 1, 3, 4, n + 1, (W, H))
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    return grey[:-1], grey[1:]


def _opencv(i0: np.ndarray, i1: np.ndarray) -> np.ndarray:
    algo = cv2.optflow.DualTVL1OpticalFlow_create()  # the defaults: the paper's flow
    return np.stack([algo.calc(a, b, None) for a, b in zip(i0, i1, strict=True)])


def _ours(i0: np.ndarray, i1: np.ndarray) -> np.ndarray:
    return tvl1(torch.from_numpy(i0), torch.from_numpy(i1)).permute(0, 2, 3, 1).numpy()


def _compare(ref: np.ndarray, out: np.ndarray) -> tuple[float, float, float]:
    epe = float(np.linalg.norm(ref - out, axis=-1).mean())
    a, b = encode_flow(ref).astype(int), encode_flow(out).astype(int)
    return epe, float((a == b).mean()), float((abs(a - b) <= 1).mean())


@pytest.fixture(scope="module")
def warped():
    i0, i1, truth = _warped_pairs(2)
    return truth, _opencv(i0, i1), _ours(i0, i1)


@pytest.fixture(scope="module")
def synthetic():
    i0, i1 = _synthetic_pairs(2)
    alone = np.concatenate([_ours(i0[k : k + 1], i1[k : k + 1]) for k in range(2)])
    return _opencv(i0, i1), _ours(i0, i1), alone


def test_defaults_are_opencvs():
    # tvl1flow.cpp's constructor defaults; the Python binding reports the same.
    algo = cv2.optflow.DualTVL1OpticalFlow_create()
    p = TVL1Params()
    assert (p.tau, p.lambda_, p.theta, p.nscales, p.warps, p.epsilon) == (
        algo.getTau(), algo.getLambda(), algo.getTheta(), algo.getScalesNumber(),
        algo.getWarpingsNumber(), algo.getEpsilon(),
    )  # fmt: skip
    assert (p.inner_iterations, p.outer_iterations, p.scale_step, p.gamma, p.median_filtering) == (
        algo.getInnerIterations(), algo.getOuterIterations(), algo.getScaleStep(), algo.getGamma(),
        algo.getMedianFiltering(),
    )  # fmt: skip


def test_agrees_with_opencv_on_a_known_warp(warped):
    truth, ref, out = warped
    epe, exact, within1 = _compare(ref, out)
    # Measured 0.019 px, 93 % identical 8-bit values, 99.8 % within one level.
    assert epe < 0.05, epe
    assert exact > 0.85 and within1 > 0.98, (exact, within1)
    # Both recover the true motion equally well (measured 0.193 and 0.192 px).
    err_ref = np.linalg.norm(ref - truth, axis=-1).mean()
    err_out = np.linalg.norm(out - truth, axis=-1).mean()
    assert err_out < 0.3 and abs(err_out - err_ref) < 0.03, (err_ref, err_out)


def test_agrees_with_opencv_on_synthetic_frames(synthetic):
    ref, out, _ = synthetic
    assert np.abs(ref).max() > 0.5  # there is motion to find
    epe, exact, within1 = _compare(ref, out)
    # Measured 0.044 px, 91 % identical, 98.2 % within one level (occlusions at moving edges
    # make this harder than the smooth warp); without the 1/32 px remap grid it is 0.3 px.
    assert epe < 0.08, epe
    assert exact > 0.85 and within1 > 0.97, (exact, within1)


def test_batch_is_per_pair(synthetic):
    """A batch gives each pair what it gets alone (each pair keeps its own stopping rule)."""
    _, both, alone = synthetic
    np.testing.assert_allclose(both, alone, atol=1e-3)


def test_flow_computer_batches_a_clip():
    frames, *_ = render_clip(np.random.default_rng(2), 0, 0, 2, 2, 4, (40, 32))
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    fc = FlowComputer("tvl1-torch", device="cpu", batch=2)  # 3 pairs: batches of 2 and 1
    clip = fc.video(grey)  # [4, H, W, 2] uint8
    assert clip.shape == (4, 32, 40, 2) and clip.dtype == np.uint8
    i0, i1 = np.stack(grey[:-1]), np.stack(grey[1:])
    assert (abs(clip[:3].astype(int) - encode_flow(_ours(i0, i1))) <= 1).all()
    np.testing.assert_array_equal(clip[3], clip[2])


def test_median_is_opencvs():
    x = np.random.default_rng(0).normal(size=(2, 9, 11)).astype(np.float32)
    ours = _median(torch.from_numpy(x), 5).numpy()
    for k in range(2):
        np.testing.assert_array_equal(ours[k], cv2.medianBlur(x[k], 5))

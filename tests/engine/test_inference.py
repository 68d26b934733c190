"""One inference path: window policy, streaming reader, seeds, and parity across commands.

The parity tests hold evaluate, predict and visualize to the same probabilities for the same
clip, checkpoint and seed, and our evaluation to the authors' test loop (a re-implementation of
the structure of their `dataset.py` test mode and `main.py` test()).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

import gaze_attention as ga
from gaze_attention.data import PreparedData
from gaze_attention.engine.evaluate import evaluate
from gaze_attention.engine.inference import (
    InferenceOptions,
    PreparedClip,
    VideoReader,
    WindowPolicy,
    model_memory_format,
    run_windows,
    stream_windows,
    use_cpu_layout,
    window_seed,
)
from gaze_attention.engine.predict import predict_video
from gaze_attention.viz.inputs import load_prepared_clip, load_video
from gaze_attention.viz.render import analyse_clip

T, CROP = 8, 64  # the tiny test network: grid (T', S) = (1, 2)


@pytest.fixture(scope="module")
def model(prepared):
    data = PreparedData(prepared)
    torch.manual_seed(3)
    model = ga.build_model("tiny", num_classes=data.num_classes, width=0.125, frames=T, crop=CROP).eval()
    with torch.no_grad():
        # PyTorch's default init shrinks the signal through I3D's depth (every clip would get
        # the same logits); He init keeps it, and a larger attention FC makes the gaze sample
        # matter, so that the tests below can tell clips and gaze draws apart.
        for m in model.modules():
            if isinstance(m, torch.nn.Conv3d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        model.head.fc.weight.mul_(10)
    return model


# --------------------------------------------------------------------------- window policy


@pytest.mark.parametrize(
    "policy, length, expected",
    [
        (WindowPolicy(), 50, [0, 24]),  # the authors': non-overlapping, tail dropped
        (WindowPolicy(), 10, [0]),  # shorter than a window: one (edge-padded) window
        (WindowPolicy(tail=True), 50, [0, 24, 26]),  # a last window ending at frame 49
        (WindowPolicy(tail=True), 48, [0, 24]),  # nothing left uncovered: no extra window
        (WindowPolicy(stride=12), 50, [0, 12, 24]),
        (WindowPolicy(stride=12, tail=True), 50, [0, 12, 24, 26]),
        (WindowPolicy(max_windows=3), 24 * 7, [0, 72, 144]),
    ],
)
def test_window_policy(policy, length, expected):
    assert policy.starts(length, 24) == expected


def test_window_policy_rejects_bad_values():
    with pytest.raises(ValueError, match="stride"):
        WindowPolicy(stride=0)
    with pytest.raises(ValueError, match="gaze_mode"):
        InferenceOptions(gaze_mode="gumbel_softmax")


def test_window_seed_depends_on_seed_clip_and_start():
    base = window_seed(0, "clip", 0)
    assert base == window_seed(0, "clip", 0)
    assert len({base, window_seed(1, "clip", 0), window_seed(0, "other", 0), window_seed(0, "clip", 8)}) == 4


# --------------------------------------------------------------------------- streaming


def test_stream_windows_hold_only_the_frames_in_flight():
    """Window k is out after at most (k + 1) windows' frames were read: nothing is read ahead."""
    pulled = []

    def frames():
        for i in range(1000):
            pulled.append(i)
            yield i, np.full((4, 4, 3), i % 256, np.uint8), None

    starts = WindowPolicy().starts(1000, 24)
    for k, w in enumerate(stream_windows(frames(), starts, 24)):
        assert len(pulled) == (k + 1) * 24
        assert w.start == 24 * k and w.rgb.shape == (3, 24, 4, 4)
        expected = (np.arange(24 * k, 24 * k + 24) % 256) * 2 / 255 - 1
        np.testing.assert_allclose(w.rgb[0, :, 0, 0].numpy(), expected, atol=1e-6)
    assert k == 1000 // 24 - 1


def test_stream_windows_overlap_and_edge_padding():
    def frames(n):
        for i in range(n):
            yield i, np.full((2, 2, 3), i, np.uint8), np.full((2, 2, 2), i, np.uint8)

    out = list(stream_windows(frames(30), WindowPolicy(stride=8, tail=True).starts(30, 12), 12))
    assert [w.start for w in out] == [0, 8, 16, 18]
    assert all(w.frames == 12 for w in out)
    short = list(stream_windows(frames(5), [0], 12))
    assert len(short) == 1 and short[0].frames == 5
    # Frames 5..11 repeat frame 4 (edge padding, as the test-time dataset does).
    np.testing.assert_allclose(short[0].rgb[0, :, 0, 0].numpy() * 255 / 2 + 127.5,
                               [0, 1, 2, 3, 4] + [4] * 7, atol=1e-3)  # fmt: skip
    np.testing.assert_allclose(short[0].flow[1, -1].numpy(), short[0].flow[1, 4].numpy())


def _moving_frames(n: int, h: int = 72, w: int = 96) -> np.ndarray:
    frames = np.empty((n, h, w, 3), np.uint8)
    frames[...] = np.linspace(20, 200, w, dtype=np.uint8)[None, None, :, None]
    for i in range(n):
        x = 4 + 2 * i
        frames[i, 20:40, x : x + 20] = (230, 180, 30)
    return frames


def _write(path: Path, frames: np.ndarray, codec: str, fps: int = 12, pix_fmt: str = "yuv420p") -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """The same 30 frames in five containers PyAV writes (mp4, mkv, avi, webm, GIF)."""
    root = tmp_path_factory.mktemp("containers")
    frames = _moving_frames(30)
    from gaze_attention.viz.writers import write_gif

    return {
        "mp4": _write(root / "clip.mp4", frames, "libx264"),
        "mkv": _write(root / "clip.mkv", frames, "mpeg4"),
        "avi": _write(root / "clip.avi", frames, "mjpeg", pix_fmt="yuvj420p"),
        "webm": _write(root / "clip.webm", frames, "libvpx"),
        "gif": write_gif(root / "clip.gif", frames, fps=10),
    }


@pytest.mark.parametrize("kind", ["mp4", "mkv", "avi", "webm", "gif"])
def test_video_reader_containers_stream_and_seek(videos, kind):
    reader = VideoReader(videos[kind], size=(96, 72))
    assert reader.num_frames == 30 and (reader.width, reader.height) == (96, 72)
    whole = [rgb for _, rgb in reader.frames()]
    assert len(whole) == 30
    # The square moves right by 2 px a frame: decoded frames are in order.
    xs = [int(np.argmax((f[30, :, 0] > 180) & (f[30, :, 2] < 90))) for f in whole]
    assert xs == sorted(xs) and xs[-1] > xs[0]
    # Streamed windows (with flow) equal windows cut from the whole decoded clip.
    clip = load_video(videos[kind], crop=CROP, use_flow=True, size=(96, 72))
    windows = list(reader.windows(WindowPolicy(stride=6).starts(30, T), T, CROP, "dis"))
    assert [w.start for w in windows] == [0, 6, 12, 18]
    for w in windows:
        torch.testing.assert_close(w.rgb, clip.rgb[:, w.start : w.start + T])
        torch.testing.assert_close(w.flow, clip.flow[:, w.start : w.start + T])
    # Seeking to a later frame gives the same frames as decoding from the start.
    part = VideoReader(videos[kind], size=(96, 72), start=11, max_frames=9)
    got = [rgb for _, rgb in part.frames()]
    assert part.num_frames == 9 and len(got) == 9
    for a, b in zip(got, whole[11:20], strict=True):
        np.testing.assert_array_equal(a, b)


def test_video_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        VideoReader(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="bad.mp4"):
        VideoReader(bad)


# --------------------------------------------------------------------------- parity across commands


def test_batching_does_not_change_gaze_samples(prepared, model):
    data = PreparedData(prepared)
    one = evaluate(model, data, 1, gaze_mode="sample", seed=4, batch_size=1)
    many = evaluate(model, data, 1, gaze_mode="sample", seed=4, batch_size=5)
    other = evaluate(model, data, 1, gaze_mode="sample", seed=5, batch_size=5)
    for a, b in zip(one["clips"], many["clips"], strict=True):
        np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-5, atol=1e-5)  # batched convs round differently
    # A different seed draws different gaze, so some clip's logits change.
    assert any(not np.allclose(a["logits"], b["logits"], rtol=1e-3) for a, b in zip(one["clips"], other["clips"]))


def test_cpu_layout_changes_the_speed_not_the_results(prepared, model):
    """The commands put an I3D model in channels_last_3d on a CPU (max-pooling is 5-10x faster
    there): the same logits as the contiguous model, to rounding."""
    import copy

    data = PreparedData(prepared)
    cl = copy.deepcopy(model)
    assert model_memory_format(cl) == torch.contiguous_format
    assert use_cpu_layout(cl, "cpu")
    assert model_memory_format(cl) == torch.channels_last_3d
    a = evaluate(model, data, 1, gaze_mode="sample", seed=4, batch_size=3)
    b = evaluate(cl, data, 1, gaze_mode="sample", seed=4, batch_size=3)
    for x, y in zip(a["clips"], b["clips"], strict=True):
        np.testing.assert_allclose(x["logits"], y["logits"], rtol=1e-4, atol=1e-5)
    # left alone: another device, and a backbone without pooling
    other = copy.deepcopy(model)
    assert not use_cpu_layout(other, "cuda") and model_memory_format(other) == torch.contiguous_format
    vit = ga.build_model("vit-tiny", num_classes=3, frames=8, crop=64)
    assert not use_cpu_layout(vit, "cpu") and model_memory_format(vit) == torch.contiguous_format


def _probs(logits) -> np.ndarray:
    return torch.softmax(torch.tensor(logits, dtype=torch.float64), -1).numpy()


@pytest.mark.parametrize("gaze_mode", ["sample", "argmax"])
def test_evaluate_predict_visualize_agree(prepared, model, gaze_mode):
    """Same clip, checkpoint and seed: the same probabilities from the three commands."""
    data = PreparedData(prepared)
    recs = data.split(1, "test")
    m = evaluate(model, data, 1, gaze_mode=gaze_mode, seed=7, batch_size=2)
    longest = max(range(len(recs)), key=lambda i: recs[i].num_frames)  # several windows
    for i in sorted({0, longest}):
        name = recs[i].name
        clip_dir = prepared / "images_rgb" / name
        ev = _probs(next(c["logits"] for c in m["clips"] if c["name"] == name))
        pr = predict_video(model, clip_dir, data.classes, gaze_mode=gaze_mode, seed=7, top_k=3)
        clip, _ = load_prepared_clip(clip_dir, crop=CROP, use_flow=True)
        vi = analyse_clip(model, clip, gradcam=False, gaze_mode=gaze_mode, seed=7)
        np.testing.assert_allclose(pr["probabilities"], ev, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(vi.probs, ev, rtol=1e-6, atol=1e-9)
        assert len(pr["windows"]) == recs[i].num_frames // T


def test_predict_and_visualize_agree_on_a_video(raw, model):
    video = sorted((raw / "cropped_clips").rglob("*.mp4"))[0]
    names = [f"c{i}" for i in range(model.config.num_classes)]
    pr = predict_video(model, video, names, size=(96, 72), gaze_mode="sample", seed=2)
    clip = load_video(video, crop=CROP, use_flow=True, size=(96, 72))
    vi = analyse_clip(model, clip, gradcam=True, gaze_mode="sample", seed=2)
    np.testing.assert_allclose(pr["probabilities"], vi.probs, rtol=1e-5, atol=1e-7)
    assert pr["frames"] == clip.num_frames


# --------------------------------------------------------------------------- the authors' test loop


def _reference_test_loop(model, root: Path, records) -> tuple[list[int], list[int], list[np.ndarray]]:
    """The structure of the authors' test path, re-implemented for the test network.

    dataset.py test mode: all frames of a clip (0001.jpg ... num_frames), BGR -> RGB, u/v
    flow stacked, scaled to [-1, 1], no crop. main.py test(): start indices
    range(0, L - T + 1, T), centre crop inside the loop, the logits of every window averaged,
    argmax gaze (their make_hard_decision), argmax class.
    """
    preds, counts, mean_logits = [], [], []
    with torch.no_grad():
        for rec in records:
            rgb, flow = [], []
            for i in range(rec.num_frames):
                rimg = cv2.imread(str(root / "images_rgb" / rec.name / f"{i + 1:04d}.jpg"), -1)[..., ::-1]
                u = cv2.imread(str(root / "images_flow" / rec.name / "u" / f"{i + 1:04d}.jpg"), -1)
                v = cv2.imread(str(root / "images_flow" / rec.name / "v" / f"{i + 1:04d}.jpg"), -1)
                rgb.append(rimg)
                flow.append(np.stack([u, v], -1))
            rgb_t = torch.FloatTensor(np.array(rgb)).permute(3, 0, 1, 2).mul(2).sub(255).div(255)[None]
            flow_t = torch.FloatTensor(np.array(flow)).permute(3, 0, 1, 2).mul(2).sub(255).div(255)[None]
            length, height, width = rgb_t.shape[2:]
            top, left = (height - CROP) // 2, (width - CROP) // 2
            ys = []
            for t in range(0, length - T + 1, T):
                r = rgb_t[..., t : t + T, top : top + CROP, left : left + CROP]
                f = flow_t[..., t : t + T, top : top + CROP, left : left + CROP]
                ys.append(model(r, f, gaze_mode="argmax").logits)
            y_avg = torch.cat(ys, 0).mean(0, keepdim=True)
            preds.append(int(torch.argmax(y_avg, 1)))
            counts.append(len(ys))
            mean_logits.append(y_avg[0].numpy())
    return preds, counts, mean_logits


def test_evaluation_matches_the_reference_test_loop(prepared, model):
    data = PreparedData(prepared)
    recs = data.split(1, "test")
    assert all(r.num_frames >= T for r in recs)  # their loop has no window for shorter clips
    ref_preds, ref_counts, ref_logits = _reference_test_loop(model, prepared, recs)
    m = evaluate(model, data, 1, gaze_mode="argmax", batch_size=3, workers=1)
    assert [c["name"] for c in m["clips"]] == [r.name for r in recs]
    assert [c["pred"] for c in m["clips"]] == ref_preds
    assert [c["windows"] for c in m["clips"]] == ref_counts
    assert m["num_windows"] == sum(ref_counts)
    for c, ref in zip(m["clips"], ref_logits, strict=True):
        np.testing.assert_allclose(c["logits"], ref, rtol=1e-4, atol=1e-5)


def test_prepared_windows_read_only_their_frames(prepared, model):
    """A test window holds its T frames in float, never the whole clip."""
    rec = max(PreparedData(prepared).split(1, "test"), key=lambda r: r.num_frames)
    clip = PreparedClip(prepared, rec.name, CROP, True, rec.num_frames, rec.flow_frames)
    w = clip.window(T, T)
    assert w.rgb.shape == (3, T, CROP, CROP) and w.flow.shape == (2, T, CROP, CROP)
    outs = list(run_windows(model, clip.windows([0, T], T), InferenceOptions(gaze_mode="argmax")))
    assert [o.start for o in outs] == [0, T] and outs[0].logits.dtype == torch.float64


def test_every_source_is_a_clip_source(prepared, tmp_path):
    from gaze_attention.engine.inference import ClipSource, TensorClip, VideoReader

    rec = PreparedData(prepared).split(1, "test")[0]
    assert isinstance(PreparedClip(prepared, rec.name, CROP, True), ClipSource)
    assert isinstance(TensorClip(torch.zeros(3, 4, CROP, CROP)), ClipSource)
    video = _write(tmp_path / "v.mp4", _moving_frames(6), "libx264")
    assert isinstance(VideoReader(video), ClipSource)
    assert not isinstance(object(), ClipSource)


def test_windows_are_batched_in_the_models_layout_unchanged():
    from gaze_attention.engine.inference import _stack

    g = torch.Generator().manual_seed(0)
    wins = [torch.randn(3, 4, 6, 5, generator=g) for _ in range(3)]
    cl = _stack(wins, torch.device("cpu"), torch.channels_last_3d)
    assert cl.is_contiguous(memory_format=torch.channels_last_3d) and cl.shape == (3, 3, 4, 6, 5)
    assert torch.equal(cl, torch.stack(wins))
    plain = _stack(wins, torch.device("cpu"), torch.contiguous_format)
    assert plain.is_contiguous() and torch.equal(plain, torch.stack(wins))

"""Prediction on a raw video: windows, top-k, gaze cells; the CLI prints the same as the API."""

from __future__ import annotations

import json

import pytest

import gaze_attention as ga
from gaze_attention.cli import main as cli_main
from gaze_attention.data import PreparedData
from gaze_attention.engine import checkpoint as ck
from gaze_attention.engine.config import load_config
from gaze_attention.engine.predict import predict_video


@pytest.fixture(scope="module")
def checkpoint(prepared, tmp_path_factory):
    data = PreparedData(prepared)
    model = ga.build_model("tiny", num_classes=data.num_classes, width=0.125, frames=8, crop=64)
    cfg = load_config(
        "tiny", {"data.root": str(prepared), "model.width": 0.125, "model.frames": 8, "model.crop": 64}
    )
    state = {"iteration": 0, "config": cfg.to_dict(), "model_config": model.config.to_dict(),
             "class_names": data.classes}  # fmt: skip
    folder = tmp_path_factory.mktemp("predict_run") / "checkpoints" / ck.checkpoint_name("ckpt", 0)
    return ck.write_checkpoint(folder, model, state)


def test_predict_video_windows_topk_gaze(raw, prepared, checkpoint):
    """Windows, top-k and gaze cells checked against logits and gaze maps we dictate.

    A forward hook replaces each window's class logits with a seeded random vector and its
    gaze logits with a one-hot at a chosen cell, so the expected top-k (per window and of the
    averaged logits), probabilities and pixel positions are known exactly.
    """
    import torch

    video = sorted((raw / "cropped_clips").rglob("*.mp4"))[0]
    model, _, names = ck.load_model(checkpoint)
    t_slices, side = model.grid
    num_classes = len(names)
    calls: list[int] = []  # windows seen so far

    def window_logits(n: int) -> torch.Tensor:
        return torch.randn(num_classes, generator=torch.Generator().manual_seed(100 + n)) * 3

    def cell(n: int, t: int) -> int:
        return (n * 5 + t * 3 + 1) % (side * side)

    def dictate(module, inputs, out):
        b = out.logits.shape[0]
        first = len(calls)
        calls.extend(range(first, first + b))
        logits = torch.stack([window_logits(n) for n in range(first, first + b)])
        gaze = torch.full((b, t_slices, side * side), -10.0)
        for i in range(b):
            for t in range(t_slices):
                gaze[i, t, cell(first + i, t)] = 10.0
        return out._replace(logits=logits, gaze_logits=gaze.view(b, t_slices, side, side))

    handle = model.register_forward_hook(dictate)
    try:
        out = predict_video(
            model, video, names, flow="dis", size=(96, 72), top_k=3, gaze_mode="argmax", batch_size=2
        )
    finally:
        handle.remove()
    n_windows = out["frames"] // 8
    assert out["frames"] >= 16 and len(out["windows"]) == n_windows == len(calls)

    def expected_top(lg: torch.Tensor) -> list[dict]:
        p = torch.softmax(lg.double(), -1)
        order = torch.argsort(p, descending=True)[:3].tolist()
        return [{"class": names[j], "index": j, "probability": float(p[j])} for j in order]

    mean = torch.stack([window_logits(n) for n in range(n_windows)]).mean(0)
    got = out["top"]
    assert [t["index"] for t in got] == [t["index"] for t in expected_top(mean)]
    assert [t["class"] for t in got] == [names[t["index"]] for t in got]
    for a, b in zip(got, expected_top(mean), strict=True):
        assert a["probability"] == pytest.approx(b["probability"], rel=1e-6)
    x0, y0 = (96 - 64) // 2, (72 - 64) // 2  # centre crop of the model's 64 px in a 96x72 frame
    for n, w in enumerate(out["windows"]):
        assert (w["start_frame"], w["end_frame"]) == (8 * n, 8 * n + 7)
        assert w["start_s"] == pytest.approx(8 * n / out["fps"])
        assert [t["index"] for t in w["top"]] == [t["index"] for t in expected_top(window_logits(n))]
        assert len(w["gaze"]) == t_slices
        for t, g in enumerate(w["gaze"]):
            row, col = divmod(cell(n, t), side)
            assert (g["slice"], g["first_frame"], g["row"], g["col"]) == (t, 8 * n + t * (8 // t_slices), row, col)
            # the raw video is 96x72 too, so cell centres map 1:1 to its pixels
            assert g["x"] == pytest.approx(x0 + (col + 0.5) * 64 / side)
            assert g["y"] == pytest.approx(y0 + (row + 0.5) * 64 / side)


def test_predict_cli_matches_api(raw, checkpoint, capsys):
    video = sorted((raw / "cropped_clips").rglob("*.mp4"))[1]
    model, _, names = ck.load_model(checkpoint)
    # The CLI's --precision defaults to auto; the API takes auto too (one probe per process).
    api = predict_video(model, video, names, size=(96, 72), gaze_mode="argmax", precision="auto")
    # The frame size comes from the training data's manifest (96x72).
    args = ["predict", str(video), "--checkpoint", str(checkpoint), "--gaze-mode", "argmax"]
    assert cli_main([*args, "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["top"] == api["top"] and cli["windows"] == api["windows"]
    assert cli_main(args) == 0
    assert api["top"][0]["class"] in capsys.readouterr().out
    assert cli_main(["predict", str(raw / "missing.mp4"), "--checkpoint", str(checkpoint)]) == 2

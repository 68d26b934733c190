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
    video = sorted((raw / "cropped_clips").rglob("*.mp4"))[0]
    model, _, names = ck.load_model(checkpoint)
    out = predict_video(model, video, names, flow="dis", size=(96, 72), top_k=2, gaze_mode="argmax")
    assert out["frames"] >= 16 and len(out["windows"]) == out["frames"] // 8
    probs = [t["probability"] for t in out["top"]]
    assert len(probs) == 2 and probs[0] >= probs[1] and sum(probs) <= 1 + 1e-9
    assert {t["class"] for t in out["top"]} <= set(names)
    w0 = out["windows"][0]
    assert (w0["start_frame"], w0["end_frame"]) == (0, 7)
    t_slices, side = model.grid
    assert len(w0["gaze"]) == t_slices
    for g in w0["gaze"]:
        assert 0 <= g["row"] < side and 0 <= g["col"] < side
        assert 0 <= g["x"] < 96 and 0 <= g["y"] < 72  # the raw video is 96x72 too


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

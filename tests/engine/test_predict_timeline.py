"""`predict` for long videos: stride, tail, seed, the per-window timeline as JSON and CSV."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import gaze_attention as ga
from gaze_attention.cli import main as cli_main
from gaze_attention.data import PreparedData
from gaze_attention.engine import checkpoint as ck
from gaze_attention.engine.config import load_config
from gaze_attention.engine.inference import use_cpu_layout
from gaze_attention.engine.predict import predict_video

T = 8


@pytest.fixture(scope="module")
def checkpoint(prepared, tmp_path_factory):
    data = PreparedData(prepared)
    torch.manual_seed(5)
    model = ga.build_model("tiny", num_classes=data.num_classes, width=0.125, frames=T, crop=64)
    with torch.no_grad():  # He init: clips get distinct logits (see test_inference.py)
        for m in model.modules():
            if isinstance(m, torch.nn.Conv3d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        model.head.fc.weight.mul_(10)
        model.gaze.g3.weight.mul_(0.01)  # a flat gaze distribution: samples differ between seeds
    cfg = load_config("tiny", {"data.root": str(prepared), "model.width": 0.125, "model.frames": T,
                               "model.crop": 64})  # fmt: skip
    state = {"iteration": 0, "config": cfg.to_dict(), "model_config": model.config.to_dict(),
             "class_names": data.classes}  # fmt: skip
    folder = tmp_path_factory.mktemp("timeline_run") / "checkpoints" / ck.checkpoint_name("ckpt", 0)
    return ck.write_checkpoint(folder, model, state)


@pytest.fixture(scope="module")
def video(raw):
    return max((raw / "cropped_clips").rglob("*.mp4"), key=lambda p: p.stat().st_size)


def test_stride_and_tail_windows(video, checkpoint):
    model, _, names = ck.load_model(checkpoint)
    plain = predict_video(model, video, names, size=(96, 72), gaze_mode="argmax")
    n = plain["frames"]
    assert [w["start_frame"] for w in plain["windows"]] == list(range(0, n - T + 1, T))
    strided = predict_video(model, video, names, size=(96, 72), gaze_mode="argmax", stride=3, tail=True)
    starts = [w["start_frame"] for w in strided["windows"]]
    assert starts[: len(range(0, n - T + 1, 3))] == list(range(0, n - T + 1, 3))
    assert strided["windows"][-1]["end_frame"] == n - 1  # the tail window ends at the last frame
    # A window's own scores do not depend on the policy: window 0 is the same in both runs.
    assert strided["windows"][0]["top"] == plain["windows"][0]["top"]
    w = strided["windows"][1]
    assert w["start_s"] == pytest.approx(3 / plain["fps"]) and w["end_s"] == pytest.approx((3 + T) / plain["fps"])


def test_seed_changes_gaze_samples_only_when_sampling(video, checkpoint):
    model, _, names = ck.load_model(checkpoint)
    a = predict_video(model, video, names, size=(96, 72), gaze_mode="sample", seed=0)
    b = predict_video(model, video, names, size=(96, 72), gaze_mode="sample", seed=0)
    c = predict_video(model, video, names, size=(96, 72), gaze_mode="sample", seed=1)
    assert a["probabilities"] == b["probabilities"]
    assert not np.allclose(a["probabilities"], c["probabilities"], rtol=1e-4)
    d = predict_video(model, video, names, size=(96, 72), gaze_mode="argmax", seed=0)
    e = predict_video(model, video, names, size=(96, 72), gaze_mode="argmax", seed=1)
    assert d["probabilities"] == e["probabilities"]


def test_cli_timeline_csv_and_json(video, checkpoint, tmp_path, capsys):
    out_csv, out_json = tmp_path / "t.csv", tmp_path / "t.json"
    args = ["predict", str(video), "--checkpoint", str(checkpoint), "--gaze-mode", "argmax", "--stride", "4",
            "--top-k", "2", "--seed", "3", "--timeline", str(out_csv), "--timeline", str(out_json),
            "--precision", "fp32"]  # fmt: skip  (the API's default; auto may pick bf16 on this CPU)
    assert cli_main(args) == 0
    err = capsys.readouterr().err
    assert "window" in err  # the progress bar
    timeline = json.loads(out_json.read_text())
    windows = timeline["windows"]
    assert timeline["seed"] == 3 and timeline["windows_policy"]["stride"] == 4
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(windows) > 1
    for row, w in zip(rows, windows, strict=True):
        assert int(row["start_frame"]) == w["start_frame"] and float(row["end_s"]) == pytest.approx(w["end_s"], abs=1e-3)
        assert row["class1"] == w["top"][0]["class"] and float(row["p1"]) == pytest.approx(w["top"][0]["probability"])
        assert float(row["p1"]) >= float(row["p2"])
        assert (int(row["gaze0_row"]), int(row["gaze0_col"])) == (w["gaze"][0]["row"], w["gaze"][0]["col"])
        assert float(row["gaze0_x"]) == pytest.approx(w["gaze"][0]["x"], abs=0.05)
    # The per-window top-1 is the argmax of that window alone: the CSV carries the model's
    # window scores, checked against the API.
    model, _, names = ck.load_model(checkpoint)
    use_cpu_layout(model, "cpu")  # as the command does: the same layout rounds the same
    api = predict_video(model, video, names, size=(96, 72), gaze_mode="argmax", stride=4, top_k=2, seed=3)
    assert api["windows"] == windows


def test_cli_rejects_bad_timeline_and_stride(video, checkpoint, tmp_path, capsys):
    base = ["predict", str(video), "--checkpoint", str(checkpoint), "--no-progress"]
    assert cli_main([*base, "--timeline", str(tmp_path / "t.txt")]) == 2
    assert "--timeline" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # refused by the argument type, before any work
        cli_main([*base, "--stride", "0"])
    assert exc.value.code == 2 and "--stride: must be at least 1" in capsys.readouterr().err

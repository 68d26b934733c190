"""The command line end to end with a ViT backbone: train, evaluate, predict, visualize."""

from __future__ import annotations

import json

import pytest

from gaze_attention.cli import main as cli_main
from gaze_attention.data.prepare import prepare
from gaze_attention.data.synthetic import make_synthetic_raw
from gaze_attention.engine.checkpoint import read_state, resolve_checkpoint


@pytest.mark.slow  # about 25 s on one core
def test_vit_tiny_trains_evaluates_predicts_visualizes(tmp_path):
    raw, prep, run = tmp_path / "raw", tmp_path / "prep", tmp_path / "run"
    make_synthetic_raw(raw, num_classes=3, train_per_class=2, test_per_class=1, size=(96, 72), frames=(16, 20),
                       sessions=2, seed=2)
    assert prepare(raw, prep, flow="none", size=(96, 72), workers=1, progress=False).ok
    small = ["--set", "model.frames=8", "--set", "model.crop=64", "--set", "run.tensorboard=false"]
    assert cli_main(["train", "--preset", "vit-tiny", "--data", str(prep), "--out", str(run), "--iters", "2",
                     "--batch-size", "2", "--workers", "0", "--precision", "fp32", "--no-progress", *small]) == 0
    model_config = read_state(resolve_checkpoint(run))["model_config"]
    assert model_config["backbone"] == "videomae" and model_config["backbone_config"]["depth"] == 4
    report = tmp_path / "eval.json"
    assert cli_main(["evaluate", "--data", str(prep), "--checkpoint", str(run), "--json", str(report),
                     "--no-progress"]) == 0
    assert "mean_class_accuracy" in json.dumps(json.loads(report.read_text()))
    video = sorted((raw / "cropped_clips").rglob("*.mp4"))[0]
    assert cli_main(["predict", str(video), "--checkpoint", str(run)]) == 0
    gif = tmp_path / "v.gif"
    assert cli_main(["visualize", str(video), "--checkpoint", str(run), "--out", str(gif)]) == 0
    assert gif.stat().st_size > 0

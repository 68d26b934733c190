"""Outputs of evaluate and predict: checked before the work, strict JSON, 255-byte names, clear inputs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import gaze_attention as ga
from gaze_attention.cli import main as cli_main
from gaze_attention.data import PreparedData
from gaze_attention.engine import checkpoint as ck
from gaze_attention.engine.config import load_config


@pytest.fixture(scope="module")
def checkpoint(prepared, tmp_path_factory) -> Path:
    data = PreparedData(prepared)
    torch.manual_seed(0)
    model = ga.build_model("tiny", num_classes=data.num_classes, width=0.125, frames=8, crop=64)
    cfg = load_config("tiny", {"data.root": str(prepared), "model.width": 0.125, "model.frames": 8,
                               "model.crop": 64})  # fmt: skip
    state = {"iteration": 0, "config": cfg.to_dict(), "model_config": model.config.to_dict(),
             "class_names": data.classes}  # fmt: skip
    folder = tmp_path_factory.mktemp("outputs_run") / "checkpoints" / ck.checkpoint_name("ckpt", 0)
    return ck.write_checkpoint(folder, model, state)


@pytest.fixture(scope="module")
def video(raw) -> Path:
    return min((raw / "cropped_clips").rglob("*.mp4"), key=lambda p: p.stat().st_size)


def _no_work(monkeypatch):
    """Make the expensive part fail loudly: the output check must come before it."""
    import importlib

    evaluate = importlib.import_module("gaze_attention.engine.evaluate")
    predict = importlib.import_module("gaze_attention.engine.predict")
    monkeypatch.setattr(predict, "predict_video", lambda *a, **k: pytest.fail("predicted before the check"))
    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: pytest.fail("evaluated before the check"))


@pytest.mark.parametrize("flag", ["--json", "--timeline"])
def test_predict_checks_its_outputs_before_predicting(video, checkpoint, tmp_path, capsys, monkeypatch, flag):
    _no_work(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("")
    (tmp_path / "dir.json").mkdir()
    for out, message in ((blocker / "p.json", f"{flag} {blocker / 'p.json'}: {blocker} is not a folder"),
                         (tmp_path / "dir.json", f"{flag} {tmp_path / 'dir.json'}: is a folder")):
        assert cli_main(["predict", str(video), "--checkpoint", str(checkpoint), flag, str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: {message} (give a file name)" or err == f"error: {message}", err


def test_evaluate_checks_its_json_before_evaluating(prepared, checkpoint, tmp_path, capsys, monkeypatch):
    _no_work(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = ["evaluate", "--data", str(prepared), "--checkpoint", str(checkpoint), "--json", str(blocker / "m.json")]
    assert cli_main(args) == 2
    assert capsys.readouterr().err.strip() == f"error: --json {blocker / 'm.json'}: {blocker} is not a folder"


def test_evaluate_json_with_a_255_byte_name(prepared, checkpoint, tmp_path, capsys):
    out = tmp_path / ("m" * 250 + ".json")
    assert len(out.name.encode()) == 255
    args = ["evaluate", "--data", str(prepared), "--checkpoint", str(checkpoint), "--json", str(out),
            "--max-clips", "1", "--workers", "0", "--precision", "fp32", "--no-progress",
            "--confusion", str(tmp_path / "c.png")]  # fmt: skip
    assert cli_main(args) == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["num_clips"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, "c.png"])  # no temp left


def test_evaluate_of_no_clips_writes_valid_json_with_null(prepared, checkpoint, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for name in os.listdir(prepared):
        if name != "annotations":
            (data / name).symlink_to(prepared / name)
    shutil.copytree(prepared / "annotations", data / "annotations")
    (data / "annotations" / "test_split1.txt").write_text("")
    out = tmp_path / "m.json"
    args = ["evaluate", "--data", str(data), "--checkpoint", str(checkpoint), "--json", str(out),
            "--workers", "0", "--precision", "fp32", "--no-progress", "--confusion", str(tmp_path / "c.png")]
    code = cli_main(args)
    captured = capsys.readouterr()
    if code == 2:  # a refusal is acceptable too, if it is one clear line
        assert "no clips" in captured.err and len(captured.err.strip().splitlines()) == 1
        return
    assert code == 0, captured.err
    text = out.read_text()
    assert "NaN" not in text
    metrics = json.loads(text)
    assert metrics["num_clips"] == 0 and metrics["mean_class_accuracy"] is None
    assert "no clips" in captured.err


def test_predict_of_a_folder_that_is_not_a_prepared_clip(checkpoint, tmp_path, capsys):
    folder = tmp_path / "my_frames"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    assert cli_main(["predict", str(folder), "--checkpoint", str(checkpoint), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {folder} is a folder, not a video file nor a prepared clip folder")
    assert "PREPARED/images_rgb/<clip>" in err and "/images_rgb/my_frames" not in err
    empty = tmp_path / "prep" / "images_rgb" / "clip"
    empty.mkdir(parents=True)
    assert cli_main(["predict", str(empty), "--checkpoint", str(checkpoint), "--no-progress"]) == 2
    assert f"{empty}: a prepared clip folder without frames" in capsys.readouterr().err

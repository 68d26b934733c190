"""The input geometry travels with the weights: predict on a copied run folder whose training data
is gone resizes a video as training saw its frames, and says so when a flag overrides it."""

from __future__ import annotations

import json
import shutil

import pytest

from gaze_attention.cli import main
from gaze_attention.data.store import FrameGeometry
from gaze_attention.engine.train import train
from gaze_attention.engine.train_state import video_inputs


def _predict(video, run, out, capsys, *extra) -> tuple[dict, str]:
    capsys.readouterr()
    code = main(["predict", str(video), "--checkpoint", str(run), "--json", str(out), "--gaze-mode", "argmax",
                 "--precision", "fp32", "--no-progress", *extra])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    return json.loads(out.read_text()), err


def test_copied_run_without_its_data_predicts_the_same(raw, prepared, tiny_config, tmp_path, capsys):
    data = shutil.copytree(prepared, tmp_path / "data")  # prepared at 96x72, not the default 340x256
    result = train(tiny_config(data, tmp_path / "run", **{"optim.iters": 2}), progress=False)
    video = sorted((raw / "cropped_clips").rglob("*.mp4"))[0]
    before, _ = _predict(video, result.run_dir, tmp_path / "a.json", capsys)
    moved = shutil.copytree(result.run_dir, tmp_path / "elsewhere" / "run")
    shutil.rmtree(result.run_dir)
    shutil.rmtree(data)
    after, err = _predict(video, moved, tmp_path / "b.json", capsys)
    assert after["probabilities"] == before["probabilities"]
    assert "note:" not in err  # nothing overridden, nothing guessed
    resized, err = _predict(video, moved, tmp_path / "c.json", capsys, "--size", "340x256")
    assert "--size 340x256 overrides the 96x72 frames the model was trained on" in err
    assert resized["probabilities"] != before["probabilities"]


def test_video_inputs_rules() -> None:
    g = FrameGeometry((170, 128), "dis")
    assert video_inputs(g, size=None, flow=None) == ((170, 128), "dis", [])
    size, flow, notes = video_inputs(g, size=(340, 256), flow="farneback")
    assert (size, flow) == ((340, 256), "farneback") and len(notes) == 2
    assert video_inputs(FrameGeometry((340, 256), "tvl1-torch"), size=None, flow=None)[1] == "tvl1"
    assert video_inputs(FrameGeometry((340, 256), "unknown"), size=None, flow=None)[1] == "dis"
    size, _, notes = video_inputs(None, size=None, flow=None)
    assert size == (340, 256) and "unknown" in notes[0]


@pytest.mark.parametrize("layout", ["manifest", "settings"])
def test_store_geometry_from_prepare_records(prepared, layout, tmp_path) -> None:
    from gaze_attention.data.store import FrameStore

    data = shutil.copytree(prepared, tmp_path / "d")
    if layout == "manifest":
        (data / "prepare.json").unlink()
    g = FrameStore(data).geometry()
    assert g.frame_size == (96, 72) and g.flow in ("dis", "unknown")

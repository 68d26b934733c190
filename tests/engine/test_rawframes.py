"""A dense_flow / mmaction2 rawframes folder trains, validates and evaluates like our own layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gaze_attention.cli import main
from gaze_attention.data import PreparedData
from gaze_attention.engine.evaluate import evaluate
from gaze_attention.engine.train import train


def _as_rawframes(prepared: Path, out: Path) -> Path:
    """The same frames in the rawframes layout: <clip>/img_00001.jpg, flow_x_/flow_y_ (no manifest)."""
    for clip_dir in sorted((prepared / "images_rgb").iterdir()):
        clip = out / clip_dir.name
        clip.mkdir(parents=True)
        for f in sorted(clip_dir.glob("*.jpg")):
            shutil.copy(f, clip / f"img_{int(f.stem):05d}.jpg")
        for channel, prefix in (("u", "flow_x"), ("v", "flow_y")):
            for f in sorted((prepared / "images_flow" / clip_dir.name / channel).glob("*.jpg")):
                shutil.copy(f, clip / f"{prefix}_{int(f.stem):05d}.jpg")
    for f in (prepared / "annotations").iterdir():
        shutil.copy(f, out / f.name)
    shutil.copytree(prepared / "gaze", out / "gaze")
    return out


@pytest.fixture(scope="module")
def rawframes(prepared, tmp_path_factory) -> Path:
    return _as_rawframes(prepared, tmp_path_factory.mktemp("rawframes"))


def test_rawframes_evaluate_equals_prepared(prepared, rawframes, tiny_config, tmp_path):
    cfg = tiny_config(rawframes, tmp_path / "run", **{"run.val_every": 3, "optim.iters": 3})
    result = train(cfg, progress=False)
    assert [v["iteration"] for v in result.validation] == [3]  # --val-every read the rawframes clips
    assert PreparedData(rawframes).layout == "rawframes"
    kw = dict(split=1, gaze_mode="argmax", precision="fp32", device="cpu")
    a = evaluate(result.model, PreparedData(rawframes), **kw)
    b = evaluate(result.model, PreparedData(prepared), **kw)
    assert a["num_clips"] == b["num_clips"] > 0
    for ca, cb in zip(a["clips"], b["clips"], strict=True):
        np.testing.assert_allclose(ca["logits"], cb["logits"], rtol=1e-5, atol=1e-6)
    assert a["gaze_within_one_cell"] == b["gaze_within_one_cell"]


def test_rawframes_evaluate_command(rawframes, tmp_path, capsys, tiny_model_overrides):
    sets = [f"--set={k}={v}" for k, v in tiny_model_overrides.items()]
    common = ["--data", str(rawframes), "--split", "1"]
    assert main(["train", *common, "--preset", "tiny", "--out", str(tmp_path / "run"), "--iters", "2",
                 "--batch-size", "2", "--workers", "0", "--precision", "fp32", "--no-progress",
                 "--set=optim.optimizer=sgd", "--set=run.tensorboard=false", *sets]) == 0  # fmt: skip
    out = tmp_path / "eval.json"
    code = main(["evaluate", *common, "--checkpoint", str(tmp_path / "run"), "--json", str(out),
                 "--precision", "fp32", "--no-progress", "--workers", "1"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["num_clips"] > 0

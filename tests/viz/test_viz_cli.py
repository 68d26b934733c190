"""`gaze-attention visualize` end to end on a tiny saved model."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from PIL import Image

from gaze_attention.cli import main

CROP = 64  # the tiny model of conftest.py
CLASSES = ["cut tomato", "open fridge", "take bowl"]


def _save(model, folder: Path, estimator: str = "direct") -> Path:
    from gaze_attention.engine.checkpoint import checkpoint_name, write_checkpoint
    from gaze_attention.engine.config import TrainConfig

    cfg = TrainConfig.from_dict({"estimator": {"name": estimator}})
    state = {"iteration": 10, "config": cfg.to_dict(), "model_config": model.config.to_dict(),
             "class_names": CLASSES}
    return write_checkpoint(folder / "checkpoints" / checkpoint_name("best", 10), model, state)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    _save(tiny_model, root / "gaze")
    _save(tiny_model, root / "nogaze", estimator="none")
    return root / "gaze", root / "nogaze"


def test_visualize_video_gif_with_compare(tmp_path: Path, runs, small_video: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    gaze, nogaze = runs
    out = tmp_path / "v.gif"
    rc = main(["visualize", str(small_video), "--checkpoint", str(gaze), "--compare",
               str(nogaze), "--out", str(out), "--class", "Open fridge", "--size", "96x80",
               "--fps", "6", "--max-frames", "16"])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.n_frames == 16
        assert im.size[0] == 2 * 3 * CROP + 6  # two models, 64-pixel crops upscaled x3
        assert im.info["duration"] == 170


def test_visualize_prepared_clip_mp4_and_png(tmp_path: Path, runs, prepared_clip: Path) -> None:
    gaze, _ = runs
    out = tmp_path / "p.mp4"
    assert main(["visualize", str(prepared_clip), "--checkpoint", str(gaze), "--out", str(out),
                 "--overlays", "gradcam,recorded", "--class", "label", "--norm", "clip",
                 "--start", "2", "--max-frames", "16"]) == 0
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 16 and frames[0].shape[1] == 3 * CROP
    sheet = tmp_path / "p.png"
    assert main(["visualize", str(prepared_clip), "--checkpoint", str(gaze), "--out", str(sheet),
                 "--overlays", "gaze,sample,recorded", "--gaze-mode", "argmax",
                 "--sheet-frames", "3"]) == 0
    with Image.open(sheet) as im:
        assert im.size[0] == 120 + 3 * (3 * CROP + 3)


def test_visualize_rejects_bad_options(tmp_path: Path, runs, small_video: Path, capsys) -> None:
    gaze, _ = runs
    base = ["visualize", str(small_video), "--checkpoint", str(gaze)]
    for extra, message in (
        (["--out", str(tmp_path / "x.gif"), "--overlays", "gaze,halo"], "--overlays"),
        (["--out", str(tmp_path / "x.avi")], ".gif, .mp4 or .png"),
        (["--out", str(tmp_path / "x.gif"), "--class", "juggle"], "not a class"),
        (["--out", str(tmp_path / "x.gif"), "--class", "label"], "no label"),
    ):
        capsys.readouterr()
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert message in err and err.startswith("error: ") and "\n" not in err, err
    assert not list(tmp_path.glob("x.*"))

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


def _other_classes(tmp_path: Path, prepared_clip: Path, classes: list[str], label: int) -> Path:
    """A copy of the prepared clip whose data set has `classes` and labels the clip `label` (1-based)."""
    import shutil

    root = tmp_path / "other"
    shutil.copytree(prepared_clip.parent.parent, root)
    ann = root / "annotations"
    (ann / "action_idx.txt").write_text("".join(f"{n} {i + 1}\n" for i, n in enumerate(classes)))
    (ann / "train_split1.txt").write_text("P01-R01-Other-1-2-F000001-F000024 1 1 1\n")
    (ann / "test_split1.txt").write_text(f"{prepared_clip.name} {label} 1 1\n")
    return root / "images_rgb" / prepared_clip.name


def _titles(monkeypatch) -> list[list[str]]:
    from gaze_attention.viz import render

    seen: list[list[str]] = []
    real = render._title

    def spy(*a, **k):
        seen.append(real(*a, **k))
        return seen[-1]

    monkeypatch.setattr(render, "_title", spy)
    return seen


def test_visualize_a_clip_of_a_data_set_with_other_classes(tmp_path: Path, runs, prepared_clip: Path,
                                                           capsys, monkeypatch) -> None:
    gaze, _ = runs
    clip = _other_classes(tmp_path, prepared_clip, ["wash pan", "open jar", "stir pot", "pour oil"], 4)
    base = ["visualize", str(clip), "--checkpoint", str(gaze), "--overlays", "gaze", "--max-frames", "16"]
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "a.png"), "--class", "label", "--overlays", "gradcam"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --class label: the clip's label 'pour oil' is not one of the model's 3 classes")
    assert "Traceback" not in err and err.count("error:") == 1
    titles = _titles(monkeypatch)
    assert main([*base, "--out", str(tmp_path / "b.png")]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "its data set's 4 classes differ from the model's 3 classes" in err
    assert titles and not any("true:" in line for t in titles for line in t)


def test_visualize_finds_the_label_by_name_when_the_class_lists_differ(tmp_path: Path, runs, prepared_clip: Path,
                                                                       capsys, monkeypatch) -> None:
    gaze, _ = runs
    # The same names in another order: index 0 of the data set is class 2 of the model.
    clip = _other_classes(tmp_path, prepared_clip, ["take bowl", "cut tomato", "open fridge"], 1)
    titles = _titles(monkeypatch)
    assert main(["visualize", str(clip), "--checkpoint", str(gaze), "--overlays", "gaze", "--max-frames", "16",
                 "--out", str(tmp_path / "c.png")]) == 0
    assert "the clip's label 'take bowl' is class 2 of the model" in capsys.readouterr().err
    assert any(line.startswith("true: take bowl (") for t in titles for line in t)


def test_visualize_checks_the_output_before_any_work(tmp_path: Path, runs, small_video: Path, capsys,
                                                     monkeypatch) -> None:
    from gaze_attention.commands import visualize

    monkeypatch.setattr(visualize, "_prepare", lambda *a: pytest.fail("models loaded before --out was checked"))
    gaze, _ = runs
    blocker = tmp_path / "file"
    blocker.write_text("")
    (tmp_path / "dir.gif").mkdir()
    for out, message in ((blocker / "x.gif", f"--out {blocker / 'x.gif'}: {blocker} is not a folder"),
                         (tmp_path / "dir.gif", f"--out {tmp_path / 'dir.gif'}: is a folder")):
        assert main(["visualize", str(small_video), "--checkpoint", str(gaze), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: {message}" or err.startswith(f"error: {message}"), err

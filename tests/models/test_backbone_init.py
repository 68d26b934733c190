"""The ViT presets' demand for published backbone weights (`--backbone`) and its way into the
training init; the recipe keys."""

from __future__ import annotations

import pytest
import torch

import gaze_attention as ga
from gaze_attention.cli import main as cli_main
from gaze_attention.engine.config import load_config
from gaze_attention.engine.init import InitRequiredError, check_init, init_files


@pytest.mark.parametrize(("preset", "hub"), [("vit-b", "MCG-NJU/videomae-base"),
                                             ("timesformer-b", "facebook/timesformer-base-finetuned-k400")])
def test_vit_presets_refuse_without_backbone_weights(tmp_path, capsys, preset, hub):
    args = ["train", "--preset", preset, "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--no-progress"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "--backbone PATH" in err and hub in err and "--from-scratch" in err
    assert not (tmp_path / "run").exists()
    cfg = load_config(preset, {"data.root": "x", "run.out": "y"})
    with pytest.raises(InitRequiredError):
        check_init(cfg)
    check_init(load_config(preset, {"init.require_backbone": False}))  # --from-scratch
    weights = tmp_path / "weights"
    weights.mkdir()
    check_init(load_config(preset, {"init.backbone": str(weights)}))
    with pytest.raises(FileNotFoundError, match="init.backbone: no such file or folder: .*nowhere"):
        check_init(load_config(preset, {"init.backbone": str(tmp_path / "nowhere")}))
    check_init(load_config("vit-tiny"))  # from scratch by design


def test_backbone_flag_and_recipe_keys(capsys):
    assert cli_main(["train", "--preset", "vit-b", "--backbone", "w/videomae", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "backbone: w/videomae" in out and "layer_decay: 0.75" in out and "schedule: cosine" in out
    assert "drop_path: 0.1" in out
    assert load_config("paper").optim.layer_decay == 1.0 and load_config("paper").optim.schedule == "step"
    with pytest.raises(ValueError, match="optim.layer_decay must be in"):
        load_config("vit-b", {"optim.layer_decay": 1.5})
    with pytest.raises(ValueError, match="optim.schedule 'linear' is not one of step, cosine"):
        load_config("vit-b", {"optim.schedule": "linear"})


def test_backbone_weights_reach_the_training_init(tmp_path):
    """--backbone goes where training loads its initial weights (engine/train.py's
    _init_weights: init_files -> load_initial_weights)."""
    small = {"model.frames": 8, "model.crop": 64}
    torch.manual_seed(11)
    src = ga.build_model("vit-tiny", num_classes=3, frames=8, crop=64)
    pth = tmp_path / "vit.pth"
    torch.save({"model": src.backbone.state_dict()}, pth)
    cfg = load_config("vit-tiny", {**small, "init.backbone": str(pth)})
    check_init(cfg)
    files = init_files(cfg)
    assert files == {"base": str(pth)}
    torch.manual_seed(12)
    dst = ga.build_model(cfg.model.preset, num_classes=3, **cfg.model.overrides())
    assert not torch.equal(dst.backbone.blocks[0].attn.qkv.weight, src.backbone.blocks[0].attn.qkv.weight)
    from gaze_attention.engine.train import _init_weights

    assert _init_weights(dst, cfg) == ["base"]
    for (name, a), b in zip(src.backbone.state_dict().items(), dst.backbone.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

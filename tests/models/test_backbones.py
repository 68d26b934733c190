"""Backbone interface, strict weight loading, position-table resizing, gradients, round trips,
layer-wise learning-rate groups (no transformers needed)."""

from __future__ import annotations

import argparse
import json
import warnings

import pytest
import torch

import gaze_attention as ga
from gaze_attention.models import (
    BackboneWeightsWarning,
    CheckpointMismatchError,
    ModelConfig,
    load_backbone_weights,
    param_groups,
)
from gaze_attention.models.vit import sinusoid_table

SMALL = {"hidden_size": 32, "depth": 3, "heads": 2, "intermediate_size": 48, "patch_size": 8, "gaze_block": 2}
VIDEOMAE = ModelConfig(num_classes=5, frames=4, crop=32, use_flow=False, dropout=0.5, backbone="videomae",
                       backbone_config={**SMALL, "tubelet_size": 2, "use_mean_pooling": False, "grid": [2, 2]})
TIMESFORMER = ModelConfig(num_classes=5, frames=4, crop=32, use_flow=False, dropout=0.5, backbone="timesformer",
                          backbone_config={**SMALL, "grid": [2, 2]})
CONFIGS = {"videomae": VIDEOMAE, "timesformer": TIMESFORMER}


def _rgb(cfg: ModelConfig, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, cfg.frames, cfg.crop, cfg.crop) * 2 - 1


@pytest.mark.parametrize("kind", CONFIGS)
def test_interface_shapes_and_grid(kind) -> None:
    cfg = CONFIGS[kind]
    m = ga.GazeAttentionNet(cfg).eval()
    assert m.grid == (2, 2) and m.head.fc.weight.shape == (8, 8)
    gaze_input, features = m.forward_features(_rgb(cfg))
    assert gaze_input.shape == features.shape == (2, 32, 2, 2, 2)
    out = m(_rgb(cfg), gaze_mode="argmax")
    assert out.logits.shape == (2, 5) and out.gaze_logits.shape == (2, 2, 2, 2)
    # the token grid itself when no grid is set: VideoMAE 4/2 x 32/8, TimeSformer 4 x 32/8
    token = ga.GazeAttentionNet(cfg, backbone_config={"grid": None})
    assert token.grid == ((2, 4) if kind == "videomae" else (4, 4))
    with pytest.raises(ValueError, match="does not fit this model .*multiple of the patch size 8"):
        m(torch.zeros(1, 3, 4, 36, 36))
    with pytest.raises(ValueError, match="RGB-only"):
        ga.GazeAttentionNet(cfg, use_flow=True)
    with pytest.raises(ValueError, match="does not pool to grid"):
        ga.GazeAttentionNet(cfg, backbone_config={"grid": [3, 2]})
    with pytest.raises(ValueError, match="unknown backbone_config keys .*: depht"):
        ga.GazeAttentionNet(cfg, backbone_config={"depht": 2})


def test_presets_grids_and_normalisation() -> None:
    assert ga.PRESETS["vit-b"].grid == (8, 7) and ga.PRESETS["timesformer-b"].grid == (8, 7)
    assert ga.PRESETS["vit-tiny"].grid == (8, 7)
    assert ga.PRESETS["paper"].backbone == "i3d" and ga.PRESETS["paper"].backbone_config == {}
    m = ga.build_model("vit-tiny", num_classes=3)
    x = torch.tensor([-1.0, 1.0]).view(1, 1, 2, 1, 1).expand(1, 3, 2, 1, 1)
    y = m.backbone.normalize(x)  # [-1, 1] -> ImageNet-normalised [0, 1]
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(y[0, :, 0, 0, 0], -mean / std)
    torch.testing.assert_close(y[0, :, 1, 0, 0], (1 - mean) / std)


def test_old_checkpoint_model_configs_still_rebuild_the_i3d() -> None:
    old = {"num_classes": 3, "frames": 24, "crop": 112, "width": 0.125, "use_flow": True, "dropout": 0.5,
           "bn_momentum": 0.1}
    cfg = ModelConfig.from_dict(old)
    assert cfg.backbone == "i3d" and cfg.backbone_config == {}
    assert cfg == ga.PRESETS["tiny"].__class__(**{**ga.PRESETS["tiny"].to_dict(), "num_classes": 3})


@pytest.mark.parametrize("kind", CONFIGS)
def test_checkpoint_round_trip_rebuilds_the_same_network(kind) -> None:
    a = ga.GazeAttentionNet(CONFIGS[kind]).eval()
    stored = json.loads(json.dumps(a.config.to_dict()))  # as a checkpoint stores it
    b = ga.GazeAttentionNet(ModelConfig.from_dict(stored)).eval()
    assert b.config == a.config
    b.load_state_dict(a.state_dict(), strict=True)
    rgb = _rgb(a.config)
    with torch.no_grad():
        torch.testing.assert_close(b(rgb, gaze_mode="argmax").logits, a(rgb, gaze_mode="argmax").logits)
    # the sinusoidal table and the normalisation are rebuilt from the config, not stored
    assert not any(k.endswith(("in_scale", "in_shift")) for k in a.state_dict())
    assert ("backbone.pos_embed" in a.state_dict()) == (kind == "timesformer")


@pytest.mark.parametrize("kind", CONFIGS)
@pytest.mark.parametrize("estimator", ["direct", "straight_through"])
def test_gradients_reach_every_parameter(kind, estimator) -> None:
    torch.manual_seed(1)
    m = ga.GazeAttentionNet(CONFIGS[kind]).train()
    rgb = _rgb(m.config, batch=3)
    labels = torch.tensor([0, 3, 4])
    t, s = m.grid
    target = torch.zeros(3, t, s, s)
    target[:, :, 1, 0] = 1.0
    valid = torch.ones(3, t, dtype=torch.bool)
    out = m(rgb, gaze_mode=ga.losses.TRAIN_GAZE_MODE[estimator])
    losses = ga.losses.training_losses(
        out, labels, head=m.head, estimator=estimator, eps=1.0, gaze_target=target, gaze_valid=valid
    )
    assert losses["kl"] > 0
    losses["total"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", CONFIGS)
def test_gradient_checkpointing_gives_the_same_gradients(kind) -> None:
    cfg = CONFIGS[kind]
    plain = ga.GazeAttentionNet(cfg).train()
    ckpt = ga.GazeAttentionNet(cfg, backbone_config={"grad_checkpointing": True}).train()
    ckpt.load_state_dict(plain.state_dict())
    rgb = _rgb(cfg)
    for m in (plain, ckpt):
        m.head.dropout.p = 0.0
        m(rgb, gaze_mode="expected").logits.square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)


def _saved_activation_bytes(m: ga.GazeAttentionNet, rgb: torch.Tensor) -> int:
    weights = {p.data_ptr() for p in m.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in weights:
            saved[t.data_ptr()] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        m.forward_features(rgb)
    return sum(saved.values())


@pytest.mark.parametrize("kind", CONFIGS)
def test_gradient_checkpointing_saves_fewer_activations(kind) -> None:
    cfg = CONFIGS[kind]
    rgb = _rgb(cfg)
    plain = _saved_activation_bytes(ga.GazeAttentionNet(cfg).train(), rgb)
    ckpt = _saved_activation_bytes(ga.GazeAttentionNet(cfg, backbone_config={"grad_checkpointing": True}).train(), rgb)
    assert ckpt < plain / 2, (ckpt, plain)  # only the blocks' inputs stay (ViT-B, 784 tokens: 32 of 446 MiB)


def test_drop_path_is_stochastic_in_training_only() -> None:
    m = ga.GazeAttentionNet(VIDEOMAE, backbone_config={"drop_path": 0.5})
    rgb = _rgb(VIDEOMAE)
    m.train()
    a, b = m.forward_features(rgb)[1], m.forward_features(rgb)[1]
    assert not torch.allclose(a, b)
    m.eval()
    torch.testing.assert_close(m.forward_features(rgb)[1], m.forward_features(rgb)[1])
    assert m.backbone.drop_rates[0] == 0.0 and m.backbone.drop_rates[-1] == 0.5


@pytest.mark.parametrize("kind", CONFIGS)
def test_bf16_autocast(kind) -> None:
    m = ga.GazeAttentionNet(CONFIGS[kind]).eval()
    rgb = _rgb(m.config)
    seen = []
    m.backbone.blocks[0].mlp.fc1.register_forward_hook(lambda mod, i, o: seen.append(o.dtype))
    with torch.no_grad():
        ref = m.forward_features(rgb)[1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m.forward_features(rgb)[1]
    assert seen == [torch.float32, torch.bfloat16]  # the blocks ran in bf16
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), ref, atol=0.1 * float(ref.abs().max()), rtol=0.05)


def _timm_file(tmp_path, model: ga.GazeAttentionNet, layout: str):
    state = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    c = model.backbone.out_channels
    if layout == "finetune":  # VideoMAE fine-tuned: {"model": ..., head and fc_norm}, plus its args
        obj = {"model": {**state, "head.weight": torch.zeros(7, c), "head.bias": torch.zeros(7),
                         "fc_norm.weight": torch.ones(c), "fc_norm.bias": torch.zeros(c)},
               "epoch": 3, "args": argparse.Namespace(lr=1e-3)}
    else:  # pre-training: {"module": encoder.* + decoder}
        obj = {"module": {**{"encoder." + k: v for k, v in state.items()},
                          "decoder.blocks.0.norm1.weight": torch.ones(c), "mask_token": torch.zeros(1, 1, c),
                          "encoder_to_decoder.weight": torch.zeros(c, c)}}
    path = tmp_path / f"{layout}.pth"
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("layout", ["finetune", "pretrain"])
def test_original_videomae_pth_layout(tmp_path, layout) -> None:
    torch.manual_seed(5)
    src = ga.GazeAttentionNet(VIDEOMAE).eval()
    path = _timm_file(tmp_path, src, layout)
    torch.manual_seed(6)
    dst = ga.build_model(VIDEOMAE, backbone_weights=path).eval()
    rgb = _rgb(VIDEOMAE)
    with torch.no_grad():
        torch.testing.assert_close(dst.forward_features(rgb)[1], src.forward_features(rgb)[1])
    assert "blocks.0.attn.q_bias" in src.backbone.state_dict()  # the original's names are ours


def test_pth_with_code_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "fn": warnings.warn}, path)
    with pytest.raises(ValueError, match=r"evil\.pth holds Python code or objects"):
        load_backbone_weights(ga.GazeAttentionNet(VIDEOMAE), path)


def test_strict_loading_names_missing_unexpected_and_misshapen_keys(tmp_path) -> None:
    m = ga.GazeAttentionNet(VIDEOMAE)
    state = {k: v.clone() for k, v in m.backbone.state_dict().items()}
    del state["blocks.1.mlp.fc2.bias"]
    state["blocks.9.attn.qkv.weight"] = torch.zeros(3)
    state["blocks.0.norm1.weight"] = torch.ones(31)
    path = tmp_path / "bad.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_backbone_weights(m, path)
    msg = str(err.value)
    assert "bad.pth" in msg and "missing keys (1): blocks.1.mlp.fc2.bias" in msg
    assert "unexpected keys (1): blocks.9.attn.qkv.weight" in msg
    assert "wrong shape: blocks.0.norm1.weight: checkpoint [31], model [32]" in msg
    assert err.value.missing == ["blocks.1.mlp.fc2.bias"]


def test_a_folder_of_the_other_layout_is_refused(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "timesformer", "hidden_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8}), encoding="utf-8")
    with pytest.raises(ValueError, match="holds a timesformer model, but this model's backbone is videomae"):
        ga.build_model(VIDEOMAE, backbone_weights=tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "videomae", "hidden_size": 32,
        "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 48, "patch_size": 8}), encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="no model.safetensors or pytorch_model.bin"):
        ga.build_model(VIDEOMAE, backbone_weights=tmp_path)


def test_videomae_position_table_regenerated_for_another_clip(tmp_path) -> None:
    src = ga.GazeAttentionNet(VIDEOMAE)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "videomae", "hidden_size": 32,
        "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 48, "patch_size": 8,
        "tubelet_size": 2, "num_frames": 4, "image_size": 32, "use_mean_pooling": False, "layer_norm_eps": 1e-6}),
        encoding="utf-8")
    hf = {"embeddings.patch_embeddings.projection.weight": src.backbone.patch_embed.proj.weight}
    for k, v in src.backbone.state_dict().items():
        if not k.startswith("patch_embed"):
            hf[k] = v  # our names for the rest: filter_checkpoint leaves them alone
    hf["embeddings.patch_embeddings.projection.bias"] = src.backbone.patch_embed.proj.bias
    torch.save(hf, tmp_path / "pytorch_model.bin")
    with pytest.warns(BackboneWeightsWarning, match="sinusoidal position table regenerated for 8 frames of 48x48"):
        big = ga.build_model(VIDEOMAE, backbone_weights=tmp_path, frames=8, crop=48, backbone_config={"grid": None})
    assert big.backbone.pos_embed.shape == (1, 4 * 6 * 6, 32)
    torch.testing.assert_close(big.backbone.pos_embed[0], sinusoid_table(144, 32))
    torch.testing.assert_close(big.backbone.blocks[2].mlp.fc1.weight, src.backbone.blocks[2].mlp.fc1.weight)


def test_timesformer_learned_tables_interpolated(tmp_path) -> None:
    src = ga.GazeAttentionNet(TIMESFORMER)
    state = {k: v.clone() for k, v in src.backbone.state_dict().items()}
    c = 32
    # space table: class row, then a 4 x 4 grid that is constant along rows; time: a ramp
    row = torch.arange(4.0).view(4, 1, 1).expand(4, 4, c)
    state["pos_embed"] = torch.cat([torch.full((1, c), 9.0), row.reshape(16, c)])[None]
    state["time_embed"] = torch.linspace(0, 1, 4).view(1, 4, 1).expand(1, 4, c).clone()
    path = tmp_path / "tsf.pth"
    torch.save({"model": state}, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        big = ga.build_model(TIMESFORMER, backbone_weights=path, frames=8, crop=64, backbone_config={"grid": None})
    said = " | ".join(str(w.message) for w in caught if issubclass(w.category, BackboneWeightsWarning))
    assert "space position table interpolated from 4x4 to 8x8" in said
    assert "time position table interpolated from 4 to 8 frames" in said
    pos, tim = big.backbone.pos_embed.detach(), big.backbone.time_embed.detach()
    assert pos.shape == (1, 65, c) and tim.shape == (1, 8, c)
    assert torch.equal(pos[0, 0], torch.full((c,), 9.0))
    grid = pos[0, 1:].view(8, 8, c)
    assert torch.allclose(grid, grid[:, :1])  # constant along each row stays so
    assert grid[0, 0, 0] == 0 and grid[-1, 0, 0] == 3 and (grid[1:, 0, 0] >= grid[:-1, 0, 0]).all()
    assert tim[0, 0, 0] == 0 and tim[0, -1, 0] == 1 and (tim[0, 1:, 0] >= tim[0, :-1, 0]).all()
    # interpolated, not repeated: more distinct values than the checkpoint had
    assert tim[0, :, 0].unique().numel() > 4 and grid[:, 0, 0].unique().numel() > 4


def test_param_groups_layer_decay() -> None:
    m = ga.GazeAttentionNet(VIDEOMAE)
    groups = param_groups(m, base_lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    seen = [p for g in groups for p in g["params"]]
    assert len(seen) == len(list(m.parameters())) == len({id(p) for p in seen})
    by_param = {id(p): g for g in groups for p in g["params"]}
    names = dict(m.named_parameters())
    depth = 3
    assert by_param[id(names["backbone.patch_embed.proj.weight"])]["lr_scale"] == 0.5 ** (depth + 1)
    assert by_param[id(names["backbone.blocks.0.attn.qkv.weight"])]["lr_scale"] == 0.5**depth
    assert by_param[id(names["backbone.blocks.2.mlp.fc1.weight"])]["lr_scale"] == 0.5
    assert by_param[id(names["head.fc.weight"])]["lr_scale"] == 1.0
    assert by_param[id(names["gaze.g1.weight"])]["lr"] == 1e-3
    assert by_param[id(names["backbone.blocks.0.attn.q_bias"])]["weight_decay"] == 0.0
    assert by_param[id(names["backbone.blocks.0.norm1.weight"])]["weight_decay"] == 0.0
    assert by_param[id(names["backbone.blocks.0.mlp.fc1.weight"])]["weight_decay"] == 0.05
    t = ga.GazeAttentionNet(TIMESFORMER)
    tg = {id(p): g for g in param_groups(t, 1.0, 0.1, 0.9) for p in g["params"]}
    assert tg[id(t.backbone.pos_embed)]["weight_decay"] == 0.0 and tg[id(t.backbone.cls_token)]["lr_scale"] == 0.9**4
    torch.optim.AdamW(param_groups(t, 1.0, 0.1, 0.9))  # the groups are valid optimizer input
    i3d = param_groups(ga.build_model("tiny", num_classes=3), 0.1, 1e-4, 0.75)
    assert len(i3d) == 1 and i3d[0]["lr"] == 0.1 and i3d[0]["weight_decay"] == 1e-4
    with pytest.raises(ValueError, match="layer_decay"):
        param_groups(m, 1e-3, 0.05, 0.0)


def test_vit_tiny_forward_and_cam_layer() -> None:
    from gaze_attention.viz.render import default_cam_layers

    m = ga.build_model("vit-tiny", num_classes=4).eval()
    assert default_cam_layers(m) == ["backbone.token_map"]
    assert default_cam_layers(ga.build_model("tiny", num_classes=3)) == [
        "backbone.model_rgb.Mixed_5c", "backbone.model_flow.Mixed_5c"]
    with torch.no_grad():
        out = m(_rgb(m.config, batch=1))
    assert out.features.shape == (1, 192, 8, 7, 7) and out.logits.shape == (1, 4)

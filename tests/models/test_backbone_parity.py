"""Our VideoMAE / TimeSformer backbones against Hugging Face transformers, loaded from the
folder `save_pretrained` writes: `last_hidden_state` to fp32 rounding."""

from __future__ import annotations

import warnings

import pytest
import torch

import gaze_attention as ga
from gaze_attention.models import BackboneWeightsWarning

transformers = pytest.importorskip(
    "transformers", reason="parity tests need Hugging Face transformers (the `test` extra: pip install -e '.[test]')"
)

VIDEOMAE = [
    # depth, width, heads, tubelet, patch, frames, size, final norm or mean pooling, q/v biases
    {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
     "tubelet_size": 2, "patch_size": 8, "num_frames": 4, "image_size": 32, "use_mean_pooling": True},
    {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "intermediate_size": 80,
     "tubelet_size": 1, "patch_size": 16, "num_frames": 3, "image_size": 48, "use_mean_pooling": False,
     "layer_norm_eps": 1e-6},
    {"num_hidden_layers": 1, "hidden_size": 24, "num_attention_heads": 3, "intermediate_size": 40,
     "tubelet_size": 4, "patch_size": 4, "num_frames": 8, "image_size": 16, "use_mean_pooling": False,
     "qv_bias": False, "hidden_act": "gelu_new"},
]
TIMESFORMER = [
    {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
     "patch_size": 8, "num_frames": 4, "image_size": 32},
    {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "intermediate_size": 96,
     "patch_size": 16, "num_frames": 2, "image_size": 48, "layer_norm_eps": 1e-5},
    {"num_hidden_layers": 1, "hidden_size": 24, "num_attention_heads": 3, "intermediate_size": 40,
     "patch_size": 4, "num_frames": 5, "image_size": 12, "qkv_bias": False},
]


def _randomize(model: torch.nn.Module) -> None:
    """Every weight random (HF zero-initialises biases, which would hide a mis-mapped bias)."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _hf(kind: str, cfg: dict, folder, *, as_bin: bool = False) -> torch.nn.Module:
    if kind == "videomae":
        model = transformers.VideoMAEModel(transformers.VideoMAEConfig(**cfg))
    else:
        model = transformers.TimesformerModel(transformers.TimesformerConfig(**cfg))
    _randomize(model)
    model.eval()
    if as_bin:
        model.config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    else:
        model.save_pretrained(folder)
    return model


def _ours(preset: str, cfg: dict, folder) -> ga.GazeAttentionNet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackboneWeightsWarning)  # the preset's ViT-B becomes this size
        return ga.build_model(
            preset, backbone_weights=folder, num_classes=3, frames=cfg["num_frames"], crop=cfg["image_size"],
            backbone_config={"grid": None, "gaze_block": 1},
        ).eval()


def _compare(ours: ga.GazeAttentionNet, hf: torch.nn.Module, cfg: dict, *, drop_cls: bool) -> None:
    torch.manual_seed(3)
    rgb = torch.rand(2, 3, cfg["num_frames"], cfg["image_size"], cfg["image_size"]) * 2 - 1
    with torch.no_grad():
        gaze_input, features = ours.forward_features(rgb)
        pixels = ours.backbone.normalize(rgb).transpose(1, 2)  # HF takes [B, T, 3, H, W]
        ref = hf(pixel_values=pixels).last_hidden_state  # [B, (1 +) N, C]
    if drop_cls:  # TimeSformer: class token first, then patches space-major (n * T + t)
        t, h = cfg["num_frames"], cfg["image_size"] // cfg["patch_size"]
        ref = ref[:, 1:].reshape(2, h, h, t, -1).permute(0, 4, 3, 1, 2)
    else:  # VideoMAE: time-major (t * H'W' + n)
        t, h = cfg["num_frames"] // cfg["tubelet_size"], cfg["image_size"] // cfg["patch_size"]
        ref = ref.reshape(2, t, h, h, -1).permute(0, 4, 1, 2, 3)
    assert features.shape == ref.shape == gaze_input.shape
    scale = float(ref.abs().max())
    assert scale > 0.1  # not a degenerate all-zero comparison
    torch.testing.assert_close(features, ref, atol=2e-5 * max(1.0, scale), rtol=1e-5)


@pytest.mark.parametrize("cfg", VIDEOMAE, ids=["d2-w32-t2-p8", "d3-w48-t1-p16-norm", "d1-w24-t4-p4-nobias"])
def test_videomae_matches_transformers(cfg, tmp_path) -> None:
    hf = _hf("videomae", cfg, tmp_path)
    ours = _ours("vit-b", cfg, tmp_path)
    assert (ours.backbone.norm is None) == cfg["use_mean_pooling"]
    _compare(ours, hf, cfg, drop_cls=False)


@pytest.mark.parametrize("cfg", TIMESFORMER, ids=["d2-w32-p8-f4", "d3-w48-p16-f2", "d1-w24-p4-f5-nobias"])
def test_timesformer_matches_transformers(cfg, tmp_path) -> None:
    hf = _hf("timesformer", cfg, tmp_path)
    ours = _ours("timesformer-b", cfg, tmp_path)
    _compare(ours, hf, cfg, drop_cls=True)


@pytest.mark.parametrize("kind", ["videomae", "timesformer"])
def test_pytorch_model_bin_folders_load_too(kind, tmp_path) -> None:
    cfg = (VIDEOMAE if kind == "videomae" else TIMESFORMER)[0]
    hf = _hf(kind, cfg, tmp_path, as_bin=True)
    assert not (tmp_path / "model.safetensors").exists()
    ours = _ours("vit-b" if kind == "videomae" else "timesformer-b", cfg, tmp_path)
    _compare(ours, hf, cfg, drop_cls=kind == "timesformer")


def test_transformers_4_layout_with_q_bias_v_bias(tmp_path) -> None:
    """Hub files written by transformers 4 hold `q_bias` / `v_bias` instead of query/value biases."""
    cfg = VIDEOMAE[0]
    hf = _hf("videomae", cfg, tmp_path, as_bin=True)
    state = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    old = {}
    for k, v in state.items():
        k = k.replace("attention.attention.query.bias", "attention.attention.q_bias")
        old[k.replace("attention.attention.value.bias", "attention.attention.v_bias")] = v
    assert any(k.endswith("q_bias") for k in old)
    torch.save(old, tmp_path / "pytorch_model.bin")
    _compare(_ours("vit-b", cfg, tmp_path), hf, cfg, drop_cls=False)


def test_mean_std_come_from_the_preprocessor_config(tmp_path) -> None:
    cfg = VIDEOMAE[0]
    _hf("videomae", cfg, tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        '{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}', encoding="utf-8"
    )
    ours = _ours("vit-b", cfg, tmp_path)
    assert ours.config.backbone_config["mean"] == [0.5, 0.5, 0.5]
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(ours.backbone.normalize(x).flatten(), torch.tensor([-2.0, 0.0, 2.0]))

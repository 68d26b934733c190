"""Parity with the authors' released attention head and golden vectors; checkpoint loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gaze_attention as ga
from gaze_attention.estimators import brute_force_candidate_losses, direct_optimization_grad
from gaze_attention.models.gaze_attention import AttentionHead


@pytest.fixture(scope="module")
def golden(shared_dir) -> dict[str, torch.Tensor]:
    data = np.load(shared_dir / "reference" / "golden_attention_direct_opt.npz")
    return {k: torch.from_numpy(v) for k, v in data.items()}


@pytest.fixture(scope="module")
def released_head(shared_dir) -> AttentionHead:
    model = ga.build_model("paper", num_classes=106)
    assert ga.load_reference_checkpoint(model, attn=shared_dir / "reference" / "i3d_iga_best1_attn.pt") == [
        "attn"
    ]
    return model.head.eval()


def test_head_logits_and_ce_match_the_reference(released_head, golden) -> None:
    with torch.no_grad():
        logits = released_head(golden["z_hard"], golden["h"])
    torch.testing.assert_close(logits, golden["logits"], atol=1e-4, rtol=0)
    ce = F.cross_entropy(logits, golden["label"], reduction="none")
    torch.testing.assert_close(ce, golden["ce"], atol=1e-4, rtol=0)


def test_candidate_losses_match_reference_and_brute_force(released_head, golden) -> None:
    z, h, y = golden["z_hard"], golden["h"], golden["label"]
    with torch.no_grad():
        closed = released_head.candidate_losses(z, h, y)
        brute = brute_force_candidate_losses(released_head, z, h, y)
    assert closed.shape == (3, 3, 49)
    torch.testing.assert_close(closed, golden["candidate_ce"], atol=1e-4, rtol=0)
    torch.testing.assert_close(closed, brute, atol=1e-4, rtol=0)
    # the candidate equal to z itself is the plain loss
    idx = z.flatten(2).argmax(-1)  # [B, T']
    torch.testing.assert_close(
        closed.gather(-1, idx[..., None]).squeeze(-1), golden["ce"][:, None].expand(3, 3), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize("eps", [1000, 100, 10, 1, 0.1])
def test_direct_optimization_grad_equals_golden_exactly(released_head, golden, eps) -> None:
    with torch.no_grad():
        cand = released_head.candidate_losses(golden["z_hard"], golden["h"], golden["label"])
    grad = direct_optimization_grad(golden["pi_g"], golden["z_hard"], cand, float(eps))
    assert torch.equal(grad, golden[f"grad_eps_{eps:g}"])
    # with the golden candidate losses too
    grad = direct_optimization_grad(golden["pi_g"], golden["z_hard"], golden["candidate_ce"], float(eps))
    assert torch.equal(grad, golden[f"grad_eps_{eps:g}"])


def test_batched_estimator_equals_per_sample(released_head, golden) -> None:
    """The reference's batched chunking mixes samples up; ours must not."""
    z, h, y, pi_g = golden["z_hard"], golden["h"], golden["label"], golden["pi_g"]
    with torch.no_grad():
        batched = released_head.candidate_losses(z, h, y)
        for b in range(3):
            single = released_head.candidate_losses(z[b : b + 1], h[b : b + 1], y[b : b + 1])
            torch.testing.assert_close(batched[b : b + 1], single, atol=1e-5, rtol=0)
            for eps in (1000.0, 1.0, 0.1):
                assert torch.equal(
                    direct_optimization_grad(pi_g, z, batched, eps)[b],
                    direct_optimization_grad(pi_g[b : b + 1], z[b : b + 1], single, eps)[0],
                )


def test_candidate_losses_leave_the_mode_alone_and_ignore_dropout() -> None:
    head = AttentionHead(features=16, num_classes=4, grid=(2, 3), dropout=0.9).train()
    z = ga.estimators.one_hot_cells(torch.randint(0, 9, (2, 2)), 3)
    feats = torch.randn(2, 16, 2, 3, 3)
    y = torch.tensor([0, 3])
    a = head.candidate_losses(z, feats, y)
    b = head.candidate_losses(z, feats, y)
    assert head.training
    torch.testing.assert_close(a, b)
    head.eval()
    with torch.no_grad():
        torch.testing.assert_close(a, brute_force_candidate_losses(head, z, feats, y), atol=1e-5, rtol=0)
    # soft z (e.g. the expected gaze) works too
    soft = torch.softmax(torch.randn(2, 2, 9), -1).view(2, 2, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(
            head.candidate_losses(soft, feats, y),
            brute_force_candidate_losses(head, soft, feats, y),
            atol=1e-5,
            rtol=0,
        )


def test_released_file_is_a_legacy_cuda_pickle_loaded_as_tensors(shared_dir) -> None:
    state = ga.models.reference.read_state_dict(shared_dir / "reference" / "i3d_iga_best1_attn.pt")
    assert sorted(state) == ["fc.bias", "fc.weight", "fc_f.bias", "fc_f.weight"]
    assert all(v.device.type == "cpu" for v in state.values())


def test_reference_layout_round_trip(tmp_path) -> None:
    src = ga.build_model("tiny", num_classes=7)
    paths = ga.save_reference_checkpoint(src, tmp_path / "run")
    raw = torch.load(paths["base"], weights_only=True)
    assert all(k.startswith("module.model_") for k in raw)
    dst = ga.build_model("tiny", num_classes=7)
    assert ga.load_reference_checkpoint(dst, **paths) == ["base", "gaze", "attn"]
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), k


def test_kinetics_single_stream_files(tmp_path) -> None:
    """piergiaj-style files: no prefix, a Kinetics classifier, maybe no BN counters."""
    src = ga.build_model("tiny", num_classes=3)
    for stream in ("rgb", "flow"):
        i3d = getattr(src.backbone, f"model_{stream}")
        state = {k: v for k, v in i3d.state_dict().items() if not k.endswith("num_batches_tracked")}
        c = i3d.out_channels
        state["logits.conv3d.weight"] = torch.randn(400, c, 1, 1, 1)
        state["logits.conv3d.bias"] = torch.randn(400)
        torch.save(state, tmp_path / f"{stream}_imagenet.pt")
    dst = ga.build_model("tiny", num_classes=3)
    ga.load_reference_checkpoint(dst, rgb=tmp_path / "rgb_imagenet.pt", flow=tmp_path / "flow_imagenet.pt")
    for k, v in src.backbone.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, dst.backbone.state_dict()[k]), k


def test_wrong_model_gives_a_key_report(tmp_path, shared_dir) -> None:
    tiny = ga.build_model("tiny", num_classes=106)
    with pytest.raises(ga.CheckpointMismatchError) as info:
        ga.load_reference_checkpoint(tiny, attn=shared_dir / "reference" / "i3d_iga_best1_attn.pt")
    msg = str(info.value)
    assert "i3d_iga_best1_attn.pt" in msg
    assert "wrong shape: fc.weight: checkpoint [147, 147], model [48, 48]" in msg
    assert "wrong shape: fc_f.weight: checkpoint [106, 1024, 1, 1, 1]" in msg
    # missing and unexpected keys are listed by name
    state = ga.to_reference_state_dicts(ga.build_model("tiny", num_classes=4))["gaze"]
    state.pop("g3.bias")
    state["g4.weight"] = torch.zeros(1)
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "bad_gaze.pt")
    with pytest.raises(ga.CheckpointMismatchError, match=r"missing keys \(1\): g3.bias") as info:
        ga.load_reference_checkpoint(ga.build_model("tiny", num_classes=4), gaze=tmp_path / "bad_gaze.pt")
    assert "unexpected keys (1): g4.weight" in str(info.value)


def test_unreadable_files_name_the_file(tmp_path) -> None:
    model = ga.build_model("tiny", num_classes=3)
    with pytest.raises(FileNotFoundError, match="nothing_here.pt"):
        ga.load_reference_checkpoint(model, base=tmp_path / "nothing_here.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        ga.load_reference_checkpoint(model, gaze=junk)
    with pytest.raises(ValueError, match="at least one"):
        ga.load_reference_checkpoint(model)

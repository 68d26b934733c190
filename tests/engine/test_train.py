"""Training: the loss falls for every estimator, exact resume, signals, divergence, CLI."""

from __future__ import annotations

import importlib
import json
import os
import signal

import pytest
import torch

import gaze_attention as ga
from gaze_attention.cli import main as cli_main
from gaze_attention.data import PreparedData
from gaze_attention.engine import checkpoint as ck
from gaze_attention.engine import evaluate, load_model, train
from gaze_attention.engine.train import NonFiniteLossError

# The module, not the `train` function the package re-exports under the same name.
train_mod = importlib.import_module("gaze_attention.engine.train")


@pytest.mark.parametrize("estimator", ["direct", "gumbel_softmax", "straight_through", "none"])
def test_loss_falls_for_every_estimator(prepared, tmp_path, estimator, tiny_config):
    cfg = tiny_config(
        prepared, tmp_path / "run", **{"estimator.name": estimator, "optim.iters": 30, "optim.lr": 0.005,
                                       "run.log_every": 10, "data.max_train_per_class": 2},
    )  # fmt: skip
    result = train(cfg, progress=False)
    ce = [row["ce"] for row in result.history]  # mean CE of iterations 1-10, 11-20, 21-30
    assert len(ce) == 3
    assert ce[-1] < 0.9 * ce[0], ce
    assert result.iteration == 30 and result.last_checkpoint.name == "ckpt-00000030"


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("channels_last, optimizer", [(False, "sgd"), (True, "sgd"), (True, "adamw")])
def test_resume_continues_exactly(prepared, tmp_path, tiny_config, channels_last, optimizer):
    # Dropout on and the direct estimator: Gumbel noise, dropout masks, crops and flips all
    # have to continue from the saved RNG states and data position (and AdamW's moments).
    over = {
        "model.dropout": 0.5,
        "optim.iters": 6,
        "optim.milestones": [4],
        "optim.optimizer": optimizer,
        "run.channels_last": channels_last,
    }
    straight = train(tiny_config(prepared, tmp_path / "straight", **over), progress=False)
    part = train(
        tiny_config(prepared, tmp_path / "split", **dict(over, **{"optim.iters": 3})), progress=False
    )
    assert part.iteration == 3
    resumed = train(
        tiny_config(prepared, tmp_path / "split", **dict(over, **{"run.resume": str(tmp_path / "split")})),
        progress=False,
    )
    assert resumed.iteration == 6
    assert [r["iteration"] for r in resumed.history] == list(range(1, 7))  # CSV rows 1-3 kept
    for a, b in zip(straight.history, resumed.history, strict=True):
        for key in ("loss", "ce", "kl", "do", "lr", "eps"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["iteration"], key)
    assert straight.seen[3 * 4 :] == resumed.seen
    w1, w2 = _weights(straight.model), _weights(resumed.model)
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-5, atol=1e-6, msg=k)


def test_sigint_saves_a_checkpoint_and_returns(prepared, tmp_path, monkeypatch, tiny_config):
    real = train_mod.training_losses
    calls = []

    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "training_losses", interrupting)
    previous = signal.getsignal(signal.SIGINT)
    result = train(tiny_config(prepared, tmp_path / "run", **{"optim.iters": 50}), progress=False)
    assert result.interrupted and result.stop_signal == "SIGINT"
    assert result.iteration == 3  # the step in flight finished, then it stopped
    assert result.last_checkpoint.name == "ckpt-00000003"
    assert ck.read_state(result.last_checkpoint)["iteration"] == 3
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(prepared, tmp_path, monkeypatch, tiny_config):
    real = train_mod.training_losses
    calls = []

    def diverging(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 4:
            out["total"] = out["total"] * float("nan")
        return out

    monkeypatch.setattr(train_mod, "training_losses", diverging)
    cfg = tiny_config(prepared, tmp_path / "run", **{"optim.iters": 10, "run.checkpoint_every": 2})
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at iteration 3 .*ckpt-00000002"):
        train(cfg, progress=False)
    ckpts = ck.list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [i for i, _ in ckpts] == [2]
    load_model(tmp_path / "run")


def test_validation_keeps_best_and_cli_round_trip(prepared, tmp_path, capsys, tiny_model_overrides):
    run = tmp_path / "run"
    sets = [f"--set={k}={v}" for k, v in tiny_model_overrides.items()]
    args = ["train", "--data", str(prepared), "--out", str(run), "--preset", "tiny", "--iters", "4",
            "--batch-size", "2", "--workers", "0", "--precision", "bf16", "--val-every", "2",
            "--no-progress", *sets, "--set", "run.tensorboard=true"]  # fmt: skip
    assert cli_main(args) == 0
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names[-1] == "ckpt-00000004" and sum(n.startswith("best-") for n in names) == 1
    assert (run / "config.yaml").is_file() and (run / "metrics.csv").is_file()
    assert (run / "validation.csv").read_text().count("\n") == 3  # header + iterations 2 and 4
    assert any((run / "tb").iterdir())
    # Continue to 6 iterations with the run's own config.
    assert cli_main(["train", "--resume", str(run), "--iters", "6", "--no-progress"]) == 0
    assert ck.resolve_checkpoint(run, prefer="last").name == "ckpt-00000006"

    out_json = tmp_path / "eval.json"
    assert cli_main(["evaluate", "--data", str(prepared), "--checkpoint", str(run), "--json", str(out_json),
                     "--sparse", "--workers", "0", "--no-progress"]) == 0  # fmt: skip
    m = json.loads(out_json.read_text())
    data = PreparedData(prepared)
    assert m["num_clips"] == len(data.split(1, "test")) and m["mode"] == "sparse"
    assert 0 <= m["mean_class_accuracy"] <= 1 and "verb_accuracy" in m and "noun_accuracy" in m
    assert m["gaze_slices"] > 0 and 0 <= m["gaze_within_one_cell"] <= 1
    assert (tmp_path / "eval_confusion.png").is_file()
    assert "mean class accuracy" in capsys.readouterr().out


def test_reference_files_evaluate(prepared, tmp_path, capsys):
    data = PreparedData(prepared)
    model = ga.build_model("tiny", num_classes=data.num_classes, width=0.125, frames=8, crop=64).eval()
    ga.save_reference_checkpoint(model, tmp_path / "i3d_iga_best1")
    direct = evaluate(model, data, 1, gaze_mode="argmax", precision="auto")  # the CLI's default
    out_json = tmp_path / "ref.json"
    args = ["evaluate", "--data", str(prepared), "--reference-prefix", str(tmp_path / "i3d_iga_best1"),
            "--preset", "tiny", "--model-set", "width=0.125", "--model-set", "frames=8",
            "--model-set", "crop=64", "--gaze-mode", "argmax", "--workers", "0", "--no-progress",
            "--json", str(out_json)]  # fmt: skip
    assert cli_main(args) == 0
    m = json.loads(out_json.read_text())
    assert m["confusion_matrix"] == direct["confusion_matrix"]
    assert m["mean_class_accuracy"] == pytest.approx(direct["mean_class_accuracy"])
    # A wrong shape is reported key by key rather than crashing.
    bad = args[:]
    bad[bad.index("width=0.125")] = "width=0.25"
    assert cli_main(bad) == 2
    assert "wrong shape" in capsys.readouterr().err


@pytest.mark.parametrize("backbone", ["vit-tiny"])
def test_resume_continues_exactly_with_a_vit_backbone(prepared, tmp_path, tiny_config, backbone):
    """Exact resume with a ViT: AdamW moments of the layer-decayed groups, the cosine schedule,
    drop path's RNG and the data position all continue."""
    base = {"model.preset": backbone, "model.use_flow": False, "model.width": None, "model.dropout": 0.0,
            "optim.optimizer": "adamw", "optim.lr": 1e-3, "optim.iters": 6, "optim.schedule": "cosine",
            "optim.layer_decay": 0.75, "model.backbone_config": {"drop_path": 0.1, "depth": 2, "gaze_block": 1}}  # fmt: skip
    base["run.checkpoint_every"] = 3
    straight = train(tiny_config(prepared, tmp_path / "straight", **base), progress=False)
    ckpt3 = tmp_path / "straight" / "checkpoints" / "ckpt-00000003"
    resumed = train(tiny_config(prepared, tmp_path / "resumed", **dict(base, **{"run.resume": str(ckpt3)})),
                    progress=False)  # fmt: skip
    assert [r["iteration"] for r in resumed.history] == [4, 5, 6]
    for a, b in zip(straight.history[3:], resumed.history, strict=True):
        for key in ("loss", "ce", "kl", "do", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["iteration"], key)
    w1, w2 = _weights(straight.model), _weights(resumed.model)
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-5, atol=1e-6, msg=k)

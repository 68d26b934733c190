"""Checkpoints: round trip, atomic writes under failures and SIGKILL, resolving paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import gaze_attention as ga
from gaze_attention.engine import checkpoint as ck
from gaze_attention.engine.config import load_config

MODEL = dict(num_classes=3, width=0.125, frames=8, crop=64)


def _state(iteration: int) -> dict:
    return {
        "iteration": iteration,
        "config": load_config("tiny").to_dict(),
        "model_config": ga.build_model("tiny", **MODEL).config.to_dict(),
        "class_names": ["a", "b", "c"],
        "rng": [ck.capture_rng()],
    }


def _model_and_optimizer():
    model = ga.build_model("tiny", **MODEL)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 8, 64, 64), torch.randn(2, 2, 8, 64, 64)).logits.sum().backward()
    opt.step()  # creates momentum buffers
    return model, opt


def test_round_trip_weights_optimizer_rng(tmp_path):
    model, opt = _model_and_optimizer()
    torch.manual_seed(123)
    folder = ck.write_checkpoint(
        tmp_path / "checkpoints" / ck.checkpoint_name("ckpt", 7), model, _state(7), opt
    )
    expected_draw = torch.rand(3)
    loaded, cfg, names = ck.load_model(tmp_path)  # a run folder: newest checkpoint
    assert names == ["a", "b", "c"] and cfg.model.preset == "tiny" and not loaded.training
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    opt2 = torch.optim.SGD(loaded.parameters(), lr=0.5)
    state = ck.read_state(folder)
    ck.load_optimizer(opt2, folder, state["optimizer"])
    assert opt2.param_groups[0]["lr"] == 0.1 and opt2.param_groups[0]["momentum"] == 0.9
    buffers = 0
    for p, q in zip(model.parameters(), loaded.parameters(), strict=True):
        if "momentum_buffer" in opt.state.get(p, {}):
            assert torch.equal(opt.state[p]["momentum_buffer"], opt2.state[q]["momentum_buffer"])
            buffers += 1
    assert buffers > 0
    ck.restore_rng(state["rng"][0])
    assert torch.equal(torch.rand(3), expected_draw)


def test_resolve_checkpoint_paths(tmp_path):
    model, opt = _model_and_optimizer()
    ckpts = tmp_path / "checkpoints"
    for it in (2, 4, 6):
        ck.write_checkpoint(ckpts / ck.checkpoint_name("ckpt", it), model, _state(it), opt)
    ck.prune(ckpts, "ckpt", keep=2)
    assert [i for i, _ in ck.list_checkpoints(ckpts)] == [4, 6]
    assert ck.resolve_checkpoint(tmp_path).name == "ckpt-00000006"
    best = ck.write_checkpoint(ckpts / ck.checkpoint_name("best", 4), model, _state(4))
    assert ck.resolve_checkpoint(tmp_path) == best  # best first
    assert ck.resolve_checkpoint(tmp_path, prefer="last").name == "ckpt-00000006"
    assert ck.resolve_checkpoint(best / "model.safetensors") == best
    (tmp_path / "empty").mkdir()
    with pytest.raises(ck.CheckpointError, match="no checkpoint"):
        ck.resolve_checkpoint(tmp_path / "empty")
    with pytest.raises(ck.CheckpointError, match="not found"):
        ck.resolve_checkpoint(tmp_path / "missing")


def test_failure_mid_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, opt = _model_and_optimizer()
    ckpts = tmp_path / "checkpoints"
    good = ck.write_checkpoint(ckpts / ck.checkpoint_name("ckpt", 1), model, _state(1), opt)
    real = ck.save_file
    calls = []

    def failing(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # the weights are written, the optimizer write dies half-way
            with open(path, "wb") as fh:
                fh.write(b"\0" * 100)
            raise OSError("disk full")
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(ck, "save_file", failing)
    with pytest.raises(OSError, match="disk full"):
        ck.write_checkpoint(ckpts / ck.checkpoint_name("ckpt", 2), model, _state(2), opt)
    # Replacing an existing checkpoint of the same name fails the same way: the old one survives.
    calls.clear()
    with pytest.raises(OSError):
        ck.write_checkpoint(good, model, _state(1), opt)
    monkeypatch.setattr(ck, "save_file", real)
    assert [p.name for p in ckpts.iterdir()] == [good.name]  # no partial folder, no leftovers
    assert ck.resolve_checkpoint(tmp_path, prefer="last") == good
    ck.load_model(tmp_path)


_WRITER = r"""
import sys, torch
import gaze_attention as ga
from gaze_attention.engine import checkpoint as ck
from gaze_attention.engine.config import load_config
model = ga.build_model("tiny", num_classes=3, width=0.125, frames=8, crop=64)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
model(torch.randn(1, 3, 8, 64, 64), torch.randn(1, 2, 8, 64, 64)).logits.sum().backward()
opt.step()
state = {"config": load_config("tiny").to_dict(), "model_config": model.config.to_dict(), "class_names": ["a", "b", "c"]}
folder = sys.argv[1] + "/checkpoints"
i = 0
while True:
    i += 1
    ck.write_checkpoint(folder + "/" + ck.checkpoint_name("ckpt", i), model, dict(state, iteration=i), opt)
    ck.write_checkpoint(folder + "/" + ck.checkpoint_name("best", 0), model, dict(state, iteration=i))
    ck.prune(folder, "ckpt", 2)
    print(i, flush=True)
"""


def test_sigkill_during_writes_never_leaves_a_broken_checkpoint(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for delay in (0.0, 0.07, 0.23):
        run = tmp_path / f"run{delay}"
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(run)], stdout=subprocess.PIPE, env=env, text=True
        )
        assert proc.stdout.readline().strip() == "1"  # one full round written
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpts = run / "checkpoints"
        visible = [p for p in ckpts.iterdir() if not p.name.startswith(".")]
        assert visible
        for folder in visible:
            model, _, _ = ck.load_model(folder)
            state = ck.read_state(folder)
            if folder.name.startswith("ckpt"):
                opt = torch.optim.SGD(model.parameters(), lr=1.0)
                ck.load_optimizer(opt, folder, state["optimizer"])
        ck.clean_partial(ckpts)
        assert not [p for p in ckpts.iterdir() if p.name.startswith(".")]


def _edit_header(path, edit):
    """Rewrite a safetensors header in place (same length, data untouched): a lying file."""
    import json as _json

    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = _json.loads(raw[8 : 8 + n])
    edit(header)
    text = _json.dumps(header, separators=(",", ":")).encode().ljust(n)
    assert len(text) == n
    path.write_bytes(raw[:8] + text + raw[8 + n :])


def test_a_header_whose_dtype_lies_is_refused_naming_the_tensor(tmp_path):
    model, _ = _model_and_optimizer()
    folder = ck.write_checkpoint(tmp_path / "ckpt-00000001", model, _state(1))
    fc = sorted(k for k in model.state_dict() if k.startswith("head.") and k.endswith(".weight"))[0]
    _edit_header(folder / ck.MODEL_FILE, lambda h: h[fc].update(dtype="I32"))  # F32 and I32: 4 bytes each
    with pytest.raises(ck.CheckpointError) as info:
        ck.load_model(folder)
    assert f"tensor {fc} is stored as I32, the model expects F32" in str(info.value)
    assert str(folder / ck.MODEL_FILE) in str(info.value)


def test_a_header_whose_shape_lies_is_refused_before_loading(tmp_path):
    model, _ = _model_and_optimizer()
    folder = ck.write_checkpoint(tmp_path / "ckpt-00000001", model, _state(1))
    name, t = next((k, v) for k, v in model.state_dict().items() if v.dim() > 1)
    _edit_header(folder / ck.MODEL_FILE, lambda h: h[name].update(shape=[t.numel()]))  # same bytes, flattened
    with pytest.raises(ck.CheckpointError, match=rf"tensor {name} has shape \[{t.numel()}\], "
                       rf"the model expects \[{', '.join(map(str, t.shape))}\]"):
        ck.load_weights(ga.build_model("tiny", **MODEL), folder)


def test_checkpoint_files_are_readable_by_others(tmp_path):
    import stat

    umask = os.umask(0o022)
    try:
        model, opt = _model_and_optimizer()
        folder = ck.write_checkpoint(tmp_path / "ckpt-00000001", model, _state(1), opt)
    finally:
        os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == {ck.MODEL_FILE: 0o644, ck.OPTIM_FILE: 0o644, ck.STATE_FILE: 0o644}


def test_state_json_is_strict_json(tmp_path):
    import json as _json

    model, _ = _model_and_optimizer()
    state = dict(_state(1), best_score=-float("inf"), extra={"loss": float("nan")})
    folder = ck.write_checkpoint(tmp_path / "ckpt-00000001", model, state)
    text = (folder / ck.STATE_FILE).read_text()
    assert "NaN" not in text and "Infinity" not in text
    saved = _json.loads(text)
    assert "best_score" not in saved and saved["extra"] == {"loss": None}


def test_a_planted_checkpoint_link_is_replaced_and_its_target_untouched(tmp_path):
    victim = tmp_path / "outside"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "ckpt-00000001").symlink_to(victim)
    (ckpts / ".trash-x").symlink_to(victim)
    model, _ = _model_and_optimizer()
    folder = ck.write_checkpoint(ckpts / "ckpt-00000001", model, _state(1))
    assert not folder.is_symlink() and (folder / ck.STATE_FILE).is_file()
    ck.clean_partial(ckpts)
    assert sorted(p.name for p in ckpts.iterdir()) == ["ckpt-00000001"]
    assert [p.name for p in victim.iterdir()] == ["keep.txt"] and (victim / "keep.txt").read_text() == "precious"

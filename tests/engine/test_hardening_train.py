"""Run folders, locks, non-finite numbers, damaged checkpoints: nothing is lost or overwritten."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import gaze_attention as ga
from gaze_attention.cli import main as cli_main
from gaze_attention.data import PreparedData
from gaze_attention.engine import checkpoint as ck
from gaze_attention.engine import train
from gaze_attention.engine.config import TrainConfig
from gaze_attention.engine.runlock import LOCK_FILE, RunFolderError, claim_run_folder

SRC = str(Path(__file__).resolve().parents[2] / "src")
ENV = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _cli_train(prepared: Path, out: Path, *extra: str, overrides: dict) -> list[str]:
    sets = [f"--set={k}={v}" for k, v in overrides.items()]
    return ["train", "--data", str(prepared), "--out", str(out), "--preset", "tiny", "--batch-size", "2",
            "--workers", "0", "--precision", "fp32", "--no-progress", "--set", "run.tensorboard=false",
            "--set", "run.channels_last=false", *sets, *extra]  # fmt: skip


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- run folder


def test_fresh_train_into_an_existing_run_is_refused_and_changes_nothing(
    prepared, tmp_path, capsys, tiny_model_overrides
):
    run = tmp_path / "run"
    assert cli_main(_cli_train(prepared, run, "--iters", "2", overrides=tiny_model_overrides)) == 0
    before = _files(run)
    assert "checkpoints/ckpt-00000002/model.safetensors" in before and LOCK_FILE not in before
    capsys.readouterr()
    assert cli_main(_cli_train(prepared, run, "--iters", "3", overrides=tiny_model_overrides)) == 2
    err = capsys.readouterr().err
    assert f"--out {run} is not empty" in err and f"--resume {run}" in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _files(run) == before  # metrics, config and checkpoints untouched


def test_overwrite_replaces_the_earlier_run_and_keeps_other_files(prepared, tmp_path, tiny_config):
    run = tmp_path / "run"
    train(tiny_config(prepared, run, **{"optim.iters": 4, "run.checkpoint_every": 2}), progress=False)
    (run / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not empty"):
        train(tiny_config(prepared, run, **{"optim.iters": 2}), progress=False)
    result = train(tiny_config(prepared, run, **{"optim.iters": 2}), progress=False, overwrite=True)
    # The old ckpt-4 would have outranked the new ckpt-2 and made keep-last delete it.
    assert [i for i, _ in ck.list_checkpoints(run / "checkpoints")] == [2]
    assert result.last_checkpoint.is_dir() and ck.read_state(result.last_checkpoint)["iteration"] == 2
    assert (run / "notes.txt").read_text() == "mine"
    assert [r["iteration"] for r in result.history] == [1, 2]
    assert not (run / LOCK_FILE).exists()


# ----------------------------------------------------------------------------- lock


def _hold_lock(folder: Path) -> subprocess.Popen:
    code = (
        "import sys, time\n"
        "from gaze_attention.engine.runlock import claim_run_folder\n"
        f"lock = claim_run_folder({str(folder)!r}, resume=True)\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_names_the_holder_and_is_taken_over_after_it_dies(tmp_path):
    run = tmp_path / "run"
    holder = _hold_lock(run)
    try:
        with pytest.raises(RunFolderError, match=rf"in use by another training run \(pid {holder.pid} on "):
            claim_run_folder(run, resume=True, overwrite=True)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without releasing: its lock file is stale and is taken over.
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == holder.pid
    with pytest.warns(UserWarning, match=rf"no longer running \(pid {holder.pid} "):
        lock = claim_run_folder(run, resume=True)
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (run / LOCK_FILE).exists()
    again = claim_run_folder(run, resume=True)
    lock.release()  # a stale handle released twice leaves the new holder's lock alone
    assert (run / LOCK_FILE).exists()
    with pytest.raises(RunFolderError, match="in use"):
        claim_run_folder(run, resume=True)
    again.release()
    assert not (run / LOCK_FILE).exists()


def test_two_train_runs_into_one_folder(prepared, tmp_path, capsys, tiny_model_overrides):
    """The second run is refused with the first one's pid, even with --overwrite; the first
    run's files are its own."""
    run = tmp_path / "run"
    args = _cli_train(prepared, run, "--iters", "100000", overrides=tiny_model_overrides)
    first = subprocess.Popen(
        [sys.executable, "-m", "gaze_attention.cli", *args], env=ENV,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.csv").is_file() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert (run / "metrics.csv").is_file(), "the first run did not start"
        capsys.readouterr()
        second = _cli_train(prepared, run, "--iters", "2", "--overwrite", overrides=tiny_model_overrides)
        assert cli_main(second) == 2
        err = capsys.readouterr().err
        assert f"in use by another training run (pid {first.pid} on " in err
        assert (run / "config.yaml").read_text().count("iters: 100000") == 1
    finally:
        first.send_signal(signal.SIGTERM)  # saves a checkpoint and exits
        _, stderr = first.communicate(timeout=120)
    assert first.returncode == 143, stderr
    last = ck.resolve_checkpoint(run, prefer="last")
    assert ck.read_state(last)["config"]["optim"]["iters"] == 100000
    assert not (run / LOCK_FILE).exists()


# ----------------------------------------------------------------------------- non-finite numbers


@pytest.mark.parametrize("flag", [["--lr", "nan"], ["--lr", "inf"], ["--set", "estimator.tau=.nan"],
                                  ["--set", "optim.momentum=-.inf"]])  # fmt: skip
def test_non_finite_hyper_parameters_are_refused(prepared, tmp_path, capsys, flag, tiny_model_overrides):
    run = tmp_path / "run"
    assert cli_main(_cli_train(prepared, run, "--iters", "2", *flag, overrides=tiny_model_overrides)) == 2
    err = capsys.readouterr().err
    assert "must be a finite number" in err and "Traceback" not in err
    assert not run.exists()


def test_non_finite_weights_are_neither_saved_nor_loaded(prepared, tmp_path, capsys):
    data = PreparedData(prepared)
    model = ga.build_model("tiny", num_classes=data.num_classes, width=0.125, frames=8, crop=64)
    with torch.no_grad():
        model.head.fc.weight[0, 0] = float("nan")
    with pytest.raises(ck.NonFiniteWeightsError, match=r"head\.fc\.weight \(1 of \d+ values non-finite\)"):
        ck.write_checkpoint(tmp_path / "ckpt-00000001", model, {"iteration": 1})
    assert not (tmp_path / "ckpt-00000001").exists()

    # A checkpoint damaged on disk: written finite, then a tensor set to inf.
    with torch.no_grad():
        model.head.fc.weight[0, 0] = 0.0
    run = tmp_path / "run"
    state = {"iteration": 1, "config": TrainConfig().to_dict(), "model_config": model.config.to_dict(),
             "class_names": data.classes}  # fmt: skip
    folder = ck.write_checkpoint(run / "checkpoints" / "ckpt-00000001", model, state)
    tensors = load_file(str(folder / ck.MODEL_FILE))
    name = sorted(k for k, v in tensors.items() if v.is_floating_point())[3]
    tensors[name][...] = float("inf")
    save_file(tensors, str(folder / ck.MODEL_FILE), metadata={"format": ck.FORMAT})
    with pytest.raises(ck.NonFiniteWeightsError, match=rf"refusing to use .*{name}"):
        ck.load_model(run)
    args = ["evaluate", "--data", str(prepared), "--checkpoint", str(run), "--workers", "0", "--no-progress"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "not finite" in err and name in err and "Traceback" not in err


# ----------------------------------------------------------------------------- damaged checkpoints


def test_resume_falls_back_to_the_newest_intact_checkpoint(prepared, tmp_path, capsys, tiny_model_overrides):
    run = tmp_path / "run"
    args = _cli_train(prepared, run, "--iters", "4", overrides=dict(tiny_model_overrides, **{
        "run.checkpoint_every": 2}))  # fmt: skip
    assert cli_main(args) == 0
    newest = run / "checkpoints" / "ckpt-00000004"
    weights = newest / ck.MODEL_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short
    older = run / "checkpoints" / "ckpt-00000002"
    assert "truncated" in ck.checkpoint_problem(newest) and ck.checkpoint_problem(older) is None
    # Named directly, the damaged one is refused with the intact one to use instead.
    with pytest.raises(
        ck.CheckpointError, match=rf"cannot resume from {newest}: .*resume from {older} instead"
    ):
        ck.resolve_resume(newest)
    capsys.readouterr()
    assert cli_main(["train", "--resume", str(run), "--iters", "6", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"warning: the newest checkpoint {newest} is damaged" in err and f"resuming from {older}" in err
    assert ck.read_state(ck.resolve_checkpoint(run, prefer="last"))["iteration"] == 6


def test_bad_checkpoint_files_are_messages_not_tracebacks(prepared, tmp_path, capsys, tiny_model_overrides):
    run = tmp_path / "run"
    assert cli_main(_cli_train(prepared, run, "--iters", "1", overrides=tiny_model_overrides)) == 0
    folder = ck.resolve_checkpoint(run, prefer="last")
    base = ["evaluate", "--data", str(prepared), "--workers", "0", "--no-progress", "--checkpoint"]

    # A weight of the wrong size.
    tensors = load_file(str(folder / ck.MODEL_FILE))
    good = dict(tensors)
    tensors["head.fc.weight"] = torch.zeros(7, 7)
    save_file(tensors, str(folder / ck.MODEL_FILE), metadata={"format": ck.FORMAT})
    capsys.readouterr()
    assert cli_main([*base, str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{folder / ck.MODEL_FILE} does not fit the model" in err and "head.fc.weight" in err
    assert "Traceback" not in err
    save_file(good, str(folder / ck.MODEL_FILE), metadata={"format": ck.FORMAT})

    # state.json that is not UTF-8.
    state = folder / ck.STATE_FILE
    state.write_bytes(b"\xff\xfe" + state.read_bytes())
    assert cli_main([*base, str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {state}" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- outputs


def test_evaluate_keeps_the_metrics_when_the_confusion_png_cannot_be_written(
    prepared, tmp_path, capsys, tiny_model_overrides
):
    run = tmp_path / "run"
    assert cli_main(_cli_train(prepared, run, "--iters", "1", overrides=tiny_model_overrides)) == 0
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the PNG's folder should be")
    out_json = tmp_path / "eval.json"
    capsys.readouterr()
    args = ["evaluate", "--data", str(prepared), "--checkpoint", str(run), "--workers", "0", "--no-progress",
            "--json", str(out_json), "--confusion", str(blocker / "confusion.png")]  # fmt: skip
    assert cli_main(args) == 0
    m = json.loads(out_json.read_text())
    assert m["num_clips"] == len(PreparedData(prepared).split(1, "test"))
    err = capsys.readouterr().err
    assert f"warning: confusion matrix not written: {blocker}" in err


def test_a_file_size_limit_during_a_checkpoint_write_is_a_message(prepared, tmp_path, tiny_model_overrides):
    run = tmp_path / "run"
    args = _cli_train(prepared, run, "--iters", "1", overrides=tiny_model_overrides)
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, resource.RLIM_INFINITY))\n"
        "from gaze_attention.cli import main\n"
        f"sys.exit(main({args!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "model.safetensors: the file is larger than allowed (a file-size limit" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert ck.list_checkpoints(run / "checkpoints") == []  # no half-written checkpoint is visible


@pytest.mark.parametrize("use_flock", [True, False])
def test_a_lock_file_planted_as_a_link_is_refused_and_its_target_untouched(tmp_path, monkeypatch, use_flock):
    from gaze_attention import runlock  # the lock itself (engine.runlock re-exports it)

    if not use_flock:
        monkeypatch.setattr(runlock, "fcntl", None)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).symlink_to(victim)
    with pytest.raises(RunFolderError) as info:
        claim_run_folder(run, resume=False, overwrite=True)
    assert f"{run / LOCK_FILE}: the lock file is a symbolic link (to {victim})" in str(info.value)
    assert victim.read_text() == "precious\n" and (run / LOCK_FILE).is_symlink()

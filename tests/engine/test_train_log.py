"""RUN_DIR/train.log: what a run printed, kept beside metrics.csv and appended on resume."""

from __future__ import annotations

import importlib
import re
import warnings

from gaze_attention.engine.train import train

train_mod = importlib.import_module("gaze_attention.engine.train")  # the module, not engine.train()


def _lines(run) -> list[str]:
    text = (run / "train.log").read_text(encoding="utf-8")
    lines = text.splitlines()
    # every line starts with a timestamp, so that a log of several sessions can be read in order
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in lines), text
    return [line[20:] for line in lines]


def test_train_log_rows_validation_warnings_final_checkpoint_and_resume(
    prepared, tmp_path, monkeypatch, tiny_config
):
    real = train_mod.training_losses
    calls = []

    def warning_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            warnings.warn("a warning raised during training", UserWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "training_losses", warning_once)
    run = tmp_path / "run"
    over = {"optim.iters": 4, "run.log_every": 2, "run.val_every": 2, "data.val_max_clips": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        first = train(tiny_config(prepared, run, **over), progress=False)
    lines = _lines(run)
    assert lines[0].startswith("4 iterations of tiny") and "estimator direct" in lines[0]
    assert f"config {run / 'config.yaml'}" in lines[0]
    rows = [line for line in lines if line.startswith("iteration ")]
    assert [line.split(":")[0] for line in rows] == ["iteration 2", "iteration 4"]
    csv_loss = [f"{r['loss']:.4f}" for r in first.history]
    assert [line.split()[3] for line in rows] == csv_loss  # the same numbers as metrics.csv
    assert sum(line.startswith("validation @ 2: mean_class_accuracy") for line in lines) == 1
    assert any("warning: UserWarning: a warning raised during training" in line for line in lines)
    assert lines[-1] == (
        f"done: 4 iterations; last checkpoint {first.last_checkpoint}; best checkpoint {first.best_checkpoint}"
    )

    resumed = train(
        tiny_config(prepared, run, **dict(over, **{"optim.iters": 6, "run.resume": str(run)})), progress=False
    )
    again = _lines(run)
    assert again[: len(lines)] == lines  # appended, not rewritten
    new = again[len(lines) :]
    assert new[0].startswith(f"resumed from {first.last_checkpoint} at iteration 4; 6 iterations")
    assert [line.split(":")[0] for line in new if line.startswith("iteration ")] == ["iteration 6"]
    assert new[-1].startswith(f"done: 6 iterations; last checkpoint {resumed.last_checkpoint}")

    # A fresh run into the same folder (--overwrite: it holds a run) starts a fresh log.
    train(tiny_config(prepared, run, **dict(over, **{"optim.iters": 2})), progress=False, overwrite=True)
    assert _lines(run)[0].startswith("2 iterations of tiny")

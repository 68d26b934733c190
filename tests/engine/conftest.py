"""Fixtures for the engine tests: tiny synthetic prepared data and a tiny training config."""

from __future__ import annotations

from pathlib import Path

import pytest

from gaze_attention.data.prepare import prepare
from gaze_attention.data.synthetic import make_synthetic_raw
from gaze_attention.engine.config import TrainConfig, load_config

# A network small enough for CPU tests: 8 frames at 64x64 gives a (T', S) = (1, 2) grid.
TINY_MODEL = {"model.width": 0.125, "model.frames": 8, "model.crop": 64, "model.dropout": 0.0}


@pytest.fixture(scope="session")
def raw(tmp_path_factory) -> Path:
    """3 classes x (4 train + 2 test) synthetic clips in the raw EGTEA layout."""
    root = tmp_path_factory.mktemp("engine_raw")
    make_synthetic_raw(
        root, num_classes=3, train_per_class=4, test_per_class=2, size=(96, 72), frames=(16, 30),
        sessions=2, seed=1,
    )  # fmt: skip
    return root


@pytest.fixture(scope="session")
def prepared(raw, tmp_path_factory) -> Path:
    """`raw` prepared at 96x72 with DIS flow (read-only for tests)."""
    out = tmp_path_factory.mktemp("engine_prepared")
    result = prepare(raw, out, flow="dis", size=(96, 72), workers=1, progress=False)
    assert result.ok, result.summary()
    return out


def _tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    """The `tiny` preset shrunk for tests: fp32, one process, no workers, no TensorBoard."""
    base = {
        "data.root": str(data),
        "run.out": str(out),
        "data.workers": 0,
        "optim.batch_size": 4,
        "optim.iters": 6,
        "optim.milestones": [1000],
        "optim.optimizer": "sgd",  # the tests' expectations (lr 0.01, loss falls in 30 steps) are SGD's
        "optim.lr": 0.01,
        "optim.warmup": 0,
        # A fixed eps rate, not one relative to optim.iters: tests compare runs of different
        # lengths (a 3-iteration run resumed to 6 against a 6-iteration run), which must share
        # their schedules, as the explicit milestones above make them share the lr's.
        "estimator.eps_end": None,
        "run.precision": "fp32",
        "run.channels_last": False,
        "run.tensorboard": False,
        "run.log_every": 1,
        "run.checkpoint_every": 1000,
        **TINY_MODEL,
    }
    base.update(overrides)
    return load_config("tiny", base)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: tiny convolutions only lose from threading, more so on a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_config():
    """Factory: tiny_config(data, out, **{"section.key": value}) -> TrainConfig."""
    return _tiny_config


@pytest.fixture
def tiny_model_overrides() -> dict:
    return dict(TINY_MODEL)

"""Shared test fixtures: the `../shared` reference folder beside the repository."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# Per-machine measurements (the precision probe) go to a folder of the test run, not the user's
# cache; removed when the run ends (the commands the tests start inherit it, so not before).
if "GAZE_ATTENTION_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="gaze-attention-cache-")
    os.environ["GAZE_ATTENTION_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` (reference weights, golden vectors, EGTEA lists); skip where absent."""
    if not (SHARED / "reference").is_dir():
        pytest.skip(
            f"reference fixtures not found at {SHARED} (../shared beside the repository); "
            "they ship with the project's CI, not with a fresh clone"
        )
    return SHARED

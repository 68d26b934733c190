"""Fixtures for the data tests: a tiny synthetic raw set and its prepared form."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from gaze_attention.data.prepare import prepare
from gaze_attention.data.synthetic import make_synthetic_raw

TINY = dict(
    num_classes=3,
    train_per_class=2,
    test_per_class=1,
    size=(64, 48),
    frames=(12, 30),  # some clips shorter than 24 frames: they must be extended
    sessions=2,
    seed=3,
)
TINY_SIZE = (64, 48)


def make_tiny_raw(path: Path, session_videos: bool = True):
    return make_synthetic_raw(path, session_videos=session_videos, **TINY)


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory) -> Path:
    """9 clips of 3 classes, 2 sessions (7- and 26-column BeGaze), with session videos."""
    root = tmp_path_factory.mktemp("tiny_raw")
    make_tiny_raw(root)
    return root


@pytest.fixture(scope="session")
def tiny_prepared(tiny_raw, tmp_path_factory) -> Path:
    """`tiny_raw` prepared with DIS flow at 64x48 (read-only for tests: copy before changing)."""
    out = tmp_path_factory.mktemp("tiny_prepared")
    result = prepare(tiny_raw, out, flow="dis", size=TINY_SIZE, workers=1, progress=False)
    assert result.ok, result.summary()
    return out


def write_prepared(
    root: Path,
    clips: dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]],
    labels: dict[str, int] | None = None,
    manifest: bool = False,
) -> Path:
    """clips: name -> (rgb uint8 [L, H, W, 3], flow uint8 [L, H, W, 2] or None, gaze [L, 3] or None).

    Writes the reference layout (0001.jpg...), gaze/<clip>.npy and train/test split-1 lists with
    every clip in both. No manifest unless asked: frame counts then come from the folders.
    """
    labels = labels or {}
    lines = []
    for name, (rgb, flow, gaze) in clips.items():
        d = root / "images_rgb" / name
        d.mkdir(parents=True)
        for i, f in enumerate(rgb):
            cv2.imwrite(str(d / f"{i + 1:04d}.jpg"), f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
        if flow is not None:
            for c, ch in (("u", 0), ("v", 1)):
                fd = root / "images_flow" / name / c
                fd.mkdir(parents=True)
                for i, f in enumerate(flow):
                    cv2.imwrite(str(fd / f"{i + 1:04d}.jpg"), f[..., ch], [cv2.IMWRITE_JPEG_QUALITY, 100])
        if gaze is not None:
            (root / "gaze").mkdir(exist_ok=True)
            np.save(root / "gaze" / f"{name}.npy", gaze.astype(np.float32))
        lines.append(f"{name} {labels.get(name, 0) + 1} 1 1\n")
        if manifest:
            with open(root / "manifest.jsonl", "a") as fh:
                fh.write(json.dumps({"clip": name, "num_frames": len(rgb)}) + "\n")
    (root / "train_split1.txt").write_text("".join(lines))
    (root / "test_split1.txt").write_text("".join(lines))
    return root


@pytest.fixture(name="write_prepared")
def write_prepared_fixture():
    """The `write_prepared` helper, for tests that build prepared folders pixel by pixel."""
    return write_prepared


@pytest.fixture(name="make_tiny_raw")
def make_tiny_raw_fixture():
    """`make_tiny_raw(path, session_videos=True)`: a fresh tiny raw set to damage in a test."""
    return make_tiny_raw

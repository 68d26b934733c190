"""Fixtures of the visualisation tests: a tiny model, a small video, a prepared clip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

FRAMES, CROP = 16, 64  # tiny model input: grid (T', S) = (2, 2)
CLASSES = ["cut tomato", "open fridge", "take bowl"]


def moving_square_frames(t: int, h: int, w: int) -> np.ndarray:
    """uint8 [t, h, w, 3]: a bright square moving right over a grey gradient."""
    frames = np.empty((t, h, w, 3), np.uint8)
    frames[...] = np.linspace(30, 120, w, dtype=np.uint8)[None, None, :, None]
    for i in range(t):
        x = 4 + i * (w - 24) // max(t - 1, 1)
        frames[i, h // 3:h // 3 + 16, x:x + 16] = (240, 200, 40)
    return frames


@pytest.fixture(scope="session")
def tiny_model():
    import gaze_attention as ga

    model = ga.build_model("tiny", num_classes=len(CLASSES), width=0.125, frames=FRAMES,
                           crop=CROP)
    return model.eval()


@pytest.fixture(scope="session")
def small_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gaze_attention.viz.writers import write_mp4

    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    return write_mp4(path, moving_square_frames(20, 90, 120), fps=12)


@pytest.fixture(scope="session")
def prepared_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PREPARED/images_rgb/<clip> of 20 frames of 96x80, flow, gaze and split lists."""
    root = tmp_path_factory.mktemp("prepared")
    clip = "P01-R01-Test-1000-2000-F000024-F000044"
    frames = moving_square_frames(20, 80, 96)
    rgb_dir = root / "images_rgb" / clip
    rgb_dir.mkdir(parents=True)
    for c in ("u", "v"):
        (root / "images_flow" / clip / c).mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(rgb_dir / f"{i + 1:04d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        if i < len(frames) - 1:  # dense_flow writes one flow frame fewer
            for c in ("u", "v"):
                cv2.imwrite(str(root / "images_flow" / clip / c / f"{i + 1:04d}.jpg"),
                            np.full((80, 96), 128 + i, np.uint8))
    gaze = np.full((20, 3), np.nan, np.float32)
    gaze[:, 2] = 0
    gaze[:10] = (0.25, 0.3, 1)  # fixation -> crop pixel (8, 16)
    gaze[10:15] = (0.5, 0.5, 2)  # saccade: not a fixation, not drawn
    gaze[15:] = (0.5, 0.5, 1)  # fixation -> crop pixel (32, 32)
    (root / "gaze").mkdir()
    np.save(root / "gaze" / f"{clip}.npy", gaze)
    ann = root / "annotations"
    ann.mkdir()
    (ann / "action_idx.txt").write_text(
        "".join(f"{name} {i + 1}\n" for i, name in enumerate(CLASSES)))
    (ann / "train_split1.txt").write_text("P01-R01-Other-1-2-F000001-F000024 1 1 1\n")
    (ann / "test_split1.txt").write_text(f"{clip} 3 1 1\n")
    return rgb_dir

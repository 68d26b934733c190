"""Metrics against hand computation, gaze hits, evaluation windows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gaze_attention.engine.evaluate import window_starts
from gaze_attention.engine.metrics import (
    classification_metrics,
    confusion_matrix,
    gaze_cells,
    gaze_hits,
    metrics_from_confusion,
    save_confusion_png,
)


def test_metrics_match_hand_computation_with_an_absent_class():
    # 4 classes; class 3 has no test clip (but is predicted once).
    #   class 0: 3 clips, 2 right; class 1: 2 clips, 1 right; class 2: 1 clip, 1 right.
    labels = [0, 0, 0, 1, 1, 2]
    preds = [0, 0, 1, 1, 3, 2]
    verb_of = [0, 0, 1, 1]  # classes 0 and 1 share a verb, 2 and 3 share a verb
    noun_of = [0, 1, 1, 0]
    m = classification_metrics(labels, preds, 4, ["a", "b", "c", "d"], verb_of, noun_of)
    cm = np.array([[2, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]])
    assert (confusion_matrix(labels, preds, 4) == cm).all()
    recall = [2 / 3, 1 / 2, 1.0]
    assert m["per_class_recall"] == pytest.approx({"a": recall[0], "b": recall[1], "c": recall[2], "d": None})
    # Headline: mean over the 3 classes present; the reference's convention divides by all 4.
    assert m["mean_class_accuracy"] == pytest.approx(sum(recall) / 3)
    assert m["mean_class_accuracy_all"] == pytest.approx(sum(recall) / 4)
    assert m["overall_accuracy"] == pytest.approx(4 / 6)
    assert m["classes_in_test"] == 3 and m["num_clips"] == 6
    # Verb: preds 0->1 share verb 0 (right); 1->3: verbs 0 vs 1 (wrong). 5 of 6.
    assert m["verb_accuracy"] == pytest.approx(5 / 6)
    # Noun: 0->1: nouns 0 vs 1 (wrong); 1->3: nouns 1 vs 0 (wrong). 4 of 6.
    assert m["noun_accuracy"] == pytest.approx(4 / 6)


def test_unknown_verb_mapping_is_left_out_and_empty_matrix_is_nan():
    m = metrics_from_confusion(np.zeros((2, 2), dtype=int), verb_of=[0, -1])
    assert "verb_accuracy" not in m
    assert math.isnan(m["mean_class_accuracy"]) and math.isnan(m["overall_accuracy"])


def test_gaze_hits_chebyshev():
    side = 4
    logits = torch.full((1, 3, side, side), -5.0)
    logits[0, 0, 1, 1] = 5  # predicted (1, 1)
    logits[0, 1, 0, 0] = 5  # predicted (0, 0)
    logits[0, 2, 3, 3] = 5  # predicted (3, 3)
    fix = torch.tensor([[[1, 1], [1, 1], [-1, -1]]])  # exact; one cell off diagonally; none
    assert gaze_hits(logits, fix) == (2, 1, 2)
    fix = torch.tensor([[[3, 3], [2, 0], [0, 0]]])  # two off; two off; three off
    assert gaze_hits(logits, fix) == (3, 0, 0)


def test_gaze_cells():
    pts = torch.tensor([[0.0, 0.0], [0.99, 0.5], [float("nan"), 0.2], [1.0, 1.0]])
    assert gaze_cells(pts, 4).tolist() == [[0, 0], [2, 3], [-1, -1], [3, 3]]


@pytest.mark.parametrize(
    "length, sparse, expected",
    [
        (24, False, [0]),
        (10, False, [0]),  # shorter than a window: one (edge-padded) window
        (50, False, [0, 24]),  # the incomplete tail is dropped
        (24 * 12, False, [24 * i for i in range(12)]),
        (24 * 12, True, [24 * i for i in (0, 1, 2, 4, 5, 6, 7, 9, 10, 11)]),
        (24 * 5, True, [24 * i for i in range(5)]),
    ],
)
def test_window_starts(length, sparse, expected):
    assert window_starts(length, 24, sparse) == expected


def test_confusion_png(tmp_path):
    import matplotlib
    from PIL import Image

    path = tmp_path / "cm.png"
    save_confusion_png(np.array([[3, 1], [0, 2]]), path, ["x", "y"], title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        img = np.asarray(im.convert("RGB")).astype(int)
    viridis = matplotlib.colormaps["viridis"]

    def mask(share: float) -> np.ndarray:
        rgb = np.round(np.array(viridis(share)[:3]) * 255)
        return np.abs(img - rgb).max(-1) <= 2

    def area(share: float) -> int:
        return int(mask(share).sum())

    def centre(share: float) -> np.ndarray:
        return np.argwhere(mask(share)).mean(0)  # (row, column) in pixels

    # Row-normalised: the four cells are solid squares of 3/4, 1/4, 0 and 2/2 of their row.
    cells = {share: area(share) for share in (0.75, 0.25, 0.0, 1.0)}
    assert min(cells.values()) > 2000, cells
    assert max(cells.values()) < 1.5 * min(cells.values()), cells
    assert area(0.5) < 200  # no cell holds a half (only a strip of the colour bar does)
    # rows are true classes, columns predictions: 3/4 top left, 1/4 top right, 0 bottom left
    (r75, c75), (r25, c25), (r0, c0) = centre(0.75), centre(0.25), centre(0.0)
    assert abs(r75 - r25) < 10 and c25 - c75 > 50 and r0 - r75 > 50 and abs(c0 - c75) < 10

"""Recognition metrics from a confusion matrix, gaze-prediction quality, confusion-matrix plots.

Convention for classes absent from the test split: the headline `mean_class_accuracy`
averages the recall of the classes that have at least one test clip (the usual definition,
sklearn's balanced accuracy). `mean_class_accuracy_all` divides by every class, counting an
absent class as 0, as the reference implementation does; both are reported.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gaze_attention.fsio import atomic_path


def confusion_matrix(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> np.ndarray:
    """[C, C] counts, rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)), 1)
    return cm


def _mapped_accuracy(cm: np.ndarray, mapping: Sequence[int] | None) -> float | None:
    """Accuracy after mapping true and predicted actions through `mapping` (action -> verb/noun)."""
    if mapping is None or len(mapping) != cm.shape[0] or min(mapping, default=0) < 0:
        return None
    m = np.asarray(mapping)
    same = m[:, None] == m[None, :]  # [C, C]: prediction and truth share the verb (noun)
    total = cm.sum()
    return float((cm * same).sum() / total) if total else float("nan")


def metrics_from_confusion(
    cm: np.ndarray,
    class_names: Sequence[str] | None = None,
    verb_of: Sequence[int] | None = None,
    noun_of: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Mean class accuracy (both conventions), overall accuracy, per-class recall, verb/noun accuracy."""
    cm = np.asarray(cm, dtype=np.int64)
    c = cm.shape[0]
    support = cm.sum(1)  # [C] test clips per class
    correct = np.diag(cm)
    present = support > 0
    recall = np.where(present, correct / np.maximum(support, 1), np.nan)  # [C]
    total = int(support.sum())
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    out: dict[str, Any] = {
        "mean_class_accuracy": float(recall[present].mean()) if present.any() else float("nan"),
        "mean_class_accuracy_all": float(np.nan_to_num(recall).sum() / c) if c else float("nan"),
        "overall_accuracy": float(correct.sum() / total) if total else float("nan"),
        "num_clips": total,
        "num_classes": c,
        "classes_in_test": int(present.sum()),
        "per_class_recall": {names[i]: (None if not present[i] else float(recall[i])) for i in range(c)},
        "per_class_support": {names[i]: int(support[i]) for i in range(c)},
    }
    verb = _mapped_accuracy(cm, verb_of)
    noun = _mapped_accuracy(cm, noun_of)
    if verb is not None:
        out["verb_accuracy"] = verb
    if noun is not None:
        out["noun_accuracy"] = noun
    return out


def classification_metrics(
    labels: Sequence[int],
    preds: Sequence[int],
    num_classes: int,
    class_names: Sequence[str] | None = None,
    verb_of: Sequence[int] | None = None,
    noun_of: Sequence[int] | None = None,
) -> dict[str, Any]:
    """`metrics_from_confusion` of the clips' labels and predictions."""
    return metrics_from_confusion(confusion_matrix(labels, preds, num_classes), class_names, verb_of, noun_of)


def gaze_cells(points: torch.Tensor, side: int) -> torch.Tensor:
    """Normalised x, y points [..., 2] (nan = none) -> grid cells [..., 2] as (row, col), -1 if none."""
    ok = torch.isfinite(points).all(-1)
    p = torch.nan_to_num(points, nan=0.0).clamp(0.0, 1.0)
    row = (p[..., 1] * side).long().clamp_(max=side - 1)
    col = (p[..., 0] * side).long().clamp_(max=side - 1)
    cells = torch.stack([row, col], -1)
    cells[~ok] = -1
    return cells


def gaze_hits(gaze_logits: torch.Tensor, fixation_cells: torch.Tensor) -> tuple[int, int, int]:
    """(slices with a fixation, predicted cell == fixation cell, within one cell (Chebyshev)).

    gaze_logits [B, T', S, S]; fixation_cells [B, T', 2] (row, col; -1 where no fixation).
    The predicted cell is the argmax of the gaze logits.
    """
    side = gaze_logits.shape[-1]
    idx = gaze_logits.flatten(2).argmax(-1)  # [B, T']
    pred = torch.stack([idx // side, idx % side], -1)  # [B, T', 2]
    valid = (fixation_cells >= 0).all(-1)
    dist = (pred - fixation_cells).abs().amax(-1)  # Chebyshev distance in cells
    return int(valid.sum()), int((valid & (dist == 0)).sum()), int((valid & (dist <= 1)).sum())


def save_confusion_png(
    cm: np.ndarray, path: str | os.PathLike, class_names: Sequence[str] | None = None, title: str = ""
) -> None:
    """Row-normalised confusion matrix as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.float64)
    c = cm.shape[0]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = min(30.0, max(4.0, 0.18 * c + 2))
    fig, ax = plt.subplots(figsize=(size + 1.5, size), dpi=100)
    im = ax.imshow(norm, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if class_names is not None and c <= 120:
        fs = max(3.0, min(9.0, 400.0 / max(c, 1)))
        ax.set_xticks(range(c), list(class_names), rotation=90, fontsize=fs)
        ax.set_yticks(range(c), list(class_names), fontsize=fs)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:  # never through a link at PATH; no half-written PNG
            fig.savefig(os.fspath(tmp), format="png")
    finally:
        plt.close(fig)


def format_summary(m: dict[str, Any]) -> str:
    """A few human-readable lines of an evaluation result."""

    def pct(v: Any) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}%"

    lines = [
        f"clips: {m.get('num_clips')}  windows: {m.get('num_windows')}  "
        f"classes in test: {m.get('classes_in_test')}/{m.get('num_classes')}",
        f"mean class accuracy: {pct(m.get('mean_class_accuracy'))} (classes in the test split)  "
        f"{pct(m.get('mean_class_accuracy_all'))} (absent classes as 0, the reference's convention)",
        f"overall accuracy:    {pct(m.get('overall_accuracy'))}",
    ]
    if "verb_accuracy" in m or "noun_accuracy" in m:
        lines.append(
            f"verb accuracy: {pct(m.get('verb_accuracy'))}  noun accuracy: {pct(m.get('noun_accuracy'))}"
        )
    if m.get("gaze_slices"):
        lines.append(
            f"gaze: predicted cell within one cell of the fixation in {pct(m.get('gaze_within_one_cell'))} "
            f"of {m['gaze_slices']} slices (exact cell {pct(m.get('gaze_exact_cell'))})"
        )
    return "\n".join(lines)

"""Late fusion of saved evaluation scores (RGB-only and flow models, several seeds, ...).

`evaluate --json FILE` stores every clip's window-averaged logits (`clips[i].logits`). Fusing
models is then averaging those scores per clip, as two-stream papers do on EGTEA, without
running any network again:

    from gaze_attention.engine.fusion import fuse
    fused = fuse(["rgb.json", "flow.json"])            # softmax probabilities averaged
    print(fused["mean_class_accuracy"], fused["overall_accuracy"])
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gaze_attention.engine.metrics import confusion_matrix, metrics_from_confusion

SPACES = ("softmax", "logits")


@dataclass
class ClipScoreTable:
    """Per-clip scores of one evaluation: names [N], labels [N], logits [N, C], class names [C]."""

    names: list[str]
    labels: np.ndarray
    logits: np.ndarray
    classes: list[str]
    source: str = ""


def load_scores(path: str | os.PathLike) -> ClipScoreTable:
    """The per-clip scores of an `evaluate --json` file."""
    with open(path, encoding="utf-8") as fh:
        m = json.load(fh)
    clips = m.get("clips") or []
    if not clips or "logits" not in clips[0]:
        raise ValueError(f"{path}: no per-clip logits (written by `evaluate --json` of this version)")
    classes = list(m.get("per_class_recall") or [str(i) for i in range(len(clips[0]["logits"]))])
    return ClipScoreTable(
        names=[c["name"] for c in clips],
        labels=np.asarray([c["label"] for c in clips], np.int64),
        logits=np.asarray([c["logits"] for c in clips], np.float64),  # [N, C]
        classes=classes,
        source=os.fspath(path),
    )


def _scores(table: ClipScoreTable, space: str) -> np.ndarray:
    if space == "logits":
        return table.logits
    z = table.logits - table.logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)  # [N, C]


def fuse(
    sources: Sequence[str | os.PathLike | ClipScoreTable],
    weights: Sequence[float] | None = None,
    space: str = "softmax",
) -> dict[str, Any]:
    """Average the clip scores of several evaluations (same clips, same classes) and score them.

    space: "softmax" averages class probabilities (the usual late fusion), "logits" the raw
    window-averaged logits. weights: one per source (default equal). Returns the metrics of
    `evaluate` (mean class accuracy, overall, per class) plus `clips` with the fused prediction.
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
    tables = [s if isinstance(s, ClipScoreTable) else load_scores(s) for s in sources]
    if not tables:
        raise ValueError("nothing to fuse")
    w = np.ones(len(tables)) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (len(tables),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(tables)} non-negative numbers, not all 0; got {weights}")
    first = tables[0]
    index = {n: i for i, n in enumerate(first.names)}
    fused = np.zeros_like(first.logits)
    for t, weight in zip(tables, w, strict=True):
        if t.classes != first.classes:
            raise ValueError(f"{t.source} has other classes than {first.source}")
        if sorted(t.names) != sorted(first.names):
            raise ValueError(f"{t.source} and {first.source} evaluated different clips")
        order = np.asarray([index[n] for n in t.names])
        if (t.labels != first.labels[order]).any():
            raise ValueError(f"{t.source} and {first.source} disagree on clip labels")
        fused[order] += weight * _scores(t, space)
    fused /= w.sum()
    preds = fused.argmax(1)
    cm = confusion_matrix(first.labels.tolist(), preds.tolist(), len(first.classes))
    out = metrics_from_confusion(cm, first.classes)
    out["fusion"] = {"sources": [t.source for t in tables], "weights": w.tolist(), "space": space}
    out["clips"] = [
        {"name": n, "label": int(first.labels[i]), "pred": int(preds[i]), "scores": fused[i].tolist()}
        for i, n in enumerate(first.names)
    ]
    return out


__all__ = ["SPACES", "ClipScoreTable", "fuse", "load_scores"]

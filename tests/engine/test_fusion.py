"""Per-clip scores in the evaluation JSON and the late-fusion example of docs/evaluation.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import gaze_attention as ga
from gaze_attention.cli import main as cli_main
from gaze_attention.data import PreparedData
from gaze_attention.engine.fusion import fuse, load_scores

DOC = Path(__file__).resolve().parents[2] / "docs" / "evaluation.md"


def _model(num_classes: int, seed: int, use_flow: bool):
    torch.manual_seed(seed)
    model = ga.build_model("tiny", num_classes=num_classes, width=0.125, frames=8, crop=64, use_flow=use_flow)
    with torch.no_grad():  # He init: clips get distinct logits (see test_inference.py)
        for m in model.modules():
            if isinstance(m, torch.nn.Conv3d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return model.eval()


@pytest.fixture(scope="module")
def evaluations(prepared, tmp_path_factory):
    """`evaluate --json` of an RGB-only and a two-stream model (the authors' file format)."""
    data = PreparedData(prepared)
    out = tmp_path_factory.mktemp("fusion")
    paths = {}
    for name, seed, flow in (("rgb", 1, False), ("flow", 2, True)):
        (out / name).mkdir()
        ga.save_reference_checkpoint(_model(data.num_classes, seed, flow), out / name / "i3d_iga_best1")
        paths[name] = out / name / "eval.json"
        args = ["evaluate", "--data", str(prepared), "--reference-prefix", str(out / name / "i3d_iga_best1"),
                "--preset", "tiny", "--model-set", "width=0.125", "--model-set", "frames=8",
                "--model-set", "crop=64", "--model-set", f"use_flow={str(flow).lower()}",
                "--gaze-mode", "argmax", "--workers", "0", "--no-progress", "--json", str(paths[name])]  # fmt: skip
        assert cli_main(args) == 0
    return paths


def test_evaluation_json_has_per_clip_scores(evaluations, prepared):
    m = json.loads(evaluations["rgb"].read_text())
    recs = PreparedData(prepared).split(1, "test")
    assert [c["name"] for c in m["clips"]] == [r.name for r in recs]
    for c, r in zip(m["clips"], recs, strict=True):
        assert c["label"] == r.label and len(c["logits"]) == m["num_classes"]
        assert c["pred"] == int(np.argmax(c["logits"]))
    table = load_scores(evaluations["rgb"])
    assert table.logits.shape == (len(recs), m["num_classes"]) and table.classes == list(m["per_class_recall"])


def test_fusion_averages_probabilities(evaluations):
    a, b = load_scores(evaluations["rgb"]), load_scores(evaluations["flow"])

    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    fused = fuse([evaluations["rgb"], evaluations["flow"]])
    expected = (softmax(a.logits) + softmax(b.logits)) / 2
    np.testing.assert_allclose([c["scores"] for c in fused["clips"]], expected, rtol=1e-12)
    assert [c["pred"] for c in fused["clips"]] == expected.argmax(1).tolist()
    labels, preds = a.labels, expected.argmax(1)
    assert fused["overall_accuracy"] == pytest.approx(float((labels == preds).mean()))
    # Weight 0 on the flow model leaves the RGB model's own predictions and accuracy.
    alone = fuse([evaluations["rgb"], evaluations["flow"]], weights=[1, 0])
    own = json.loads(evaluations["rgb"].read_text())
    assert [c["pred"] for c in alone["clips"]] == [c["pred"] for c in own["clips"]]
    assert alone["mean_class_accuracy"] == pytest.approx(own["mean_class_accuracy"])
    logits = fuse([evaluations["rgb"], evaluations["flow"]], space="logits")
    np.testing.assert_allclose([c["scores"] for c in logits["clips"]], (a.logits + b.logits) / 2)


def test_fusion_refuses_mismatched_files(evaluations, tmp_path):
    m = json.loads(evaluations["rgb"].read_text())
    m["clips"] = m["clips"][1:]
    fewer = tmp_path / "fewer.json"
    fewer.write_text(json.dumps(m))
    with pytest.raises(ValueError, match="different clips"):
        fuse([evaluations["rgb"], fewer])
    with pytest.raises(ValueError, match="weights"):
        fuse([evaluations["rgb"]], weights=[1, 1])


def test_docs_fusion_example_runs(evaluations, capsys):
    """The late-fusion snippet of docs/evaluation.md, run on two real evaluation files."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    snippet = next(b for b in blocks if "fuse(" in b)
    snippet = snippet.replace("runs/rgb/eval.json", str(evaluations["rgb"]))
    snippet = snippet.replace("runs/flow/eval.json", str(evaluations["flow"]))
    scope: dict = {}
    exec(compile(snippet, str(DOC), "exec"), scope)  # noqa: S102 - our own documentation
    assert "% mean class accuracy" in capsys.readouterr().out
    assert scope["fused"]["mean_class_accuracy"] == fuse([evaluations["rgb"], evaluations["flow"]])["mean_class_accuracy"]

"""The demo end to end in its --quick form (the project's main job on a fresh machine)."""

from __future__ import annotations

import json
import time

import pytest
from PIL import Image

from gaze_attention.demo import ESTIMATOR_ORDER, DemoPlan, plan_runs, run_demo, summarise


def test_plan_reuses_table_runs_for_the_curve() -> None:
    plan = DemoPlan()
    runs = plan_runs(plan)
    table = [r for r in runs if r.part == "table"]
    curve = [r for r in runs if r.part == "curve"]
    assert len(table) == 4 * 3
    # the largest curve size is the table's training set: only the smaller sizes add runs
    assert len(curve) == 2 * 2 * 2
    assert {r.per_class for r in curve} == {8, 20}
    assert len({r.name for r in runs}) == len(runs)
    schedule = plan.schedule()
    assert schedule["optim.milestones"] == [67, 125]
    # eps reaches its floor half-way through training, as in the paper (51 %)
    from gaze_attention.estimators import eps_schedule

    e = [
        eps_schedule(i, 1000.0, schedule["estimator.eps_rate"], schedule["estimator.eps_every"], 0.1)
        for i in range(plan.iters)
    ]
    assert e[0] == 1000.0 and e[plan.iters // 2 + 1] == pytest.approx(0.1, rel=0.05) and e[-1] == 0.1


def test_summary_mean_and_std_over_seeds() -> None:
    plan = DemoPlan(estimators=("none", "direct"), seeds=(0, 1), curve_sizes=())
    rows = []
    for e, accs in (("none", (0.5, 0.7)), ("direct", (0.6, 0.6))):
        for s, a in zip(plan.seeds, accs):
            rows.append(
                {
                    "estimator": e,
                    "seed": s,
                    "per_class": plan.train_per_class,
                    "mean_class_accuracy": a,
                    "overall_accuracy": a,
                    "gaze_within_one_cell": None if e == "none" else 0.5,
                    "gaze_exact_cell": None if e == "none" else 0.25,
                }
            )
    table = summarise(rows, plan)["table"]
    assert table["none"]["mean_class_accuracy"]["mean"] == pytest.approx(0.6)
    assert table["none"]["mean_class_accuracy"]["std"] == pytest.approx(0.1414, abs=1e-3)
    assert table["direct"]["mean_class_accuracy"]["std"] == 0.0
    assert table["none"]["gaze_exact_cell"]["n"] == 0


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path) -> None:
    t0 = time.perf_counter()
    result = run_demo(tmp_path / "demo", quick=True, progress=False)
    first = time.perf_counter() - t0
    report = result.report.parent
    for name in ("README.md", "results.json", "accuracy.png", "training_curves.png", "gradcam.png"):
        assert (report / name).is_file(), name
    payload = json.loads((report / "results.json").read_text())
    assert [r["estimator"] for r in payload["runs"]] == list(ESTIMATOR_ORDER)
    for run in payload["runs"]:
        assert 0.0 <= run["mean_class_accuracy"] <= 1.0
        assert run["train_seconds"] > 0
    assert payload["runs"][0]["gaze_exact_cell"] is None  # `none` predicts no gaze
    assert payload["runs"][-1]["gaze_exact_cell"] is not None
    assert set(payload["bias"]) == {"direct", "gumbel_softmax", "straight_through"}
    md = result.report.read_text()
    for e in ESTIMATOR_ORDER:
        assert f"| {e} |" in md
    with Image.open(report / "accuracy.png") as im:
        assert im.size[0] > 300
    # a rerun finds every run done and only rewrites the report
    t1 = time.perf_counter()
    again = run_demo(tmp_path / "demo", quick=True, progress=False)
    assert [r["mean_class_accuracy"] for r in again.runs] == [r["mean_class_accuracy"] for r in result.runs]
    assert time.perf_counter() - t1 < first


def test_other_data_options_are_refused(tmp_path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "data.json").write_text(json.dumps({"classes": 99}))
    with pytest.raises(ValueError, match="other data options"):
        run_demo(tmp_path / "d", quick=True, progress=False)

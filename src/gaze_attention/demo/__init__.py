"""The demo: does gaze help? The paper's ablation (Min & Corso, WACV 2021, Table 2) at CPU scale.

One command makes two synthetic gaze-dependent data sets in the raw EGTEA layout and prepares
them (DIS flow). As the paper fine-tunes a Kinetics-initialised I3D, the demo first pre-trains
the `tiny` backbone once, without gaze, on a disjoint set of other actions (same world, other
objects). Each arm is then fine-tuned from that backbone at the plan's training-set sizes
with paired seeds: seed s gives every arm the same training clips, data order, augmentation
and head initialisation, so arms are compared seed by seed. The clips are decoded once and
held in memory (data/memory.py) for the many short runs. The report gives the paired
differences with 95 % t-intervals and whether they reach the plan's target widths.

Modules: `plan` (what runs), `statistics` (intervals from pairs), `runs` (data, pre-training,
one fine-tuning run), `report`. Every finished run leaves a `result.json` in its folder, so
an interrupted demo rerun with the same options skips what is done (a finished run whose
config.yaml differs from the plan's is refused, `runs._check_same_settings`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gaze_attention.demo.plan import (
    COMPARISONS,
    ESTIMATOR_ORDER,
    DemoPlan,
    RunSpec,
    plan_runs,
    pretrain_pairs,
)
from gaze_attention.demo.report import Summary, summarise, verdict, write_report
from gaze_attention.demo.runs import RunResult, choose_threads, prepare_data, pretrain, run_one
from gaze_attention.demo.statistics import Interval, Spread, paired_interval, spread, t975


@dataclass
class DemoResult:
    out_dir: Path
    report: Path
    runs: list[RunResult] = field(default_factory=list)
    seconds: float = 0.0


def machine_facts() -> dict[str, Any]:
    """CPU model, threads, fp32 matmul rate and load average, for the report."""
    import torch

    from gaze_attention.engine.precision import cpu_model, fp32_matmul_gflops

    gflops = fp32_matmul_gflops()  # measured now, not the cached precision probe
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return {"cpu": cpu_model(), "threads": torch.get_num_threads(), "fp32_gflops": gflops, "load": load}


def _eta(done_s: list[float], left: int) -> str:
    if not done_s:
        return "?"
    sec = sum(done_s) / len(done_s) * left
    return f"{sec / 60:.1f} min"


def run_demo(
    out_dir: str | Path = "demo_out",
    quick: bool = False,
    plan: DemoPlan | None = None,
    progress: bool = True,
    command: str = "gaze-attention demo",
    **overrides: Any,
) -> DemoResult:
    """Run the whole demo; returns where the report is."""
    from gaze_attention.data.memory import MemoryData

    plan = plan or (DemoPlan.quick() if quick else DemoPlan())
    if overrides:
        plan = replace(plan, **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        if progress:
            print(f"[demo {(time.perf_counter() - t0) / 60:4.1f} min] {msg}", flush=True)

    prepared, pre = prepare_data(plan, out, log)
    if pre is not None:
        choose_threads(log)
    base = pretrain(plan, pre, out, log) if pre is not None else None
    data = MemoryData(prepared)
    runs = plan_runs(plan)
    log(f"{len(runs)} fine-tuning runs: {', '.join(plan.arms)} at {sorted(plan.sizes)} clips/class"
        + (f", {', '.join(plan.largest_only)} at {plan.max_size} (seeds {list(plan.largest_only_seed_list)})"
           if plan.largest_only else "")
        + f"; seeds {list(plan.seeds)}")  # fmt: skip
    results: list[RunResult] = []
    took: list[float] = []
    for k, spec in enumerate(runs, 1):
        t = time.perf_counter()
        if not (out / "runs" / spec.name / "result.json").exists():
            choose_threads(log)
        r = run_one(spec, plan, data, out / "runs", base)
        results.append(r)
        if r.train_seconds and time.perf_counter() - t > 1:  # a run done before is not a measure
            took.append(time.perf_counter() - t)
        log(
            f"run {k}/{len(runs)} {spec.name}: mean class accuracy {100 * r.mean_class_accuracy:.1f} % "
            f"({time.perf_counter() - t:.0f} s); ETA {_eta(took, len(runs) - k)}"
        )
    log("report")
    report = write_report(results, plan, out, data, command, time.perf_counter() - t0, machine_facts())
    log(f"done in {(time.perf_counter() - t0) / 60:.1f} min: {report}")
    return DemoResult(out, report, results, time.perf_counter() - t0)


__all__ = [
    "COMPARISONS",
    "ESTIMATOR_ORDER",
    "DemoPlan",
    "DemoResult",
    "Interval",
    "RunResult",
    "RunSpec",
    "Spread",
    "Summary",
    "paired_interval",
    "plan_runs",
    "pretrain_pairs",
    "run_demo",
    "spread",
    "summarise",
    "t975",
    "verdict",
]

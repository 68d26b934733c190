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
    backbone_out,
    backbone_seeds,
    next_seeds,
    plan_runs,
    pretrain_pairs,
)
from gaze_attention.demo.report import (
    Backbone,
    Summary,
    stein_seeds,
    summarise,
    verdict,
    with_option,
    without_option,
    write_report,
)
from gaze_attention.demo.runs import (
    Log,
    RunResult,
    choose_threads,
    max_threads,
    prepare_data,
    pretrain,
    pretrain_seconds,
    run_one,
    share_data,
)
from gaze_attention.demo.statistics import Interval, Spread, paired_interval, spread, t975


@dataclass
class DemoResult:
    out_dir: Path
    report: Path
    runs: list[RunResult] = field(default_factory=list)
    seconds: float = 0.0
    backbones: list[Backbone] = field(default_factory=list)  # with --backbones: every one, this first


def machine_facts() -> dict[str, Any]:
    """CPU model, threads, fp32 matmul rate and load average, for the report."""
    import torch

    from gaze_attention.engine.precision import cpu_model, fp32_matmul_gflops

    # At all threads, whatever the last run's probe chose: the rate of the machine, not of a
    # moment when another job held a core.
    chosen = torch.get_num_threads()
    torch.set_num_threads(max_threads())
    try:
        gflops = fp32_matmul_gflops()  # measured now, not the cached precision probe
    finally:
        torch.set_num_threads(chosen)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return {"cpu": cpu_model(), "threads": max_threads(), "fp32_gflops": gflops, "load": load}


def _eta(done_s: list[float], left: int) -> str:
    if not done_s:
        return "?"
    sec = sum(done_s) / len(done_s) * left
    return f"{sec / 60:.1f} min"


def _backbone_seconds(results: list[RunResult], out: Path) -> float:
    """What one backbone's plan costs to train from nothing: its pre-training and its runs (as
    measured when they ran, so a folder whose runs were done before still gives its cost)."""
    return sum(r.train_seconds + r.eval_seconds for r in results) + (pretrain_seconds(out) or 0.0)


def run_demo(
    out_dir: str | Path = "demo_out",
    quick: bool = False,
    plan: DemoPlan | None = None,
    progress: bool = True,
    command: str = "gaze-attention demo",
    backbones: int = 1,
    **overrides: Any,
) -> DemoResult:
    """Run the whole demo; returns where the report is.

    backbones > 1: then the same plan on `backbones - 1` more pre-trained backbones (seeds 1, 2,
    ...: `demo.plan.backbone_seeds`), each in its own folder beside `out_dir` (OUT-backbone1, ...:
    `demo.plan.backbone_out`) with its own report; this folder's report then gains the interval
    over all of them.
    """
    plan = plan or (DemoPlan.quick() if quick else DemoPlan())
    if backbones > 1 and "max_seeds" not in overrides:
        # The interval over backbones is the one --backbones powers; each backbone's own
        # second stage would multiply its cost.
        overrides["max_seeds"] = None
    if overrides:
        plan = replace(plan, **overrides)
    if backbones > 1 and not plan.pretrain:
        raise ValueError("--backbones repeats the plan on other pre-trained backbones, which --no-pretrain leaves out")
    out = Path(out_dir)
    seeds = backbone_seeds(plan.pretrain_seed, backbones)
    t0 = time.perf_counter()

    def logger(i: int) -> Log:
        tag = f" · backbone {i}/{len(seeds)}, seed {seeds[i - 1]}" if len(seeds) > 1 else ""

        def log(msg: str) -> None:
            if progress:
                print(f"[demo {(time.perf_counter() - t0) / 60:4.1f} min{tag}] {msg}", flush=True)

        return log

    log = logger(1)
    results, data, report, ran = _run_plan(out, plan, command, log, more_backbones=len(seeds) - 1)
    done = [Backbone(plan.pretrain_seed, out, summarise(results, ran))]
    cost = [_backbone_seconds(results, out)]
    for i, seed in enumerate(seeds[1:], 2):
        sib, sib_plan = backbone_out(out, seed), replace(plan, pretrain_seed=seed)
        # Its own command line, so that its report reproduces it alone.
        alone = with_option(" ".join(without_option(command, "--backbones")), "--pretrain-seed", [str(seed)])
        left = len(seeds) - i + 1
        log(f"backbone {i}/{len(seeds)} (pre-training seed {seed}) into {sib}; {left} to go, each about "
            f"{sum(cost) / len(cost) / 60:.0f} min where nothing is done yet")  # fmt: skip
        if share_data(out, sib, sib_plan):
            logger(i)(f"the data of {out}, its frames hard-linked -> {sib}")
        got, _, _, sib_ran = _run_plan(sib, sib_plan, with_option(alone, "--out", [str(sib)]), logger(i))
        cost.append(_backbone_seconds(got, sib))
        done.append(Backbone(seed, sib, summarise(got, sib_ran)))
    if len(seeds) > 1:
        log("report across backbones")
        report = write_report(results, ran, out, data, command, time.perf_counter() - t0, machine_facts(), done)
    log(f"done in {(time.perf_counter() - t0) / 60:.1f} min: {report}")
    return DemoResult(out, report, results, time.perf_counter() - t0, done)


def _run_plan(out: Path, plan: DemoPlan, command: str, log: Log, more_backbones: int = 0
              ) -> tuple[list[RunResult], Any, Path, DemoPlan]:  # fmt: skip
    """The plan on one backbone: data, pre-training, every fine-tuning run (finished ones read
    back), the second stage's where the plan has one, the report in OUT/report. Returns the
    runs, the data, the report's path and the plan as run (its seeds those of both stages)."""
    from gaze_attention.data.memory import MemoryData

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    prepared, pre = prepare_data(plan, out, log)
    if pre is not None:
        choose_threads(log, plan.threads)
    base = pretrain(plan, pre, out, log) if pre is not None else None
    data = MemoryData(prepared)
    runs = plan_runs(plan)
    log(f"{len(runs)} fine-tuning runs: {', '.join(plan.arms)} at {sorted(plan.sizes)} clips/class"
        + (f", {', '.join(plan.largest_only)} at {plan.max_size} (seeds {list(plan.largest_only_seed_list)})"
           if plan.largest_only else "")
        + f"; seeds {list(plan.seeds)}"
        + (f" (the first stage: up to {plan.max_seeds} seeds if their pairs need more)" if plan.two_stage else ""))  # fmt: skip
    then = f" for this backbone, then {more_backbones} more" if more_backbones else ""
    results = _train_runs(runs, plan, data, out, base, log, then)
    if plan.two_stage:
        plan, more = _stage_two(results, plan, log)
        results += _train_runs(more, plan, data, out, base, log, then, start=len(runs))
    log("report")
    report = write_report(results, plan, out, data, command, time.perf_counter() - t0, machine_facts())
    log(f"report of this backbone: {report}" if more_backbones else f"report: {report}")
    return results, data, report, plan


def _train_runs(runs: list[RunSpec], plan: DemoPlan, data: Any, out: Path, base: Path | None, log: Log,
                then: str, start: int = 0) -> list[RunResult]:  # fmt: skip
    """Train (or read back) `runs` in order, a progress line with an ETA after each."""
    results: list[RunResult] = []
    took: list[float] = []
    total = start + len(runs)
    for k, spec in enumerate(runs, start + 1):
        t = time.perf_counter()
        if not (out / "runs" / spec.name / "result.json").exists():
            choose_threads(log, plan.threads)
        r = run_one(spec, plan, data, out / "runs", base)
        results.append(r)
        if r.train_seconds and time.perf_counter() - t > 1:  # a run done before is not a measure
            took.append(time.perf_counter() - t)
        log(
            f"run {k}/{total} {spec.name}: mean class accuracy {100 * r.mean_class_accuracy:.1f} % "
            f"({time.perf_counter() - t:.0f} s); ETA {_eta(took, total - k)}{then}"
        )
    return results


def _stage_two(results: list[RunResult], plan: DemoPlan, log: Log) -> tuple[DemoPlan, list[RunSpec]]:
    """The plan after its first stage: the seeds Stein's rule asks for (up to `max_seeds`) and
    the runs they add; the plan's `stage_one` set, so that its intervals are two-stage ones."""
    first = replace(plan, stage_one=len(plan.seeds))
    summary = summarise(results, first)
    need = stein_seeds(summary, first)
    cap = plan.max_seeds or len(plan.seeds)
    rows = summary.paired.get("direct - none", {})
    widths = ", ".join(
        f"{'all sizes' if k == 'pooled' else k}: ±{100 * iv.half_width:.1f}" for k, iv in rows.items() if iv.n > 1
    )
    if need <= len(plan.seeds):
        log(f"the first stage's {len(plan.seeds)} seeds meet the targets ({widths}): no second stage")
        return first, []
    final = replace(first, seeds=next_seeds(plan.seeds, min(need, cap)))
    done = {spec.name for spec in plan_runs(plan)}
    more = [spec for spec in plan_runs(final) if spec.name not in done]
    capped = f", capped at --max-seeds {cap} (the targets need {need})" if need > cap else ""
    log(f"the first stage's {len(plan.seeds)} seeds give {widths}: the second stage trains seeds "
        f"{list(final.seeds[len(plan.seeds):])} ({len(more)} runs{capped})")  # fmt: skip
    return final, more


__all__ = [
    "COMPARISONS",
    "Backbone",
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

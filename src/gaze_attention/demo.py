"""The demo: the paper's ablation (Min & Corso, WACV 2021, Table 2) at CPU scale.

One command makes a synthetic gaze-dependent data set in the raw EGTEA layout, prepares it
(DIS flow), trains the `tiny` network with each gaze estimator over several seeds, evaluates
each, and writes a report: a Markdown table and JSON (mean +- std over seeds), a bar chart,
training curves, accuracy against training clips per class for `none` and `direct`, the
estimators' gradient bias against exact enumeration, and a Grad-CAM++ figure per estimator.

Every finished run leaves a `result.json` in its folder, so an interrupted demo rerun with the
same options skips what is done.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ESTIMATOR_ORDER = ("none", "gumbel_softmax", "straight_through", "direct")


@dataclass(frozen=True)
class DemoPlan:
    """What the demo trains. The schedule is the paper's, compressed to `iters` (see `schedule`)."""

    classes: int = 6
    train_per_class: int = 40
    test_per_class: int = 15
    data_seed: int = 0
    size: tuple[int, int] = (170, 128)  # prepared frame size: a 112 crop leaves room to jitter
    estimators: tuple[str, ...] = ESTIMATOR_ORDER
    seeds: tuple[int, ...] = (0, 1, 2)
    iters: int = 150
    batch_size: int = 8
    lr: float = 0.005
    kl_weight: float = 1.0
    eps_min: float = 0.1
    precision: str = "fp32"
    curve_sizes: tuple[int, ...] = (8, 20, 40)  # training clips per class
    curve_seeds: tuple[int, ...] = (0, 1)
    curve_estimators: tuple[str, ...] = ("none", "direct")
    figure: bool = True
    bias_draws: int = 50_000

    @classmethod
    def quick(cls) -> DemoPlan:
        return cls(
            classes=4,
            train_per_class=16,
            test_per_class=6,
            seeds=(0,),
            iters=40,
            curve_sizes=(),
            bias_draws=20_000,
        )

    def schedule(self) -> dict[str, Any]:
        """Training overrides: the paper's 18000-iteration schedule compressed to `iters`.

        The paper decays the learning rate at 8000 and 15000 of 18000 iterations and its eps
        reaches 0.1 near iteration 9200 (51 %), updated 180 times. Here: the same fractions,
        eps from 1000 to `eps_min` (0.1) by half-way, updated every iters/180 iterations (at least 1).
        """
        every = max(1, self.iters // 180)
        rate = math.log(1000.0 / self.eps_min) / (0.5 * self.iters)
        return {
            "optim.iters": self.iters,
            "optim.batch_size": self.batch_size,
            "optim.lr": self.lr,
            "optim.milestones": [round(self.iters * 8 / 18), round(self.iters * 15 / 18)],
            "estimator.eps0": 1000.0,
            "estimator.eps_rate": rate,
            "estimator.eps_every": every,
            "estimator.eps_min": self.eps_min,
            "estimator.kl_weight": self.kl_weight,
            "run.precision": self.precision,
        }


@dataclass
class RunSpec:
    estimator: str
    seed: int
    per_class: int  # training clips per class
    part: str  # "table" or "curve"

    @property
    def name(self) -> str:
        return f"{self.estimator}-n{self.per_class}-s{self.seed}"


@dataclass
class DemoResult:
    out_dir: Path
    report: Path
    runs: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def plan_runs(plan: DemoPlan) -> list[RunSpec]:
    """Table runs (all estimators, all seeds, all training clips), then the extra curve runs."""
    runs = [RunSpec(e, s, plan.train_per_class, "table") for e in plan.estimators for s in plan.seeds]
    have = {(r.estimator, r.seed, r.per_class) for r in runs}
    for n in plan.curve_sizes:
        for e in plan.curve_estimators:
            for s in plan.curve_seeds:
                if (e, s, min(n, plan.train_per_class)) not in have:
                    runs.append(RunSpec(e, s, min(n, plan.train_per_class), "curve"))
                    have.add((e, s, n))
    return runs


def _prepare_data(plan: DemoPlan, out: Path, log) -> Path:
    from gaze_attention.data.prepare import prepare
    from gaze_attention.data.synthetic import make_synthetic_raw

    raw, prepared = out / "raw", out / "prepared"
    stamp = out / "data.json"
    want = {
        "classes": plan.classes,
        "train_per_class": plan.train_per_class,
        "test_per_class": plan.test_per_class,
        "seed": plan.data_seed,
        "size": list(plan.size),
    }
    if stamp.exists() and json.loads(stamp.read_text()) != want:
        raise ValueError(
            f"{out} holds a demo made with other data options ({stamp}); use another --out or remove it"
        )
    if not (raw / "action_annotation").exists():
        log(f"synthetic raw data set -> {raw}")
        tmp = out / "raw.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        make_synthetic_raw(
            tmp,
            num_classes=plan.classes,
            train_per_class=plan.train_per_class,
            test_per_class=plan.test_per_class,
            seed=plan.data_seed,
            size=plan.size,
        )
        tmp.rename(raw)
    stamp.write_text(json.dumps(want))
    log(f"prepare (DIS flow) -> {prepared}")
    result = prepare(raw, prepared, splits=[1], flow="dis", size=plan.size, workers=2, progress=False)
    if result.failed:
        raise RuntimeError(
            f"preparing the synthetic set failed for {len(result.failed)} clips: {result.failed[:3]}"
        )
    return prepared


def _run_one(spec: RunSpec, plan: DemoPlan, data, prepared: Path, runs_dir: Path) -> dict[str, Any]:
    from gaze_attention.engine.config import load_config
    from gaze_attention.engine.evaluate import evaluate
    from gaze_attention.engine.train import eval_gaze_mode, train

    run_dir = runs_dir / spec.name
    done = run_dir / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted run: start it again from scratch
    overrides = {
        **plan.schedule(),
        "data.root": str(prepared),
        "data.workers": 0,
        "data.max_train_per_class": spec.per_class,
        "estimator.name": spec.estimator,
        "run.out": str(run_dir),
        "run.seed": spec.seed,
        "run.tensorboard": False,
        "run.checkpoint_every": plan.iters,
        "run.keep_last": 1,
    }
    cfg = load_config("tiny", overrides)
    t0 = time.perf_counter()
    res = train(cfg, progress=False, data=data)
    train_s = time.perf_counter() - t0
    if res.interrupted:
        raise KeyboardInterrupt
    # Test-time gaze: argmax of the predicted distribution (deterministic); `none` sees uniform gaze.
    mode = "none" if eval_gaze_mode(cfg) == "none" else "argmax"
    metrics = evaluate(res.model, data, 1, gaze_mode=mode, batch_size=16, sparse=False)
    result = {
        "name": spec.name,
        "estimator": spec.estimator,
        "seed": spec.seed,
        "per_class": spec.per_class,
        "part": spec.part,
        "mean_class_accuracy": metrics["mean_class_accuracy"],
        "overall_accuracy": metrics["overall_accuracy"],
        "verb_accuracy": metrics.get("verb_accuracy"),
        "noun_accuracy": metrics.get("noun_accuracy"),
        "gaze_within_one_cell": metrics.get("gaze_within_one_cell"),
        "gaze_exact_cell": metrics.get("gaze_exact_cell"),
        "train_seconds": train_s,
        "eval_seconds": metrics["seconds"],
        "checkpoint": str(res.last_checkpoint) if res.last_checkpoint else None,
        "history": res.history,
    }
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.rename(done)
    return result


def _mean_std(values: list[float | None]) -> tuple[float, float, int]:
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def summarise(results: list[dict[str, Any]], plan: DemoPlan) -> dict[str, Any]:
    """Mean +- std over seeds per estimator (table) and per (estimator, clips per class) (curve)."""
    table = {}
    for e in plan.estimators:
        rows = [r for r in results if r["estimator"] == e and r["per_class"] == plan.train_per_class]
        rows = [r for r in rows if r["seed"] in plan.seeds]
        table[e] = {
            k: dict(zip(("mean", "std", "n"), _mean_std([r[k] for r in rows])))
            for k in ("mean_class_accuracy", "overall_accuracy", "gaze_within_one_cell", "gaze_exact_cell")
        }
    curve: dict[str, dict[str, Any]] = {}
    for e in plan.curve_estimators if plan.curve_sizes else ():
        curve[e] = {}
        for n in sorted({min(s, plan.train_per_class) for s in plan.curve_sizes}):
            rows = [
                r
                for r in results
                if r["estimator"] == e and r["per_class"] == n and r["seed"] in plan.curve_seeds
            ]
            curve[e][str(n)] = dict(
                zip(("mean", "std", "n"), _mean_std([r["mean_class_accuracy"] for r in rows]))
            )
    return {"table": table, "curve": curve}


def _pct(stat: dict[str, float]) -> str:
    if stat["n"] == 0 or math.isnan(stat["mean"]):
        return "–"
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"


def markdown_table(summary: dict[str, Any], plan: DemoPlan) -> str:
    lines = [
        "| estimator | mean class accuracy (%) | overall accuracy (%) | gaze: exact cell (%) | gaze: within one cell (%) |",
        "|---|---|---|---|---|",
    ]
    for e, row in summary["table"].items():
        lines.append(
            f"| {e} | {_pct(row['mean_class_accuracy'])} | {_pct(row['overall_accuracy'])} | "
            f"{_pct(row['gaze_exact_cell'])} | {_pct(row['gaze_within_one_cell'])} |"
        )
    return "\n".join(lines)


def _plots(results: list[dict[str, Any]], summary: dict[str, Any], plan: DemoPlan, report: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    # Bar chart with error bars.
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = list(summary["table"])
    x = np.arange(len(names))
    for j, (key, label) in enumerate(
        (("mean_class_accuracy", "mean class acc."), ("overall_accuracy", "overall acc."))
    ):
        means = [100 * summary["table"][e][key]["mean"] for e in names]
        stds = [100 * summary["table"][e][key]["std"] for e in names]
        ax.bar(x + (j - 0.5) * 0.38, means, 0.38, yerr=stds, capsize=4, label=label)
    ax.axhline(100 / plan.classes, color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(x, names)
    ax.set_ylabel("%")
    ax.set_title(f"test accuracy, mean ± std over {len(plan.seeds)} seed(s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(report / "accuracy.png", dpi=110)
    plt.close(fig)
    made.append("accuracy.png")

    # Training curves: CE (and the KL term) averaged over seeds.
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for e in names:
        rows = [r for r in results if r["estimator"] == e and r["part"] == "table"]
        if not rows or not rows[0]["history"]:
            continue
        its = [h["iteration"] for h in rows[0]["history"]]
        for ax, key in zip(axes, ("ce", "kl")):
            series = [
                [h.get(key, math.nan) for h in r["history"]] for r in rows if len(r["history"]) == len(its)
            ]
            if series:
                ax.plot(its, np.nanmean(np.array(series, dtype=float), 0), label=e)
    axes[0].set_title("training cross-entropy (mean over seeds)")
    axes[1].set_title("KL to recorded gaze")
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(report / "training_curves.png", dpi=110)
    plt.close(fig)
    made.append("training_curves.png")

    if summary["curve"]:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for e, points in summary["curve"].items():
            ns = sorted(int(n) for n in points)
            means = [100 * points[str(n)]["mean"] for n in ns]
            stds = [100 * points[str(n)]["std"] for n in ns]
            ax.errorbar(ns, means, yerr=stds, marker="o", capsize=4, label=e)
        ax.axhline(100 / plan.classes, color="grey", ls="--", lw=1, label="chance")
        ax.set_xlabel("training clips per class")
        ax.set_ylabel("mean class accuracy (%)")
        ax.set_title(f"where gaze helps (mean ± std over {len(plan.curve_seeds)} seeds)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(report / "clips_per_class.png", dpi=110)
        plt.close(fig)
        made.append("clips_per_class.png")
    return made


def _bias_section(plan: DemoPlan) -> tuple[str, dict[str, Any]]:
    from gaze_attention.bias import bias_table

    table = bias_table(draws=plan.bias_draws, seeds=(0, 1, 2))
    lines = [
        f"Relative error ||mean estimate − exact|| / ||exact|| of the gradient w.r.t. π on small "
        f"problems (T' = 2, 2×2 cells, a random attention head; exact gradient by enumerating all "
        f"16 configurations), {plan.bias_draws} Gumbel draws, mean over 3 problems. It is bias "
        "plus Monte-Carlo noise, and the noise of direct optimization grows as eps falls.",
        "",
        "| estimator | setting | relative error |",
        "|---|---|---|",
    ]
    for est, rows in table.items():
        for setting, values in rows.items():
            lines.append(f"| {est} | {setting} | {np.mean(values):.3f} |")
    return "\n".join(lines), table


def _figure(results: list[dict[str, Any]], data, plan: DemoPlan, report: Path) -> str | None:
    from gaze_attention.data import ClipDataset
    from gaze_attention.engine.checkpoint import load_model
    from gaze_attention.viz import render_comparison

    models = {}
    for e in plan.estimators:
        rows = [r for r in results if r["estimator"] == e and r["part"] == "table" and r["checkpoint"]]
        if rows:
            models[e], _, _ = load_model(rows[0]["checkpoint"])
    if not models:
        return None
    first = next(iter(models.values()))
    records = data.split(1, "test")
    ds = ClipDataset(
        data, records[:1], train=False, frames=first.config.frames, crop=first.config.crop, grid=first.grid
    )
    render_comparison(
        models, ds[0], data.classes, report / "gradcam.png", gaze_mode="argmax", name=records[0].name
    )
    return "gradcam.png"


def write_report(
    results: list[dict[str, Any]], plan: DemoPlan, out: Path, data, command: str, seconds: float
) -> Path:
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    summary = summarise(results, plan)
    figures = _plots(results, summary, plan, report)
    bias_md, bias = _bias_section(plan)
    figure = _figure(results, data, plan, report) if plan.figure else None
    sched = plan.schedule()
    payload = {
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "seconds": seconds,
        "plan": asdict(plan),
        "schedule": sched,
        "summary": summary,
        "bias": bias,
        "runs": [{k: v for k, v in r.items() if k != "history"} for r in results],
    }
    (report / "results.json").write_text(json.dumps(payload, indent=1))

    curve_md = ""
    if summary["curve"]:
        ns = sorted({int(n) for pts in summary["curve"].values() for n in pts})
        curve_md = "\n".join(
            [
                "| estimator | " + " | ".join(f"{n} clips/class" for n in ns) + " |",
                "|---|" + "---|" * len(ns),
                *(
                    f"| {e} | " + " | ".join(_pct(pts[str(n)]) for n in ns) + " |"
                    for e, pts in summary["curve"].items()
                ),
            ]
        )
    md = [
        "# Gaze-Attention demo report",
        "",
        f"`{command}` — {payload['date']}, {seconds / 60:.1f} minutes.",
        "",
        f"Synthetic EGTEA-layout set: {plan.classes} actions (verb = motion pattern × noun = handled "
        f"object), {plan.train_per_class} training and {plan.test_per_class} test clips per class, "
        "the handled object held by a visible hand among distractors, gaze mostly on it with "
        "saccades, blinks and noise. `tiny` network (24 frames, 112×112, T' = 3, S = 4, "
        f"an eighth of the channels, two-stream with DIS flow), {plan.iters} iterations of batch {plan.batch_size}, "
        f"seeds {list(plan.seeds)}. Test: all non-overlapping windows, centre crop, gaze = argmax of "
        "the predicted distribution (no recorded gaze at test time). Mean class accuracy counts "
        "classes present in the test split.",
        "",
        "## Ablation (mean ± std over seeds)",
        "",
        markdown_table(summary, plan),
        "",
        "Gaze columns: share of test slices whose predicted cell is the fixated cell (exact) or "
        "within one cell of it; `none` predicts no gaze.",
        "",
        "![accuracy](accuracy.png)",
        "",
        "![training curves](training_curves.png)",
        "",
    ]
    if curve_md:
        md += [
            "## Accuracy against training clips per class",
            "",
            f"Mean class accuracy, mean ± std over seeds {list(plan.curve_seeds)}.",
            "",
            curve_md,
            "",
            "![clips per class](clips_per_class.png)",
            "",
        ]
    md += [
        "## Schedule",
        "",
        f"The paper's schedule is 18000 iterations: lr ×0.1 at 8000 and 15000, eps = max(0.1, "
        f"1000·exp(−1e-3·i)) updated every 100 iterations, so eps reaches 0.1 at 51 % of training. "
        f"Run as is for {plan.iters} iterations, eps would stay near 1000 and direct optimization "
        f"would not act. The demo keeps the shape: lr {plan.lr} (SGD, momentum 0.9) ×0.1 at "
        f"iterations {sched['optim.milestones']}, eps from 1000 to {plan.eps_min:g} by half-way (rate "
        f"{sched['estimator.eps_rate']:.4f}, updated every {sched['estimator.eps_every']} iterations), "
        f"KL weight {plan.kl_weight}. BatchNorm momentum is 0.1 in `tiny` (0.01 in `paper`), "
        "since short runs would never settle running statistics at 0.01.",
        "",
        "## Estimator bias against exact enumeration",
        "",
        bias_md,
        "",
    ]
    if figure:
        md += [
            "## What the models look at",
            "",
            "Grad-CAM++ of the true class on `Mixed_5c` for one test clip, one row per estimator "
            "(seed 0), recorded fixation drawn on top.",
            "",
            f"![Grad-CAM++]({figure})",
            "",
        ]
    md += ["Figures: " + ", ".join(figures + ([figure] if figure else [])) + "; numbers: results.json.", ""]
    path = report / "README.md"
    path.write_text("\n".join(md))
    return path


def run_demo(
    out_dir: str | Path = "demo_out",
    quick: bool = False,
    plan: DemoPlan | None = None,
    progress: bool = True,
    command: str = "gaze-attention demo",
    **overrides: Any,
) -> DemoResult:
    """Run the whole demo; returns where the report is."""
    import torch
    from tqdm import tqdm

    from gaze_attention.data import PreparedData

    plan = plan or (DemoPlan.quick() if quick else DemoPlan())
    if overrides:
        plan = replace(plan, **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        if progress:
            tqdm.write(f"[demo] {msg}")

    torch.set_num_threads(max(1, torch.get_num_threads()))
    prepared = _prepare_data(plan, out, log)
    data = PreparedData(prepared)
    runs = plan_runs(plan)
    log(
        f"{len(runs)} training runs ({len(plan.estimators)} estimators × {len(plan.seeds)} seeds"
        + (
            f", plus {sum(r.part == 'curve' for r in runs)} for the clips-per-class curve)"
            if plan.curve_sizes
            else ")"
        )
    )
    results = []
    bar = tqdm(runs, desc="demo", unit="run", disable=not progress, dynamic_ncols=True)
    for spec in bar:
        bar.set_postfix_str(spec.name)
        r = _run_one(spec, plan, data, prepared, out / "runs")
        results.append(r)
        tqdm.write(
            f"[demo] {spec.name}: mean class accuracy {100 * r['mean_class_accuracy']:.1f} %, "
            f"overall {100 * r['overall_accuracy']:.1f} % ({r['train_seconds']:.0f} s)"
        ) if progress else None
    bar.close()
    log("report")
    report = write_report(results, plan, out, data, command, time.perf_counter() - t0)
    log(f"done in {(time.perf_counter() - t0) / 60:.1f} min: {report}")
    return DemoResult(out, report, results, time.perf_counter() - t0)

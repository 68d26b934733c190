"""The demo: does gaze help? The paper's ablation (Min & Corso, WACV 2021, Table 2) at CPU scale.

One command makes two synthetic gaze-dependent data sets in the raw EGTEA layout and prepares
them (DIS flow). As the paper fine-tunes a Kinetics-initialised I3D, the demo first pre-trains
the `tiny` backbone once, without gaze, on a disjoint set of other actions (same world, other
objects). Each gaze arm (none, gumbel_softmax, direct, and straight_through at the largest size)
is then fine-tuned from that backbone at several training-set sizes with paired seeds: seed s
gives every arm the same training clips, data order, augmentation and head initialisation, so
arms are compared seed by seed. The report gives, per size, the paired difference direct - none
and direct - gumbel_softmax with a 95 % t-interval, the estimators' gradient bias against exact
enumeration, how long direct optimization was active (share of slices where z_eps != z) and a
Grad-CAM++ figure.

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

from gaze_attention.constants import OPTIMIZER_LABELS

ESTIMATOR_ORDER = ("none", "gumbel_softmax", "straight_through", "direct")
COMPARISONS = (("direct", "none"), ("direct", "gumbel_softmax"))

# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (normal beyond 30)."""
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    # Cornish-Fisher expansion around the normal quantile: < 1e-3 off beyond 30.
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def paired_interval(diffs: list[float]) -> dict[str, Any]:
    """Mean of paired differences with its 95 % t-interval (n = number of pairs)."""
    d = np.asarray(diffs, dtype=float)
    n = int(d.size)
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0, "diffs": []}
    mean = float(d.mean())
    half = t975(n - 1) * float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n, "diffs": [float(x) for x in d]}


@dataclass(frozen=True)
class DemoPlan:
    """What the demo trains: pre-training once, then paired fine-tuning runs (see `plan_runs`)."""

    classes: int = 6
    sizes: tuple[int, ...] = (4, 10, 30)  # training clips per class
    test_per_class: int = 15
    data_seed: int = 0
    size: tuple[int, int] = (170, 128)  # prepared frame size: a 112 crop leaves room to jitter
    arms: tuple[str, ...] = ("none", "gumbel_softmax", "direct")  # at every size
    largest_only: tuple[str, ...] = ("straight_through",)  # only at the largest size
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    # Fine-tuning: the `tiny-finetune` preset's values (a test keeps them equal).
    iters: int = 40  # fine-tuning iterations per run
    batch_size: int = 8
    lr: float = 0.01
    warmup: int = 4
    kl_weight: float = 1.0
    eps_min: float = 1.0
    precision: str = "fp32"
    pretrain: bool = True
    pretrain_per_class: int = 12  # clips per class of the pre-training set (24 other actions)
    pretrain_iters: int = 300
    # SGD at lr 0.005, the recipe the demo was measured with: a backbone pre-trained with the
    # `tiny` preset's AdamW fine-tuned worse with SGD (docs/recipes.md, "The demo's backbone").
    pretrain_optimizer: str = "sgd"
    pretrain_lr: float = 0.005
    figure: bool = True
    bias_draws: int = 50_000

    @classmethod
    def quick(cls) -> DemoPlan:
        return cls(
            classes=4,
            sizes=(4, 12),
            test_per_class=5,
            largest_only=(),
            seeds=(0, 1),
            iters=16,
            warmup=2,
            pretrain_per_class=3,
            pretrain_iters=30,
            bias_draws=10_000,
        )

    @property
    def max_size(self) -> int:
        return max(self.sizes)

    def finetune_overrides(self) -> dict[str, Any]:
        """Training overrides of every fine-tuning run: the paper's schedule shape in `iters`.

        The paper decays the learning rate at 8000 and 15000 of 18000 iterations; here at the
        same fractions. eps falls log-linearly from 1000 to `eps_min` over the whole run
        (`estimator.eps_end` = 1), so direct optimization acts until the end.
        """
        return {
            "optim.iters": self.iters,
            "optim.batch_size": self.batch_size,
            "optim.lr": self.lr,
            "optim.warmup": self.warmup,
            "optim.milestones": [round(self.iters * 8 / 18), round(self.iters * 15 / 18)],
            "estimator.eps0": 1000.0,
            "estimator.eps_end": 1.0,
            "estimator.eps_every": 1,
            "estimator.eps_min": self.eps_min,
            "estimator.kl_weight": self.kl_weight,
            "run.precision": self.precision,
        }

    def pretrain_overrides(self) -> dict[str, Any]:
        it = self.pretrain_iters
        return {
            "optim.iters": it,
            "optim.batch_size": self.batch_size,
            "optim.optimizer": self.pretrain_optimizer,
            "optim.lr": self.pretrain_lr,
            "optim.warmup": max(1, it // 10),
            "optim.milestones": [round(it * 8 / 18), round(it * 15 / 18)],
            "estimator.name": "none",
            "run.precision": self.precision,
        }


@dataclass
class RunSpec:
    estimator: str
    seed: int
    per_class: int  # training clips per class

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
    """Every (arm, size, seed), seeds innermost so a partial demo has whole pairs; the
    `largest_only` arms at the largest size."""
    runs = [RunSpec(e, s, n) for n in sorted(plan.sizes) for e in plan.arms for s in plan.seeds]
    runs += [RunSpec(e, s, plan.max_size) for e in plan.largest_only for s in plan.seeds]
    return runs


def pretrain_pairs(classes: int) -> list[tuple[int, int]]:
    """Pre-training label set: every (verb, noun) whose noun the fine-tuning set does not use.

    The same world (hand, distractors, gaze, all motions), other objects: a backbone that
    learned to find a handled object and its motion, as Kinetics pre-training gives the paper.
    """
    from gaze_attention.data.synthetic import NOUNS, VERBS, class_pairs

    used = {n for _, n in class_pairs(classes)}
    return [(v, n) for n in range(len(NOUNS)) if n not in used for v in range(len(VERBS))]


def _make_set(raw: Path, prepared: Path, size: tuple[int, int], log, **synth: Any) -> Path:
    from gaze_attention.data.prepare import prepare
    from gaze_attention.data.synthetic import make_synthetic_raw

    if not (raw / "action_annotation").exists():
        log(f"synthetic raw data set -> {raw}")
        tmp = raw.with_name(raw.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        make_synthetic_raw(tmp, size=size, **synth)
        tmp.rename(raw)
    log(f"prepare (DIS flow) -> {prepared}")
    result = prepare(raw, prepared, splits=[1], flow="dis", size=size, workers=2, progress=False)
    if result.failed:
        raise RuntimeError(f"preparing {raw} failed for {len(result.failed)} clips: {result.failed[:3]}")
    return prepared


def _data_options(plan: DemoPlan) -> dict[str, Any]:
    return {
        "classes": plan.classes,
        "train_per_class": plan.max_size,
        "test_per_class": plan.test_per_class,
        "seed": plan.data_seed,
        "size": list(plan.size),
        "pretrain_per_class": plan.pretrain_per_class if plan.pretrain else 0,
    }


def _prepare_data(plan: DemoPlan, out: Path, log) -> tuple[Path, Path | None]:
    stamp = out / "data.json"
    want = _data_options(plan)
    if stamp.exists() and json.loads(stamp.read_text()) != want:
        raise ValueError(
            f"{out} holds a demo made with other data options ({stamp}); use another --out or remove it"
        )
    stamp.write_text(json.dumps(want))
    prepared = _make_set(
        out / "raw",
        out / "prepared",
        plan.size,
        log,
        num_classes=plan.classes,
        train_per_class=plan.max_size,
        test_per_class=plan.test_per_class,
        seed=plan.data_seed,
    )
    pre = None
    if plan.pretrain:
        pre = _make_set(
            out / "pretrain_raw",
            out / "pretrain_prepared",
            plan.size,
            log,
            pairs=pretrain_pairs(plan.classes),
            train_per_class=plan.pretrain_per_class,
            test_per_class=1,
            seed=plan.data_seed + 1000,  # other clips, other sessions
        )
    return prepared, pre


def _pretrain(plan: DemoPlan, prepared: Path, out: Path, log) -> Path:
    """Train the backbone once without gaze; returns the two-stream backbone file (`*_base.pt`)."""
    from gaze_attention.data import PreparedData
    from gaze_attention.engine.config import load_config
    from gaze_attention.engine.train import train
    from gaze_attention.models.reference import save_reference_checkpoint

    folder = out / "pretrain"
    base = folder / "backbone_base.pt"
    if base.is_file():
        return base
    if folder.exists():
        shutil.rmtree(folder)
    log(f"pre-training the backbone without gaze ({plan.pretrain_iters} iterations) -> {folder}")
    t0 = time.perf_counter()
    cfg = load_config(
        "tiny",
        {
            **plan.pretrain_overrides(),
            "data.root": str(prepared),
            "data.workers": 0,
            "run.out": str(folder / "run"),
            "run.seed": 12345,
            "run.tensorboard": False,
            "run.checkpoint_every": plan.pretrain_iters,
            "run.keep_last": 1,
        },
    )
    res = train(cfg, progress=False, data=PreparedData(prepared, cache=True))
    if res.interrupted:
        raise KeyboardInterrupt
    tmp = folder / "backbone.partial"
    paths = save_reference_checkpoint(res.model, tmp)
    for p in paths.values():
        if not p.name.endswith("_base.pt"):
            p.unlink()
    paths["base"].rename(base)
    (folder / "pretrain.json").write_text(json.dumps({"history": res.history, "seconds": time.perf_counter() - t0}))
    return base


def _run_one(
    spec: RunSpec, plan: DemoPlan, data, prepared: Path, runs_dir: Path, base: Path | None
) -> dict[str, Any]:
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
        **plan.finetune_overrides(),
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
    if base is not None:
        overrides["init.base"] = str(base)
    cfg = load_config("tiny-finetune", overrides)
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


def _mean_std(values: list[float | None]) -> dict[str, float]:
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def summarise(results: list[dict[str, Any]], plan: DemoPlan) -> dict[str, Any]:
    """Per size: each arm's mean +- std over seeds, and the paired differences with 95 % intervals.

    A pair is (seed, size) where both arms finished. `pooled` pools the pairs of every size.
    """
    by = {(r["estimator"], r["per_class"], r["seed"]): r for r in results}
    sizes = sorted(plan.sizes)
    arms = [e for e in ESTIMATOR_ORDER if e in plan.arms or e in plan.largest_only]
    table: dict[str, dict[str, Any]] = {}
    for n in sizes:
        table[str(n)] = {}
        for e in arms:
            rows = [by[(e, n, s)] for s in plan.seeds if (e, n, s) in by]
            if not rows:
                continue
            table[str(n)][e] = {
                k: _mean_std([r[k] for r in rows])
                for k in ("mean_class_accuracy", "overall_accuracy", "gaze_exact_cell", "gaze_within_one_cell")
            }
    paired: dict[str, dict[str, Any]] = {}
    for a, b in COMPARISONS:
        if a not in arms or b not in arms:
            continue
        key = f"{a} - {b}"
        paired[key] = {}
        pooled = []
        for n in sizes:
            diffs = [
                by[(a, n, s)]["mean_class_accuracy"] - by[(b, n, s)]["mean_class_accuracy"]
                for s in plan.seeds
                if (a, n, s) in by and (b, n, s) in by
            ]
            paired[key][str(n)] = paired_interval(diffs)
            pooled += diffs
        paired[key]["pooled"] = paired_interval(pooled)
    return {"table": table, "paired": paired}


def _pct(stat: dict[str, float]) -> str:
    if stat["n"] == 0 or math.isnan(stat["mean"]):
        return "–"
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"


def _ci(stat: dict[str, Any]) -> str:
    if stat["n"] == 0:
        return "–"
    if stat["n"] == 1 or math.isnan(stat["low"]):
        return f"{100 * stat['mean']:+.1f} (one pair)"
    return f"{100 * stat['mean']:+.1f} [{100 * stat['low']:+.1f}, {100 * stat['high']:+.1f}]"


def markdown_table(summary: dict[str, Any], plan: DemoPlan) -> str:
    lines = [
        "| clips/class | estimator | mean class accuracy (%) | overall accuracy (%) | gaze: exact cell (%) | gaze: within one cell (%) |",
        "|---|---|---|---|---|---|",
    ]
    for n, arms in summary["table"].items():
        for e, row in arms.items():
            lines.append(
                f"| {n} | {e} | {_pct(row['mean_class_accuracy'])} | {_pct(row['overall_accuracy'])} | "
                f"{_pct(row['gaze_exact_cell'])} | {_pct(row['gaze_within_one_cell'])} |"
            )
    return "\n".join(lines)


def paired_table(summary: dict[str, Any]) -> str:
    comps = list(summary["paired"])
    if not comps:
        return ""
    keys = [k for k in summary["paired"][comps[0]] if k != "pooled"] + ["pooled"]
    lines = [
        "| clips/class | " + " | ".join(f"{c} (points, 95 % CI)" for c in comps) + " | pairs |",
        "|---|" + "---|" * len(comps) + "---|",
    ]
    for k in keys:
        cells = [_ci(summary["paired"][c][k]) for c in comps]
        n = summary["paired"][comps[0]][k]["n"]
        lines.append(f"| {k if k != 'pooled' else 'all sizes'} | " + " | ".join(cells) + f" | {n} |")
    return "\n".join(lines)


def verdict(summary: dict[str, Any]) -> list[str]:
    """One sentence per comparison and size, read off the intervals (no judgement beyond them)."""
    out = []
    for comp, rows in summary["paired"].items():
        for k, st in rows.items():
            if st["n"] < 2 or math.isnan(st["low"]):
                continue
            where = "over all sizes" if k == "pooled" else f"at {k} clips per class"
            if st["low"] > 0:
                word = "better: the interval excludes 0"
            elif st["high"] < 0:
                word = "worse: the interval excludes 0"
            else:
                word = "no detectable difference: the interval includes 0"
            out.append(f"- {comp} {where}: {100 * st['mean']:+.1f} points, {word} ({st['n']} pairs).")
    return out


def _activity(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Direct optimization's activity over iterations: mean share of flipped slices, and eps."""
    rows = [r for r in results if r["estimator"] == "direct" and r["history"]]
    if not rows:
        return {}
    its = [h["iteration"] for h in rows[0]["history"]]
    same = [r for r in rows if [h["iteration"] for h in r["history"]] == its]
    flip = np.array([[h.get("flip", math.nan) for h in r["history"]] for r in same], dtype=float)
    mean = np.nanmean(flip, 0)
    active = [it for it, f in zip(its, mean) if f > 0]
    return {
        "iteration": its,
        "flip": [float(x) for x in mean],
        "eps": [float(h["eps"]) for h in same[0]["history"]],
        "last_active_iteration": int(active[-1]) if active else None,
        "runs": len(same),
    }


def _plots(results: list[dict[str, Any]], summary: dict[str, Any], plan: DemoPlan, report: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    sizes = sorted(plan.sizes)
    # Accuracy against clips per class, each arm with a 95 % t-interval of its mean over seeds.
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for e in ESTIMATOR_ORDER:
        pts = [(n, summary["table"][str(n)][e]["mean_class_accuracy"]) for n in sizes if e in summary["table"][str(n)]]
        if not pts:
            continue
        ns = [n for n, _ in pts]
        means = [100 * s["mean"] for _, s in pts]
        half = [100 * t975(s["n"] - 1) * s["std"] / math.sqrt(s["n"]) if s["n"] > 1 else 0 for _, s in pts]
        ax.errorbar(ns, means, yerr=half, marker="o", capsize=4, label=e)
    ax.axhline(100 / plan.classes, color="grey", ls="--", lw=1, label="chance")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel("training clips per class")
    ax.set_ylabel("mean class accuracy (%)")
    ax.set_title(f"test accuracy, mean and 95 % CI over {len(plan.seeds)} seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(report / "accuracy.png", dpi=110)
    plt.close(fig)
    made.append("accuracy.png")

    # Paired differences per size.
    if summary["paired"]:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for j, (comp, rows) in enumerate(summary["paired"].items()):
            x = np.arange(len(sizes)) + (j - 0.5) * 0.25
            for xi, n in zip(x, sizes):
                st = rows[str(n)]
                ax.scatter(np.full(len(st["diffs"]), xi), 100 * np.array(st["diffs"]), s=10, alpha=0.4, color=f"C{j}")
            means = [100 * rows[str(n)]["mean"] for n in sizes]
            lo = [100 * (rows[str(n)]["mean"] - rows[str(n)]["low"]) if rows[str(n)]["n"] > 1 else 0 for n in sizes]
            ax.errorbar(x, means, yerr=lo, fmt="o", capsize=5, color=f"C{j}", label=comp)
        ax.axhline(0, color="grey", lw=1)
        ax.set_xticks(np.arange(len(sizes)), [str(n) for n in sizes])
        ax.set_xlabel("training clips per class")
        ax.set_ylabel("paired difference (points)")
        ax.set_title("paired differences in mean class accuracy, 95 % CI (dots: seeds)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(report / "paired_differences.png", dpi=110)
        plt.close(fig)
        made.append("paired_differences.png")

    # Training curves at the largest size (mean over seeds), and direct optimization's activity.
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for e in ESTIMATOR_ORDER:
        rows = [r for r in results if r["estimator"] == e and r["per_class"] == plan.max_size and r["history"]]
        if not rows:
            continue
        its = [h["iteration"] for h in rows[0]["history"]]
        for ax, key in zip(axes[:2], ("ce", "kl")):
            series = [[h.get(key, math.nan) for h in r["history"]] for r in rows if len(r["history"]) == len(its)]
            if series:
                ax.plot(its, np.nanmean(np.array(series, dtype=float), 0), label=e)
    axes[0].set_title(f"training cross-entropy ({plan.max_size} clips/class)")
    axes[1].set_title("KL to recorded gaze")
    act = _activity(results)
    if act:
        ax = axes[2]
        ax.plot(act["iteration"], act["flip"], color="C3", label="slices with z_eps ≠ z")
        ax.set_ylim(0, 1)
        ax2 = ax.twinx()
        ax2.semilogy(act["iteration"], act["eps"], color="grey", ls="--", label="eps")
        ax2.set_ylabel("eps")
        ax.set_title("direct optimization: share of slices it moves")
        ax.legend(loc="upper right", fontsize=8)
    for ax in axes:
        ax.set_xlabel("iteration")
    for ax in axes[:2]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(report / "training_curves.png", dpi=110)
    plt.close(fig)
    made.append("training_curves.png")
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
    for e in ESTIMATOR_ORDER:
        rows = [
            r
            for r in results
            if r["estimator"] == e and r["per_class"] == plan.max_size and r["seed"] == plan.seeds[0] and r["checkpoint"]
        ]
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
    act = _activity(results)
    pre = out / "pretrain" / "pretrain.json"
    payload = {
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "seconds": seconds,
        "plan": asdict(plan),
        "finetune": plan.finetune_overrides(),
        "pretrain": plan.pretrain_overrides() if plan.pretrain else None,
        "summary": summary,
        "direct_activity": act,
        "bias": bias,
        "runs": [{k: v for k, v in r.items() if k != "history"} for r in results],
    }
    (report / "results.json").write_text(json.dumps(payload, indent=1))
    sched = plan.finetune_overrides()
    pre_text = (
        f"The backbone is pre-trained once, without gaze, on a disjoint synthetic set of "
        f"{len(pretrain_pairs(plan.classes))} other actions (every motion with the objects the "
        f"fine-tuning classes do not use; {plan.pretrain_per_class} clips each, other sessions), "
        f"{plan.pretrain_iters} iterations, {OPTIMIZER_LABELS[plan.pretrain_optimizer]} at lr {plan.pretrain_lr}; every arm then starts from it, "
        "as the paper's arms start from a Kinetics-initialised I3D. "
        if plan.pretrain
        else "Every arm trains from scratch. "
    )
    md = [
        "# Gaze-Attention demo report",
        "",
        f"`{command}` — {payload['date']}, {seconds / 60:.1f} minutes.",
        "",
        f"Synthetic EGTEA-layout set: {plan.classes} actions (verb = motion pattern × noun = handled "
        f"object), {plan.test_per_class} test clips per class; the handled object is held by a "
        "visible hand among distractors of the same kinds, gaze mostly on it with saccades, blinks "
        f"and noise. `tiny` network (24 frames, 112×112, T' = 3, S = 4, an eighth of the channels, "
        f"two-stream with DIS flow). {pre_text}"
        f"Fine-tuning: {plan.iters} iterations of batch {plan.batch_size} per run, seeds "
        f"{list(plan.seeds)}, paired: seed s gives every arm the same training clips (a seeded subset "
        "of the largest set), data order, augmentation and head initialisation. Test: all "
        "non-overlapping windows, centre crop, gaze = argmax of the predicted distribution (no "
        "recorded gaze at test time). Mean class accuracy counts classes present in the test split; "
        f"chance is {100 / plan.classes:.1f} %.",
        "",
        "## Does gaze help? Paired differences",
        "",
        "Mean class accuracy of the first arm minus the second, seed by seed, in points; mean and "
        "95 % t-interval over the pairs.",
        "",
        paired_table(summary),
        "",
        *verdict(summary),
        "",
        "![paired differences](paired_differences.png)",
        "",
        "## Accuracy per arm (mean ± std over seeds)",
        "",
        markdown_table(summary, plan),
        "",
        "Gaze columns: share of test slices whose predicted cell is the fixated cell (exact) or "
        "within one cell of it; `none` predicts no gaze.",
        "",
        "![accuracy](accuracy.png)",
        "",
        "## Training, and how long direct optimization acts",
        "",
        f"lr {plan.lr} (SGD, momentum 0.9) after {plan.warmup} warm-up iterations, ×0.1 at "
        f"iterations {sched['optim.milestones']}; eps falls log-linearly from 1000 to "
        f"{plan.eps_min:g} over the whole run (`estimator.eps_end: 1.0`, updated every iteration); "
        f"KL weight {plan.kl_weight}. BatchNorm momentum 0.1 (`tiny`).",
        "",
    ]
    if act:
        md += [
            f"Direct optimization moves a slice when z_eps ≠ z. Mean share of such slices over "
            f"{act['runs']} direct runs, per logged window: "
            + ", ".join(f"it {i}: {f:.2f}" for i, f in zip(act["iteration"], act["flip"]))
            + f". Last window with any: iteration {act['last_active_iteration']} of {plan.iters}.",
            "",
        ]
    md += [
        "![training curves](training_curves.png)",
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
            f"Grad-CAM++ of the true class on `Mixed_5c` for one test clip, one row per arm (seed "
            f"{plan.seeds[0]}, {plan.max_size} clips per class), recorded fixation drawn on top.",
            "",
            f"![Grad-CAM++]({figure})",
            "",
        ]
    if pre.is_file():
        md += [f"Pre-training log: `{pre.relative_to(out)}`.", ""]
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

    prepared, pre = _prepare_data(plan, out, log)
    base = _pretrain(plan, pre, out, log) if pre is not None else None
    data = PreparedData(prepared, cache=True)
    runs = plan_runs(plan)
    log(
        f"{len(runs)} fine-tuning runs ({len(plan.arms)} arms × {len(plan.sizes)} sizes × "
        f"{len(plan.seeds)} seeds, plus {len(plan.largest_only) * len(plan.seeds)} at the largest size)"
    )
    results = []
    bar = tqdm(runs, desc="demo", unit="run", disable=not progress, dynamic_ncols=True)
    for spec in bar:
        bar.set_postfix_str(spec.name)
        r = _run_one(spec, plan, data, prepared, out / "runs", base)
        results.append(r)
        if progress:
            tqdm.write(
                f"[demo] {spec.name}: mean class accuracy {100 * r['mean_class_accuracy']:.1f} %, "
                f"overall {100 * r['overall_accuracy']:.1f} % ({r['train_seconds']:.0f} s)"
            )
    bar.close()
    log("report")
    report = write_report(results, plan, out, data, command, time.perf_counter() - t0)
    log(f"done in {(time.perf_counter() - t0) / 60:.1f} min: {report}")
    return DemoResult(out, report, results, time.perf_counter() - t0)

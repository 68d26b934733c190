"""The demo's report: paired differences, accuracy per arm, power, curves, bias, Grad-CAM++.

Facts about the network and the schedules are read from the presets and the plan, never
written here, so that the report says what ran.
"""

from __future__ import annotations

import functools
import math
import shlex
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gaze_attention import fsio
from gaze_attention.constants import OPTIMIZER_LABELS
from gaze_attention.demo.plan import (
    BACKBONES_SUGGESTED,
    COMPARISONS,
    ESTIMATOR_ORDER,
    GUMBEL_ARM,
    GUMBEL_SEEDS_SUGGESTED,
    KL_FLAT_SHARE,
    POOLED_HALF_WIDTH,
    RISE_TARGET,
    SIZE_HALF_WIDTH,
    DemoPlan,
    backbone_out,
    backbone_seeds,
    finetune_preset,
    next_seeds,
    plan_runs,
    pretrain_pairs,
)
from gaze_attention.demo.runs import RunResult, pretrain_seconds
from gaze_attention.demo.statistics import (
    Interval,
    NoiseSplit,
    Spread,
    clip_sampling_se,
    noise_split,
    paired_interval,
    pairs_needed,
    spread,
    stein_interval,
    stein_pairs,
)

METRICS = ("mean_class_accuracy", "overall_accuracy", "gaze_exact_cell", "gaze_within_one_cell")


@dataclass(frozen=True)
class Summary:
    """table[size][arm][metric]: spread over seeds; paired[comparison][size or "pooled"]."""

    table: dict[str, dict[str, dict[str, Spread]]]
    paired: dict[str, dict[str, Interval]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": {
                n: {e: {k: s.to_dict() for k, s in m.items()} for e, m in arms.items()}
                for n, arms in self.table.items()
            },
            "paired": {c: {k: iv.to_dict() for k, iv in rows.items()} for c, rows in self.paired.items()},
        }


def _pairs(by: dict[tuple[str, int, int], RunResult], plan: DemoPlan, a: str, b: str, n: int
           ) -> list[tuple[RunResult, RunResult]]:  # fmt: skip
    """(run of arm a, run of arm b) for each seed at size n where both finished, in seed order."""
    return [(by[(a, n, s)], by[(b, n, s)]) for s in plan.seeds if (a, n, s) in by and (b, n, s) in by]


def summarise(results: list[RunResult], plan: DemoPlan) -> Summary:
    """Per size: each arm's mean +- std over seeds, and the paired differences with 95 % intervals.

    A pair is (seed, size) where both arms finished. `pooled` pools the pairs of every size.
    """
    by = {(r.estimator, r.per_class, r.seed): r for r in results}
    sizes = sorted(plan.sizes)
    arms = plan.all_arms()
    table: dict[str, dict[str, dict[str, Spread]]] = {}
    for n in sizes:
        table[str(n)] = {}
        for e in arms:
            rows = [by[(e, n, s)] for s in plan.seeds if (e, n, s) in by]
            if rows:
                table[str(n)][e] = {k: spread([getattr(r, k) for r in rows]) for k in METRICS}
    paired: dict[str, dict[str, Interval]] = {}
    for a, b in COMPARISONS:
        if a not in arms or b not in arms:
            continue
        key = f"{a} - {b}"
        paired[key] = {}
        # A two-stage design sets every width of the comparison it powers from its first stage.
        staged = plan.stage_one is not None and a in plan.arms and b in plan.arms
        first = set(plan.stage_one_seeds)
        pooled: list[float] = []
        pooled_first: list[float] = []
        for n in sizes:
            pairs = _pairs(by, plan, a, b, n)
            diffs = [ra.mean_class_accuracy - rb.mean_class_accuracy for ra, rb in pairs]
            # seeds in order, so the first stage's pairs come first
            firsts = [d for d, (ra, _) in zip(diffs, pairs) if ra.seed in first]
            if diffs or (a in plan.arms and b in plan.arms):  # a largest-only arm: its size alone
                paired[key][str(n)] = stein_interval(firsts, diffs) if staged else paired_interval(diffs)
            pooled += diffs
            pooled_first += firsts
        if len(paired[key]) > 1 or not paired[key]:  # pooling one size would repeat it
            paired[key]["pooled"] = stein_interval(pooled_first, pooled) if staged else paired_interval(pooled)
    return Summary(table, paired)


def stein_seeds(summary: Summary, plan: DemoPlan) -> int:
    """Seeds in all that Stein's two-stage rule asks of the comparisons run at every size for
    their target widths (±`SIZE_HALF_WIDTH` per size, ±`POOLED_HALF_WIDTH` over all: each seed
    gives one pair per size), from their first stage's pairs; at least the first stage's seeds."""
    need = len(plan.stage_one_seeds)
    sizes = len(plan.sizes)
    for a, b in COMPARISONS:
        if not (a in plan.arms and b in plan.arms):
            continue
        for k, iv in summary.paired.get(f"{a} - {b}", {}).items():
            n0 = iv.stage_one_n if iv.stage_one_n is not None else iv.n
            sd0 = iv.stage_one_sd if iv.stage_one_sd is not None else iv.sd
            if n0 < 2 or math.isnan(sd0):
                continue
            pairs = stein_pairs(100 * sd0, n0, _target(k))
            need = max(need, -(-pairs // sizes) if k == "pooled" else pairs)
    return need


def noise_table(results: list[RunResult], plan: DemoPlan) -> dict[str, dict[str, NoiseSplit]]:
    """Per comparison and size (and pooled), the paired differences' std split into test
    sampling and training (`statistics.noise_split`), where both runs of at least 2 pairs kept
    their per-clip results; the same pairs as `summarise`."""
    by = {(r.estimator, r.per_class, r.seed): r for r in results}
    arms = plan.all_arms()
    out: dict[str, dict[str, NoiseSplit]] = {}
    for a, b in COMPARISONS:
        if a not in arms or b not in arms:
            continue
        rows: dict[str, NoiseSplit] = {}
        pooled: tuple[list[float], list[float]] = ([], [])
        for n in sorted(plan.sizes):
            diffs, ses = [], []
            for ra, rb in _pairs(by, plan, a, b, n):
                if ra.test_correct is None or rb.test_correct is None:
                    continue
                if ra.test_labels != rb.test_labels:
                    raise ValueError(f"{ra.name} and {rb.name} were evaluated on different test clips")
                diffs.append(ra.mean_class_accuracy - rb.mean_class_accuracy)
                ses.append(clip_sampling_se(ra.test_correct, rb.test_correct, ra.test_labels or []))
            if len(diffs) > 1:
                rows[str(n)] = noise_split(diffs, ses, plan.test_per_class)
            pooled[0].extend(diffs)
            pooled[1].extend(ses)
        if len(rows) > 1 and len(pooled[0]) > 1:
            rows["pooled"] = noise_split(*pooled, plan.test_per_class)
        if rows:
            out[f"{a} - {b}"] = rows
    return out


def _pct(stat: Spread) -> str:
    if stat.n == 0 or math.isnan(stat.mean):
        return "–"
    return f"{100 * stat.mean:.1f} ± {100 * stat.std:.1f}"


def _points(x: float) -> str:
    """A difference of fractions in signed points, one decimal; a rounded zero is +0.0, never -0.0."""
    return f"{round(100 * x, 1) + 0.0:+.1f}"


def _ci(stat: Interval) -> str:
    if stat.n == 0:
        return "–"
    if stat.n == 1 or math.isnan(stat.low):
        return f"{_points(stat.mean)} (one pair)"
    return f"{_points(stat.mean)} [{_points(stat.low)}, {_points(stat.high)}]"


def _target(key: str) -> float:
    """The half-width a row's interval aims at: over all sizes ("pooled") or at one size."""
    return POOLED_HALF_WIDTH if key == "pooled" else SIZE_HALF_WIDTH


def _sign(iv: Interval) -> int:
    """+1 where the 95 % interval lies above 0, -1 below, 0 where it includes 0 (or is nan)."""
    return 1 if iv.low > 0 else -1 if iv.high < 0 else 0


def markdown_table(summary: Summary) -> str:
    lines = [
        "| clips/class | estimator | mean class accuracy (%) | overall accuracy (%) | gaze: exact cell (%) | gaze: within one cell (%) |",
        "|---|---|---|---|---|---|",
    ]
    for n, arms in summary.table.items():
        for e, row in arms.items():
            lines.append(
                f"| {n} | {e} | {_pct(row['mean_class_accuracy'])} | {_pct(row['overall_accuracy'])} | "
                f"{_pct(row['gaze_exact_cell'])} | {_pct(row['gaze_within_one_cell'])} |"
            )
    return "\n".join(lines)


def paired_table(summary: Summary) -> str:
    """One row per comparison and size: mean [95 % CI], pairs, half-width against its target."""
    lines = [
        "| comparison | clips/class | points, 95 % CI | pairs | half-width (target) |",
        "|---|---|---|---|---|",
    ]
    for comp, rows in summary.paired.items():
        for k, st in rows.items():
            half = f"{100 * st.half_width:.1f} (±{_target(k):g})" if st.n > 1 else "–"
            where = "all sizes" if k == "pooled" else k
            lines.append(f"| {comp} | {where} | {_ci(st)} | {st.n} | {half} |")
    return "\n".join(lines)


def verdict(summary: Summary) -> list[str]:
    """One sentence per comparison and size, read off the intervals (no judgement beyond them)."""
    out = []
    for comp, rows in summary.paired.items():
        for k, st in rows.items():
            if st.n < 2 or math.isnan(st.low):
                continue
            where = "over all sizes" if k == "pooled" else f"at {k} clips per class"
            word = {
                1: "better: the interval excludes 0",
                -1: "worse: the interval excludes 0",
                0: "no detectable difference: the interval includes 0",
            }[_sign(st)]
            out.append(f"- {comp} {where}: {100 * st.mean:+.1f} points, {word} ({st.n} pairs).")
    return out


def power(summary: Summary, noise: dict[str, dict[str, NoiseSplit]] | None = None) -> list[str]:
    """Whether each interval reached its target half-width, and the pairs it would need; with
    `noise` (`noise_table`), how much of the differences' std more test clips would remove."""
    out = []
    noise = noise or {}
    for comp, rows in summary.paired.items():
        for k, st in rows.items():
            if st.n < 2:
                continue
            target = _target(k)
            sd = 100 * st.sd
            ok = 100 * st.half_width <= target
            where = "all sizes" if k == "pooled" else f"{k} clips/class"
            if st.stage_one_n is not None and st.stage_one_sd is not None:
                sd0 = 100 * st.stage_one_sd
                need = stein_pairs(sd0, st.stage_one_n, target)
                std_text = (
                    f"the first stage's {st.stage_one_n} pairs have std {sd0:.1f} points, which sets the width "
                    f"(all {st.n} pairs: {sd:.1f}), so ±{target:g} needs {need} pairs (have {st.n})"
                )
            else:
                need = pairs_needed(sd, target)
                std_text = f"differences' std {sd:.1f} points, so ±{target:g} needs {need} pairs (have {st.n})"
            out.append(
                f"- {comp}, {where}: half-width {100 * st.half_width:.1f} points "
                f"({'meets' if ok else 'misses'} ±{target:g}); {std_text}."
            )
            split = noise.get(comp, {}).get(k)
            if split is not None:
                more = 4 * split.n_test_per_class
                sd4 = 100 * split.sd_with(more)
                of = "that std" if st.stage_one_n is None else f"the std over all {st.n} pairs"
                out[-1] += (
                    f" Of {of}, drawing the {split.n_test_per_class:g} test clips per class accounts for "
                    f"{100 * split.test_se:.1f} points (per pair, from the clips the arms disagree on) "
                    f"and training for {100 * split.training:.1f}: with {more:g} test clips per class the "
                    f"std would be about {sd4:.1f} ({pairs_needed(sd4, target)} pairs for ±{target:g})."
                )
    return out


def _option_value(command: str, flag: str) -> str | None:
    """The value given to `flag` in `command`, or None."""
    words = shlex.split(command)
    for i, w in enumerate(words):
        if w.startswith(flag + "="):
            return w[len(flag) + 1 :]
        if w == flag and i + 1 < len(words):
            return words[i + 1]
    return None


def without_option(command: str, flag: str) -> list[str]:
    """The words of `command` without `flag` and its values (the words up to the next option)."""
    kept, skip = [], False
    for w in shlex.split(command):
        if w == flag:
            skip = True
            continue
        if w.startswith(flag + "="):
            skip = False
            continue
        if skip and not w.startswith("-"):
            continue
        skip = False
        kept.append(w)
    return kept


def with_option(command: str, flag: str, values: list[str]) -> str:
    """`command` with `flag` and its values replaced (put at the end)."""
    return " ".join(shlex.quote(w) for w in [*without_option(command, flag), flag, *values])


def more_seeds(summary: Summary, plan: DemoPlan, results: list[RunResult], command: str,
               pretrain_seconds: float | None = None, backbones: list[Backbone] | None = None) -> list[str]:  # fmt: skip
    """The reruns that would bring each comparison to its target widths: for the comparisons at
    every size, `command` with the --max-seeds that Stein's two-stage rule asks for at the first
    stage's std; for the largest-size-only arm, more --gumbel-seeds at the std so far; the
    finished runs reused; how many runs each adds and about how long they
    take at this demo's pace; and, with a pre-trained backbone, the rerun that varies it (with
    `--backbones`, or another `--pretrain-seed` from a folder that is already another backbone's).
    Empty where the targets are met or no std can be measured."""
    if "--quick" in shlex.split(command):
        return []  # a check that it runs, without power by design: its rerun is the full demo
    out = []
    sizes = sorted(plan.sizes)
    took = [r.train_seconds + r.eval_seconds for r in results if r.train_seconds]

    def pace(runs: int, extra_s: float = 0.0) -> str:
        if not took:
            return ""
        minutes = round((runs * float(np.mean(took)) + extra_s) / 60)
        span = "under a minute" if minutes < 1 else f"about {minutes} minute{'s' if minutes > 1 else ''}"
        return f", {span} at this demo's pace"

    # With --backbones K the same reruns train on every backbone, so that they stay alike.
    n_backbones = len(backbones) if backbones is not None and len(backbones) > 1 else 1

    def each(runs: int) -> str:
        if n_backbones == 1:
            return pace(runs)
        return f" on each of the {n_backbones} backbones ({n_backbones * runs} runs{pace(n_backbones * runs)})"

    for a, b in COMPARISONS:
        comp = f"{a} - {b}"
        rows = summary.paired.get(comp, {})
        sd = {k: 100 * st.sd for k, st in rows.items() if st.n > 1}
        if not rows or len(sd) < len(rows):
            continue  # not run, or without two pairs somewhere: no std to plan with
        if a in plan.arms and b in plan.arms:
            # The two-stage rule, from the first stage's pairs (all of them in a fixed design):
            # seeds added until a t-interval met its width would give one that covers too little.
            need = stein_seeds(summary, plan)
            if need <= len(plan.seeds):
                continue
            runs = (need - len(plan.seeds)) * len(sizes) * len(plan.arms)
            rerun = with_option(command, "--max-seeds", [str(need)])
            first = len(plan.stage_one_seeds)
            what = (
                f"±{POOLED_HALF_WIDTH:g} over all sizes and ±{SIZE_HALF_WIDTH:g} at each (Stein's rule at "
                f"the std of the first {first} seeds' pairs asks for {need} seeds)"
            )
        elif b in plan.largest_only and str(plan.max_size) in rows:
            need = pairs_needed(sd[str(plan.max_size)], SIZE_HALF_WIDTH)  # seeds with b
            have = len(plan.largest_only_seed_list)
            if need <= have:
                continue
            total = max(need, len(plan.seeds))
            runs = (need - have) * len(plan.largest_only) + (total - len(plan.seeds)) * len(sizes) * len(plan.arms)
            rerun = with_option(command, "--seeds", [str(x) for x in next_seeds(plan.seeds, total)])
            rerun = with_option(rerun, "--gumbel-seeds", [str(need)])
            what = f"±{SIZE_HALF_WIDTH:g} at {plan.max_size} clips per class"
        else:
            continue
        out.append(
            f"- To bring {comp} to {what} (at the std measured so far): `{rerun}` reuses these runs "
            f"and trains {runs} more{each(runs)}."
        )
    if GUMBEL_ARM not in plan.all_arms() and "direct" in plan.arms:
        # Not run by default (it does not fit in the demo's 15 minutes beside direct - none).
        seeds = next_seeds(plan.seeds, GUMBEL_SEEDS_SUGGESTED)
        runs = GUMBEL_SEEDS_SUGGESTED + (len(seeds) - len(plan.seeds)) * len(sizes) * len(plan.arms)
        rerun = with_option(command, "--gumbel-seeds", [str(GUMBEL_SEEDS_SUGGESTED)])
        if len(seeds) > len(plan.seeds):
            rerun = with_option(rerun, "--seeds", [str(x) for x in seeds])
        out.append(
            f"- direct - {GUMBEL_ARM} (the estimator of Li et al., ECCV 2018) was not run: `{rerun}` "
            f"reuses these runs and trains {GUMBEL_ARM} at {plan.max_size} clips per class on the first "
            f"{GUMBEL_SEEDS_SUGGESTED} seeds, {runs} runs{each(runs)}."
        )
    if plan.pretrain:
        # The seeds vary fine-tuning only; another backbone moved the gaze effect by more than
        # they do (docs/recipes.md), so the report says so and names the rerun that varies it.
        # --backbones runs each backbone without a second stage: the first stage's seeds.
        runs = len(plan_runs(replace(plan, seeds=plan.stage_one_seeds)))
        first_only = (
            f" (its first {len(plan.stage_one_seeds)} seeds, as every backbone's)"
            if len(plan.stage_one_seeds) < len(plan.seeds)
            else ""
        )
        if backbones is not None and len(backbones) > 1:
            out.append(
                f"- Every interval in the table above is conditional on this one pre-trained backbone (seed "
                f"{plan.pretrain_seed}): the paired seeds vary fine-tuning, not pre-training; the section "
                f"across backbones below varies it too."
            )
        elif plan.pretrain_seed == DemoPlan.pretrain_seed:
            more = BACKBONES_SUGGESTED - 1
            rerun = with_option(command, "--backbones", [str(BACKBONES_SUGGESTED)])
            where = _option_value(command, "--out") or "demo_out"
            sibs = [backbone_out(where, x).name for x in backbone_seeds(plan.pretrain_seed, BACKBONES_SUGGESTED)[1:]]
            extra = more * (pretrain_seconds or 0.0)
            out.append(
                f"- Every interval here is conditional on this one pre-trained backbone (seed "
                f"{plan.pretrain_seed}): the paired seeds vary fine-tuning, not pre-training. `{rerun}` reuses "
                f"these runs, repeats the plan{first_only} on {more} more backbones beside this folder ({sibs[0]} to "
                f"{sibs[-1]}: {more} pre-trainings and {more * runs} runs{pace(more * runs, extra)}) and adds "
                f"the interval over the {BACKBONES_SUGGESTED} backbones to this report."
            )
        else:
            other = plan.pretrain_seed + 1
            where = _option_value(command, "--out") or "demo_out"
            rerun = with_option(with_option(command, "--pretrain-seed", [str(other)]), "--out", [str(backbone_out(where, other))])
            out.append(
                f"- Every interval here is conditional on this one pre-trained backbone (seed "
                f"{plan.pretrain_seed}): the paired seeds vary fine-tuning, not pre-training. `{rerun}` "
                f"repeats the plan on another backbone (its pre-training and {runs} runs{pace(runs, pretrain_seconds or 0.0)})."
            )
    return out


def learning(results: list[RunResult], plan: DemoPlan) -> dict[str, Any]:
    """Whether the runs use their data and their gaze: per arm, mean class accuracy at the
    largest size minus the smallest, seed by seed (`rise`: Interval); per arm and size, the
    training CE and KL to recorded gaze in the first and last logged windows (mean over seeds)
    and whether the KL settled (`kl_state`: "converged", "still falling", "rose in the last
    window" or "did not fall"; None for an arm without gaze)."""
    by = {(r.estimator, r.per_class, r.seed): r for r in results}
    sizes = sorted(plan.sizes)
    rise: dict[str, Interval] = {}
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        for e in plan.arms:
            diffs = [
                by[(e, hi, s)].mean_class_accuracy - by[(e, lo, s)].mean_class_accuracy
                for s in plan.seeds if (e, hi, s) in by and (e, lo, s) in by
            ]  # fmt: skip
            if diffs:
                rise[e] = paired_interval(diffs)
    curves: list[dict[str, Any]] = []
    for e in plan.all_arms():
        for n in sizes:
            ce, kl = _curve(results, e, n, "ce"), _curve(results, e, n, "kl")
            if ce is None or len(ce[0]) < 2:
                continue
            row: dict[str, Any] = {
                "estimator": e, "per_class": n, "iteration": list(ce[0]),
                "ce": [float(x) for x in ce[1]], "kl": None, "kl_state": None,
            }  # fmt: skip
            if e != "none" and kl is not None:
                k = [float(x) for x in kl[1]]
                fall, last = k[0] - k[-1], k[-2] - k[-1]
                if not fall > 0:
                    state = "did not fall"
                elif abs(last) < KL_FLAT_SHARE * fall:
                    state = "converged"
                else:
                    state = "still falling" if last > 0 else "rose in the last window"
                row.update(kl=k, kl_state=state)
            curves.append(row)
    return {"rise": rise, "curves": curves}


def learning_section(learn: dict[str, Any], plan: DemoPlan) -> list[str]:
    sizes = sorted(plan.sizes)
    out = ["## Do the runs learn from their data?", ""]
    if learn["rise"]:
        out += [
            f"Mean class accuracy at {sizes[-1]} clips per class minus at {sizes[0]}, seed by seed, points "
            f"(the design's target: `none` at least +{RISE_TARGET:g}, so that a run can use more data):",
            "",
        ]
        for e, iv in learn["rise"].items():
            judged = ""
            if e == "none" and iv.n > 0:
                judged = f": {'meets' if 100 * iv.mean >= RISE_TARGET else 'misses'} +{RISE_TARGET:g}"
            out.append(f"- {e}: {_ci(iv)} over {iv.n} seed{'s' if iv.n != 1 else ''}{judged}.")
        out.append("")
    if learn["curves"]:
        its = learn["curves"][0]["iteration"]
        out += [
            "Training cross-entropy and KL to recorded gaze in the first and last logged windows "
            f"(iterations up to {its[0]}, and {its[-2] + 1}–{its[-1]}), mean over seeds. The KL counts as "
            f"converged when its last window moved it by less than {100 * KL_FLAT_SHARE:.0f} % of its fall "
            "since the first.",
            "",
            "| arm | clips/class | training CE, first → last | KL, first → last | KL, last window's change | KL |",
            "|---|---|---|---|---|---|",
        ]
        for row in learn["curves"]:
            ce, kl = row["ce"], row["kl"]
            kl_text = f"{kl[0]:.2f} → {kl[-1]:.2f}" if kl else "–"
            change = f"{kl[-1] - kl[-2]:+.2f}" if kl else "–"
            out.append(
                f"| {row['estimator']} | {row['per_class']} | {ce[0]:.2f} → {ce[-1]:.2f} | {kl_text} | {change} | "
                f"{row['kl_state'] or '–'} |"
            )
        out.append("")
    return out


@dataclass(frozen=True)
class Backbone:
    """The plan's result on one pre-trained backbone: its seed, its demo folder, its summary."""

    seed: int
    out: Path
    summary: Summary


def across_backbones(backbones: list[Backbone]) -> dict[str, dict[str, dict[str, Interval]]]:
    """Per comparison and size (and "pooled"): `over` the t-interval over the backbones' mean
    paired differences (one value per backbone with a pair there; df = backbones - 1), and
    `all_pairs` every backbone's pairs pooled as if independent (they are not: pairs on one
    backbone share it, so that interval is too narrow wherever backbones differ)."""
    out: dict[str, dict[str, dict[str, Interval]]] = {}
    for comp in dict.fromkeys(c for b in backbones for c in b.summary.paired):
        keys = dict.fromkeys(k for b in backbones for k in b.summary.paired.get(comp, {}))
        for k in keys:
            got = [iv for b in backbones if (iv := b.summary.paired.get(comp, {}).get(k)) is not None and iv.n > 0]
            if got:
                out.setdefault(comp, {})[k] = {
                    "over": paired_interval([iv.mean for iv in got]),
                    "all_pairs": paired_interval([d for iv in got for d in iv.diffs]),
                }
    return out


def across_section(backbones: list[Backbone], across: dict[str, dict[str, dict[str, Interval]]], report: Path
                   ) -> list[str]:  # fmt: skip
    """The report's section on the plan repeated over pre-trained backbones."""
    import os

    k = len(backbones)
    links = ", ".join(
        f"{b.seed} (this report)" if b.out / "report" == report
        else f"[{b.seed}]({Path(os.path.relpath(b.out / 'report' / 'README.md', report)).as_posix()})"
        for b in backbones
    )  # fmt: skip
    heads = " | ".join(f"backbone {b.seed}" for b in backbones)
    out = [
        "## Across pre-trained backbones",
        "",
        f"The same plan on {k} backbones, each pre-trained with its own seed and fine-tuned with the "
        f"same paired seeds, each in its own folder with its own report (pre-training seeds {links}). "
        "Per backbone, the mean of its paired differences in points; over backbones, the mean of "
        f"those {k} means with its 95 % t-interval ({k - 1} degree{'s' if k > 2 else ''} of freedom), which covers drawing "
        "the backbone as well as the fine-tuning seeds. All pairs pools every backbone's pairs as "
        "if independent, which they are not: its interval is too narrow wherever backbones differ.",
        "",
        f"| comparison | clips/class | {heads} | over backbones, 95 % CI | half-width (target) | all pairs, 95 % CI |",
        "|---|---|" + "---|" * k + "---|---|---|",
    ]
    verdicts, powers = [], []
    for comp, rows in across.items():
        for key, ivs in rows.items():
            over, pooled = ivs["over"], ivs["all_pairs"]
            own = [b.summary.paired.get(comp, {}).get(key) for b in backbones]
            cells = [_points(iv.mean) if iv is not None and iv.n > 0 else "–" for iv in own]
            target = _target(key)
            half = f"{100 * over.half_width:.1f} (±{target:g})" if over.n > 1 else "–"
            where = "all sizes" if key == "pooled" else key
            out.append(f"| {comp} | {where} | {' | '.join(cells)} | {_ci(over)} | {half} | {_ci(pooled)} |")
            if over.n < 2:
                continue
            span = "over all sizes" if key == "pooled" else f"at {key} clips per class"
            word = {
                1: "better on average over backbones: the interval excludes 0",
                -1: "worse on average over backbones: the interval excludes 0",
                0: "no detectable difference over backbones: the interval includes 0",
            }[_sign(over)]
            signs = [_sign(iv) for iv in own if iv is not None and iv.n > 1]
            better, worse = signs.count(1), signs.count(-1)
            verdicts.append(
                f"- {comp} {span}: {_points(over.mean)} points, {word} ({over.n} backbones; the interval "
                f"of {better} of them alone is above 0, of {worse} below)."
            )
            need = pairs_needed(100 * over.sd, target)
            ok = 100 * over.half_width <= target
            powers.append(
                f"- {comp}, {'all sizes' if key == 'pooled' else key + ' clips/class'}: half-width over backbones "
                f"{100 * over.half_width:.1f} points ({'meets' if ok else 'misses'} ±{target:g}); the backbones' "
                f"means have std {100 * over.sd:.1f} points, so ±{target:g} needs {need} backbones (have {over.n})."
            )
    return [*out, "", *verdicts, "", "Power over backbones:", "", *powers, ""]


def activity(results: list[RunResult]) -> dict[str, Any]:
    """Direct optimization's activity over iterations: mean share of flipped slices, and eps."""
    rows = [r for r in results if r.estimator == "direct" and r.history]
    if not rows:
        return {}
    its = [h["iteration"] for h in rows[0].history]
    same = [r for r in rows if [h["iteration"] for h in r.history] == its]
    flip = np.array([[h.get("flip", math.nan) for h in r.history] for r in same], dtype=float)
    mean = np.nanmean(flip, 0)
    active = [it for it, f in zip(its, mean) if f > 0]
    return {
        "iteration": its,
        "flip": [float(x) for x in mean],
        "eps": [float(h["eps"]) for h in same[0].history],
        "last_active_iteration": int(active[-1]) if active else None,
        "runs": len(same),
    }


def _curve(
    results: list[RunResult], estimator: str, size: int, key: str
) -> tuple[list[int], np.ndarray] | None:
    rows = [r for r in results if r.estimator == estimator and r.per_class == size and r.history]
    if not rows:
        return None
    its = [h["iteration"] for h in rows[0].history]
    series = [[h.get(key, math.nan) for h in r.history] for r in rows if len(r.history) == len(its)]
    return its, np.nanmean(np.array(series, dtype=float), 0)


def _plot_accuracy(plt: Any, summary: Summary, plan: DemoPlan, path: Path) -> None:
    """Accuracy against clips per class, each arm with a 95 % t-interval of its mean over seeds."""
    sizes = sorted(plan.sizes)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for e in ESTIMATOR_ORDER:
        pts = [
            (n, summary.table[str(n)][e]["mean_class_accuracy"]) for n in sizes if e in summary.table[str(n)]
        ]
        if pts:
            ax.errorbar(
                [n for n, _ in pts], [100 * s.mean for _, s in pts], yerr=[100 * s.half_width for _, s in pts],
                marker="o", capsize=4, label=e,
            )  # fmt: skip
    ax.axhline(100 / plan.classes, color="grey", ls="--", lw=1, label="chance")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel("training clips per class")
    ax.set_ylabel("mean class accuracy (%)")
    ax.set_title(f"test accuracy, mean and 95 % CI over {len(plan.seeds)} seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with fsio.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _plot_paired(plt: Any, summary: Summary, path: Path) -> None:
    """Paired differences per size: seeds as dots, mean and 95 % CI as error bars."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    keys = sorted({k for rows in summary.paired.values() for k in rows if k != "pooled"}, key=int)
    for j, (comp, rows) in enumerate(summary.paired.items()):
        for i, n in enumerate(keys):
            if n not in rows:
                continue
            st, x = rows[n], i + (j - 0.5) * 0.25
            ax.scatter(np.full(len(st.diffs), x), 100 * np.array(st.diffs), s=10, alpha=0.4, color=f"C{j}")
            yerr = 100 * st.half_width if st.n > 1 else 0
            ax.errorbar([x], [100 * st.mean], yerr=[yerr], fmt="o", capsize=5, color=f"C{j}", label=comp)
    ax.axhline(0, color="grey", lw=1)
    ax.set_xticks(np.arange(len(keys)), keys)
    ax.set_xlabel("training clips per class")
    ax.set_ylabel("paired difference (points)")
    ax.set_title("paired differences in mean class accuracy, 95 % CI (dots: seeds)")
    handles, labels = ax.get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    ax.legend(seen.values(), seen.keys(), fontsize=8)
    fig.tight_layout()
    with fsio.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _plot_training(plt: Any, results: list[RunResult], plan: DemoPlan, path: Path) -> None:
    """Training CE and KL to gaze per arm and size (mean over seeds), and direct's activity."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for e in ESTIMATOR_ORDER:
        for n, ls in zip(sorted(plan.sizes), ("--", "-", ":")):
            for ax, key in zip(axes[:2], ("ce", "kl")):
                got = _curve(results, e, n, key)
                if got is not None:
                    ax.plot(*got, ls=ls, color=f"C{ESTIMATOR_ORDER.index(e)}", label=f"{e}, {n}/class")
    axes[0].set_title("training cross-entropy")
    axes[1].set_title("KL to recorded gaze")
    act = activity(results)
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
        ax.legend(fontsize=7)
    fig.tight_layout()
    with fsio.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plots(results: list[RunResult], summary: Summary, plan: DemoPlan, report: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _plot_accuracy(plt, summary, plan, report / "accuracy.png")
    made = ["accuracy.png"]
    if summary.paired:
        _plot_paired(plt, summary, report / "paired_differences.png")
        made.append("paired_differences.png")
    _plot_training(plt, results, plan, report / "training_curves.png")
    return made + ["training_curves.png"]


@functools.cache
def _bias_table(draws: int) -> dict[str, Any]:
    """The estimators' bias table (seeded, so the same for every report of a process: a
    `--backbones` run writes K + 1 of them; about 4 s each at 50000 draws)."""
    from gaze_attention.bias import bias_table

    return bias_table(draws=draws, seeds=(0, 1, 2))


def bias_section(plan: DemoPlan) -> tuple[str, dict[str, Any]]:
    table = _bias_table(plan.bias_draws)
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


def gradcam_figure(results: list[RunResult], data: Any, plan: DemoPlan, report: Path) -> str | None:
    from gaze_attention.data import ClipDataset
    from gaze_attention.engine.checkpoint import load_model
    from gaze_attention.viz import render_comparison

    models = {}
    for e in ESTIMATOR_ORDER:
        rows = [
            r for r in results
            if r.estimator == e and r.per_class == plan.max_size and r.seed == plan.seeds[0] and r.checkpoint
        ]  # fmt: skip
        if rows:
            models[e], _, _ = load_model(rows[0].checkpoint)
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


def _network_text() -> str:
    import dataclasses

    from gaze_attention.models.backbone import TwoStreamI3D
    from gaze_attention.models.gaze_attention import PRESETS
    from gaze_attention.models.i3d import INCEPTION_CHANNELS

    c = dataclasses.replace(PRESETS["tiny"], **finetune_preset().model.overrides())
    t, s = c.grid
    keys = TwoStreamI3D.resolve(c.backbone_config)
    mixed = keys["mixed"]
    modules = (
        "" if len(mixed) == len(INCEPTION_CHANNELS)
        else f", {len(mixed)} of I3D's {len(INCEPTION_CHANNELS)} Inception modules per stream ({', '.join(mixed)})"
    )  # fmt: skip
    if keys["stem_stride"] != TwoStreamI3D.defaults["stem_stride"]:
        modules += f", the stem convolution at spatial stride {keys['stem_stride']} without the max-pool after it"
    if keys["stem_temporal_kernel"] != TwoStreamI3D.defaults["stem_temporal_kernel"]:
        modules += f", the stem {keys['stem_temporal_kernel']} frames deep"
    return (
        f"`tiny` network ({c.frames} frames, {c.crop}×{c.crop}, T' = {t}, S = {s}, width {c.width:g} "
        f"of the paper's channels{modules}, two-stream with DIS flow, BatchNorm momentum {c.bn_momentum:g})"
    )


def _schedule_text(plan: DemoPlan) -> str:
    optim = finetune_preset().optim
    name = OPTIMIZER_LABELS.get(optim.optimizer, optim.optimizer)
    return (
        f"lr {plan.lr} ({name}, momentum {optim.momentum:g}) after {plan.warmup} warm-up iterations, "
        f"×{optim.gamma:g} at iterations {plan.milestones()}; eps falls log-linearly from 1000 to "
        f"{plan.eps_min:g} over the whole run (`estimator.eps_end: 1.0`, updated every iteration); "
        f"KL weight {plan.kl_weight}; the `tiny-finetune` preset."
    )


def write_report(
    results: list[RunResult], plan: DemoPlan, out: Path, data: Any, command: str, seconds: float,
    machine: dict[str, Any] | None = None, backbones: list[Backbone] | None = None,
) -> Path:  # fmt: skip
    """OUT/report: README.md, results.json and the figures. `backbones`: this plan's result on
    every backbone of a `--backbones` run, this one first (adds the section across them)."""
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    summary = summarise(results, plan)
    noise = noise_table(results, plan)
    figures = plots(results, summary, plan, report)
    bias_md, bias = bias_section(plan)
    figure = gradcam_figure(results, data, plan, report) if plan.figure else None
    act = activity(results)
    learn = learning(results, plan)
    pre = out / "pretrain" / "pretrain.json"
    pre_seconds = pretrain_seconds(out)
    across = across_backbones(backbones) if backbones and len(backbones) > 1 else {}
    payload = {
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "seconds": seconds,
        "machine": machine or {},
        "plan": asdict(plan),
        "finetune": plan.finetune_overrides(),
        "pretrain": plan.pretrain_overrides() if plan.pretrain else None,
        "summary": summary.to_dict(),
        "noise": {
            c: {k: {"sd": v.sd, "test_se": v.test_se, "training": v.training} for k, v in rows.items()}
            for c, rows in noise.items()
        },
        "direct_activity": act,
        "learning": {
            "rise": {e: iv.to_dict() for e, iv in learn["rise"].items()},
            "curves": learn["curves"],
        },
        "across_backbones": {
            "backbones": [{"seed": b.seed, "out": str(b.out)} for b in backbones or []] if across else [],
            "paired": {
                c: {k: {name: iv.to_dict() for name, iv in ivs.items()} for k, ivs in rows.items()}
                for c, rows in across.items()
            },
        },
        "bias": bias,
        "runs": [r.to_dict(history=False, clips=False) for r in results],  # clips: each run's result.json
    }
    fsio.write_json(report / "results.json", payload)  # strict JSON: NaN as null
    next_steps = more_seeds(summary, plan, results, command, pre_seconds, backbones)
    md = _markdown(summary, noise, next_steps, plan, payload, bias_md, act, figure, figures, out, pre)
    if across:
        at = md.index("## Accuracy per arm (mean ± std over seeds)")
        md[at:at] = across_section(list(backbones or []), across, report)
    at = md.index("## Training, and how long direct optimization acts")
    md[at:at] = learning_section(learn, plan)
    path = report / "README.md"
    fsio.write_text(path, "\n".join(md))
    return path


def _fewer_threads_text(runs: list[dict[str, Any]], threads: int, fixed: int | None = None) -> str:
    """Which runs trained on fewer threads than the machine has (the demo chose 1 thread where
    other processes held cores): they took longer, and their times say so. `fixed`: the
    threads --threads gave every run."""
    if fixed is not None:
        return f"; every run on {fixed} thread{'s' if fixed != 1 else ''} (--threads)"
    fewer = [r for r in runs if r.get("threads") is not None and r["threads"] < threads]
    if not fewer:
        return ""
    counts = sorted({r["threads"] for r in fewer})
    return (
        f"; {len(fewer)} of {len(runs)} runs trained on {' or '.join(map(str, counts))} "
        f"thread{'s' if counts != [1] else ''}, chosen where other processes held cores when they started"
    )


def _run_time_text(runs: list[dict[str, Any]], seconds: float) -> str:
    """What the runs cost in all, when earlier invocations of the demo trained some of them (a
    resumed or extended demo): this invocation's minutes alone would understate the demo."""
    total = sum((r.get("train_seconds") or 0.0) + (r.get("eval_seconds") or 0.0) for r in runs)
    if total <= seconds:
        return ""
    return (
        f"; its {len(runs)} fine-tuning runs, some finished by an earlier invocation with the same "
        f"--out, took {total / 60:.1f} minutes of training and evaluation in all"
    )


def _design_text(plan: DemoPlan, need: int) -> str:
    """How the number of seeds was chosen: fixed, or by the two-stage rule (and its cap, which
    stopped it where `need`, the seeds the rule asks for, is more than the plan ran)."""
    if plan.stage_one is None:
        return ""
    first = plan.stage_one
    if len(plan.seeds) == first:
        return (
            f" Two-stage design (Stein 1945): the first {first} seeds were the first stage, and their "
            "pairs met the targets, so no seeds were added."
        )
    capped = f", capped at --max-seeds {len(plan.seeds)}: the rule asks for {need}" if need > len(plan.seeds) else ""
    return (
        f" Two-stage design (Stein 1945): the first {first} seeds were the first stage; at their pairs' "
        f"std the targets asked for more, so the demo trained seeds {plan.seeds[first]} to "
        f"{plan.seeds[-1]} too ({len(plan.seeds)} in all{capped}). Each direct - none interval is "
        "two-stage: the mean of its N pairs ± t(n0 − 1) · sd0 / √N, where sd0 is the std of the n0 "
        "pairs of the first stage. It covers 95 % for normal differences whatever sd0 came out; a "
        "t-interval over all the pairs would cover less, because their number depended on their std."
    )


def _markdown(
    summary: Summary, noise: dict[str, dict[str, NoiseSplit]], next_steps: list[str], plan: DemoPlan,
    payload: dict[str, Any], bias_md: str, act: dict[str, Any],
    figure: str | None, figures: list[str], out: Path, pre: Path,
) -> list[str]:  # fmt: skip
    pre_text = (
        f"The backbone is pre-trained once, without gaze, on a disjoint synthetic set of "
        f"{len(pretrain_pairs(plan.classes))} other actions (every motion with the objects the "
        f"fine-tuning classes do not use; {plan.pretrain_per_class} clips each, other sessions), "
        f"{plan.pretrain_iters} iterations, {OPTIMIZER_LABELS[plan.pretrain_optimizer]} at lr {plan.pretrain_lr}, "
        f"seed {plan.pretrain_seed}; every arm then starts from it, as the paper's arms start from a "
        "Kinetics-initialised I3D. "
        if plan.pretrain
        else "Every arm trains from scratch. "
    )
    machine = payload["machine"]
    where = (
        f" on {machine['cpu']} ({machine['threads']} thread{'s' if machine['threads'] != 1 else ''}, fp32 matmul {machine['fp32_gflops']:.0f} GFLOP/s, "
        f"load average {machine['load']}{_fewer_threads_text(payload['runs'], machine['threads'], plan.threads)})"
        if machine
        else ""
    )
    largest = ""
    if plan.largest_only:
        largest = f"; {', '.join(plan.largest_only)} at {plan.max_size} only"
        if plan.largest_only_seed_list != plan.seeds:
            largest += f", seeds {list(plan.largest_only_seed_list)}"
    md = [
        "# Gaze-Attention demo report",
        "",
        f"`{payload['command']}` — {payload['date']}, {payload['seconds'] / 60:.1f} minutes{where}"
        + _run_time_text(payload["runs"], payload["seconds"])
        + ".",
        "",
        f"Synthetic EGTEA-layout set: {plan.classes} actions (verb = motion pattern × noun = handled "
        f"object), {plan.test_per_class} test clips per class; the handled object is held by a "
        "visible hand among distractors of the same kinds, gaze mostly on it with saccades, blinks "
        f"and noise. {_network_text()}. {pre_text}"
        f"Fine-tuning: {plan.iters} iterations of batch {plan.batch_size} per run; arms "
        f"{', '.join(plan.arms)} at {', '.join(map(str, sorted(plan.sizes)))} clips per class{largest}; "
        f"seeds {list(plan.seeds)}, paired: seed s gives every arm the same training clips (a seeded subset "
        "of the largest set), data order, augmentation and head initialisation. Test: all "
        "non-overlapping windows, centre crop, gaze = argmax of the predicted distribution (no "
        "recorded gaze at test time). Mean class accuracy counts classes present in the test split; "
        f"chance is {100 / plan.classes:.1f} %.",
        "",
        "## Does gaze help? Paired differences",
        "",
        "Mean class accuracy of the first arm minus the second, seed by seed, in points; mean and "
        f"95 % t-interval over the pairs. Targets: ±{POOLED_HALF_WIDTH:g} points over all sizes, "
        f"±{SIZE_HALF_WIDTH:g} per size.{_design_text(plan, stein_seeds(summary, plan))}",
        "",
        paired_table(summary),
        "",
        *verdict(summary),
        "",
        "Power:",
        "",
        *power(summary, noise),
        *next_steps,
        "",
        "![paired differences](paired_differences.png)",
        "",
        "## Accuracy per arm (mean ± std over seeds)",
        "",
        markdown_table(summary),
        "",
        "Gaze columns: share of test slices whose predicted cell is the fixated cell (exact) or "
        "within one cell of it; `none` predicts no gaze.",
        "",
        "![accuracy](accuracy.png)",
        "",
        "## Training, and how long direct optimization acts",
        "",
        _schedule_text(plan),
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
    return md

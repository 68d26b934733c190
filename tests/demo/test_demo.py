"""The demo: its run plan, paired statistics, and the quick demo end to end (the project's
main job on a fresh machine)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from PIL import Image

from gaze_attention.demo import (
    DemoPlan,
    RunResult,
    paired_interval,
    plan_runs,
    pretrain_pairs,
    run_demo,
    spread,
    summarise,
    t975,
    verdict,
)
from gaze_attention.demo.report import _fewer_threads_text, _run_time_text, more_seeds, noise_table, power
from gaze_attention.demo.statistics import (
    clip_sampling_se,
    noise_split,
    pairs_needed,
    stein_interval,
    stein_pairs,
)


def test_full_plan_pairs_none_and_direct_at_every_size() -> None:
    plan = DemoPlan()
    runs = plan_runs(plan)
    assert len(plan.seeds) >= 6 and len(plan.sizes) >= 2  # 12 pairs for +-3 at the std measured
    assert max(plan.sizes) >= 5 * min(plan.sizes)  # enough range for accuracy to rise with data
    assert len({r.name for r in runs}) == len(runs)
    for n in plan.sizes:
        for arm in ("none", "direct"):
            assert sorted(r.seed for r in runs if r.estimator == arm and r.per_class == n) == list(plan.seeds)
    # gumbel_softmax only with --gumbel-seeds: it does not fit in 15 minutes beside direct - none
    assert not any(r.estimator == "gumbel_softmax" for r in runs) and plan.all_arms() == ["none", "direct"]
    assert len(runs) == 2 * len(plan.sizes) * len(plan.seeds)
    # Seeds outermost: every prefix of the runs that ends a seed holds whole pairs.
    firsts = [next(i for i, r in enumerate(runs) if r.seed == s) for s in plan.seeds]
    assert firsts == sorted(firsts)


def test_largest_only_arms_run_on_the_first_seeds_only() -> None:
    plan = DemoPlan(seeds=(3, 1, 4, 5), largest_only=("gumbel_softmax",), largest_only_seeds=2)
    gs = [(r.seed, r.per_class) for r in plan_runs(plan) if r.estimator in plan.largest_only]
    assert gs == [(3, max(plan.sizes)), (1, max(plan.sizes))]
    every = DemoPlan(seeds=(3, 1), largest_only=("gumbel_softmax",))  # None: all seeds
    assert [r.seed for r in plan_runs(every) if r.estimator == "gumbel_softmax"] == [3, 1]


def test_gumbel_seeds_option_adds_the_arm(tmp_path) -> None:
    from unittest import mock

    from gaze_attention.cli import main as cli_main

    seen = {}

    def fake(out, quick=False, **kw):  # type: ignore[no-untyped-def]
        seen.update(kw, quick=quick)
        raise ValueError("stop here")

    with mock.patch("gaze_attention.demo.run_demo", side_effect=fake):
        assert cli_main(["demo", "--out", str(tmp_path), "--gumbel-seeds", "6"]) == 2
        assert seen["largest_only"] == ("gumbel_softmax",) and seen["largest_only_seeds"] == 6
        seen.clear()
        cli_main(["demo", "--out", str(tmp_path), "--quick", "--gumbel-seeds", "6"])
        assert seen["quick"] and "largest_only" not in seen  # --quick trains it everywhere already


def _finished_pretraining(out, plan: DemoPlan):  # type: ignore[no-untyped-def]
    """OUT/pretrain as a finished pre-training with `plan` leaves it (a stand-in weights file)."""
    from gaze_attention.demo import runs as demo_runs
    from gaze_attention.engine.config import save_config

    folder = out / "pretrain"
    (folder / "run").mkdir(parents=True, exist_ok=True)
    (folder / "backbone_base.pt").write_bytes(b"weights")
    save_config(demo_runs.pretrain_config(plan, out / "pre", out), folder / "run" / "config.yaml")
    return folder


def test_pretrain_seed_option_draws_another_backbone(tmp_path) -> None:
    from unittest import mock

    import yaml

    from gaze_attention.cli import main as cli_main
    from gaze_attention.demo import runs as demo_runs

    seen = {}

    def fake(out, quick=False, **kw):  # type: ignore[no-untyped-def]
        seen.update(kw)
        raise ValueError("stop here")

    with mock.patch("gaze_attention.demo.run_demo", side_effect=fake):
        cli_main(["demo", "--out", str(tmp_path), "--pretrain-seed", "0"])
    assert seen["pretrain_seed"] == 0  # 0 is a seed, not "unset"
    seen.clear()
    with mock.patch("gaze_attention.demo.run_demo", side_effect=fake):
        assert cli_main(["demo", "--out", str(tmp_path), "--pretrain-seed", "3", "--no-pretrain"]) == 2
    assert not seen  # refused before anything runs
    # the pre-training trains with it, and a backbone of another seed in --out is refused naming it
    plan = DemoPlan(pretrain_seed=7)
    trained = {}

    def fake_train(cfg, **kw):  # type: ignore[no-untyped-def]
        trained["seed"] = cfg.run.seed
        raise KeyboardInterrupt

    with (
        mock.patch("gaze_attention.engine.train.train", side_effect=fake_train),
        mock.patch("gaze_attention.data.memory.MemoryData"),
        pytest.raises(KeyboardInterrupt),
    ):
        demo_runs.pretrain(plan, tmp_path / "pre", tmp_path, print)
    assert trained["seed"] == 7
    folder = _finished_pretraining(tmp_path, DemoPlan())
    assert yaml.safe_load((folder / "run" / "config.yaml").read_text())["run"]["seed"] == 12345
    with pytest.raises(ValueError, match=r"other settings \(run.seed: 12345, now 7\)"):
        demo_runs.pretrain(plan, tmp_path / "pre", tmp_path, print)


def test_finetune_schedule_keeps_direct_optimization_alive_to_the_end() -> None:
    from gaze_attention.engine.config import load_config
    from gaze_attention.engine.train import eps_at

    plan = DemoPlan()
    cfg = load_config("tiny", plan.finetune_overrides())
    eps = [eps_at(cfg, i) for i in range(plan.iters)]
    assert eps[0] == 1000.0 and all(a > b for a, b in zip(eps, eps[1:]))  # falls every iteration
    assert eps[-1] > plan.eps_min  # reaches its floor only at the very end
    assert cfg.optim.milestones == (round(plan.iters * 8 / 18), round(plan.iters * 15 / 18))


def test_demo_fine_tunes_with_the_preset_defaults() -> None:
    """The demo's fine-tuning runs are what `train --preset tiny-finetune` does."""
    from gaze_attention.engine.config import load_config

    preset = load_config("tiny-finetune")
    demo = load_config("tiny-finetune", DemoPlan().finetune_overrides())
    assert demo == preset


def test_demo_pretrains_without_gaze_with_its_own_optimizer() -> None:
    """Pre-training is `tiny` shortened, without gaze, with the plan's optimizer and lr."""
    from gaze_attention.engine.config import load_config

    plan = DemoPlan()
    pre = load_config("tiny", plan.pretrain_overrides())
    assert (
        (pre.optim.optimizer, pre.optim.lr) == ("sgd", 0.005) == (plan.pretrain_optimizer, plan.pretrain_lr)
    )
    assert pre.estimator.name == "none" and pre.optim.iters == plan.pretrain_iters == 300


def test_pretraining_classes_are_disjoint_from_the_demo_classes() -> None:
    from gaze_attention.data.synthetic import class_pairs

    for classes in (4, 6):
        pre = pretrain_pairs(classes)
        mine = class_pairs(classes)
        assert not set(pre) & set(mine)
        assert not {n for _, n in pre} & {n for _, n in mine}  # other objects altogether
        assert len(pre) >= 12


def test_t_quantiles() -> None:
    assert t975(1) == pytest.approx(12.706)
    assert t975(4) == pytest.approx(2.776)
    assert t975(30) == pytest.approx(2.042)
    assert t975(60) == pytest.approx(2.000, abs=2e-3)
    assert t975(1000) == pytest.approx(1.962, abs=2e-3)
    assert math.isnan(t975(0))


def test_paired_interval() -> None:
    st = paired_interval([0.01, 0.02, 0.03])
    assert st.mean == pytest.approx(0.02)
    half = 4.303 * 0.01 / math.sqrt(3)
    assert st.low == pytest.approx(0.02 - half) and st.high == pytest.approx(0.02 + half)
    assert st.n == 3
    one = paired_interval([0.1])
    assert one.mean == pytest.approx(0.1) and math.isnan(one.low)


def test_paired_interval_by_hand() -> None:
    # d = 0.10, -0.05, 0.20, 0.00: mean 0.0625; squared deviations 0.00140625, 0.01265625,
    # 0.01890625, 0.00390625 sum to 0.036875, so s = sqrt(0.036875 / 3) = 0.110868; the
    # half-width is t(3) s / sqrt(4) = 3.182 * 0.110868 / 2 = 0.176391.
    st = paired_interval([0.10, -0.05, 0.20, 0.00])
    assert st.mean == pytest.approx(0.0625)
    assert st.half_width == pytest.approx(0.176391, abs=1e-6)
    assert (st.low, st.high) == pytest.approx((0.0625 - 0.176391, 0.0625 + 0.176391), abs=1e-6)
    assert st.diffs == (0.10, -0.05, 0.20, 0.00)


def test_pairs_needed_matches_the_t_interval() -> None:
    # sd 12 points, target +-6: n = 18 is the first with 2.110 * 12 / sqrt(18) = 5.97 <= 6
    # (n = 17: 2.120 * 12 / sqrt(17) = 6.17).
    assert pairs_needed(12.0, 6.0) == 18
    assert pairs_needed(0.0, 3.0) == 2


def test_spread() -> None:
    sp = spread([0.5, None, 0.7])
    assert (sp.mean, sp.n) == (pytest.approx(0.6), 2)
    assert sp.std == pytest.approx(math.sqrt(0.02))
    assert sp.half_width == pytest.approx(12.706 * math.sqrt(0.02) / math.sqrt(2))
    assert spread([None]).n == 0


def test_clip_sampling_se_by_hand() -> None:
    # d = a - b = 1, 0 | 0, 1 over classes 0 | 1: each class has var(d) = 0.5 (ddof 1) over
    # 2 clips, so var = (0.5 / 2 + 0.5 / 2) / 2^2 = 0.125 and the SE is sqrt(0.125) = 0.35355.
    se = clip_sampling_se([1, 0, 1, 1], [0, 0, 1, 0], [0, 0, 1, 1])
    assert se == pytest.approx(math.sqrt(0.125))
    # two arms right and wrong on the same clips: drawing other clips cannot separate them
    assert clip_sampling_se([1, 0, 1, 0], [1, 0, 1, 0], [0, 0, 1, 1]) == 0.0
    with pytest.raises(ValueError, match="equal-length"):
        clip_sampling_se([1, 0], [1], [0, 0])


def test_clip_sampling_se_matches_redrawn_test_sets() -> None:
    """The SE from one test set is the spread of the paired difference over test sets drawn
    anew from the same population (two fixed models, classes of unequal difficulty)."""
    rng = np.random.default_rng(0)
    k, n = 4, 40
    p_a = np.array([0.8, 0.6, 0.4, 0.3])  # per-class chance that model a is right
    p_b = np.array([0.6, 0.6, 0.3, 0.3])
    labels = np.repeat(np.arange(k), n)

    def draw() -> tuple[np.ndarray, np.ndarray]:
        u = rng.random(labels.size)  # shared: the models agree on easy clips
        v = rng.random(labels.size)
        a = (u < p_a[labels]).astype(int)
        b = np.where(v < 0.5, u < p_b[labels], v < 0.5 + 0.5 * p_b[labels]).astype(int)
        return a, b

    diffs, ses = [], []
    for _ in range(3000):
        a, b = draw()
        diffs.append(np.mean([a[labels == c].mean() - b[labels == c].mean() for c in range(k)]))
        ses.append(clip_sampling_se(a, b, labels))
    assert np.mean(ses) == pytest.approx(np.std(diffs), rel=0.05)


def test_noise_split_by_hand() -> None:
    # diffs 0.0, 0.1: std 0.0707107; per-pair SEs 0.03, 0.04: rms 0.0353553; training
    # sqrt(0.005 - 0.00125) = 0.0612372; with 4x the test clips the test part halves:
    # sqrt(0.00375 + 0.00125 / 4) = 0.0637377.
    split = noise_split([0.0, 0.1], [0.03, 0.04], 40)
    assert split.sd == pytest.approx(0.0707107, abs=1e-6)
    assert split.test_se == pytest.approx(0.0353553, abs=1e-6)
    assert split.training == pytest.approx(0.0612372, abs=1e-6)
    assert split.sd_with(160) == pytest.approx(0.0637377, abs=1e-6)
    assert noise_split([0.0, 0.0], [0.05, 0.05], 40).training == 0.0  # never imaginary
    with pytest.raises(ValueError, match="at least 2 pairs"):
        noise_split([0.1], [0.01], 40)


def _row(e: str, n: int, s: int, acc: float) -> RunResult:
    return RunResult(
        name=f"{e}-n{n}-s{s}", estimator=e, seed=s, per_class=n, mean_class_accuracy=acc, overall_accuracy=acc,
        verb_accuracy=None, noun_accuracy=None, gaze_within_one_cell=None if e == "none" else 0.5,
        gaze_exact_cell=None if e == "none" else 0.25, train_seconds=0.0, eval_seconds=0.0, checkpoint=None,
    )  # fmt: skip


def test_summary_pairs_arms_seed_by_seed() -> None:
    plan = DemoPlan(sizes=(4, 10), seeds=(0, 1, 2), largest_only=())
    rows = []
    # seed effects far larger than the arm effect: only a paired comparison sees +5 points
    for s, base in zip(plan.seeds, (0.3, 0.6, 0.9)):
        for n in plan.sizes:
            rows += [
                _row("none", n, s, base),
                _row("direct", n, s, base + 0.05),
                _row("gumbel_softmax", n, s, base),
            ]
    rows = [r for r in rows if not (r.estimator == "none" and r.per_class == 10 and r.seed == 2)]
    summary = summarise(rows, plan)
    dn = summary.paired["direct - none"]
    assert dn["4"].mean == pytest.approx(0.05) and dn["4"].n == 3
    assert dn["4"].low == pytest.approx(0.05) and dn["4"].high == pytest.approx(0.05)  # no spread
    assert dn["10"].n == 2  # the seed without a `none` run has no pair
    assert dn["pooled"].n == 5
    assert summary.table["4"]["none"]["mean_class_accuracy"].std == pytest.approx(0.3)
    assert summary.table["4"]["none"]["gaze_exact_cell"].n == 0
    lines = verdict(summary)
    assert any("direct - none at 4 clips per class: +5.0 points, better" in line for line in lines)


def test_noise_table_uses_the_runs_per_clip_results() -> None:
    plan = DemoPlan(sizes=(4,), seeds=(0, 1, 2), largest_only=(), test_per_class=2)
    labels = [0, 0, 1, 1]
    right = {"none": ([1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 0, 0]), "direct": ([1, 1, 1, 0], [0, 0, 1, 1], [1, 1, 1, 1])}
    rows = []
    for e, per_seed in right.items():
        for s, correct in enumerate(per_seed):
            y = np.array(correct)
            acc = float(np.mean([y[:2].mean(), y[2:].mean()]))
            rows.append(RunResult(**{**_row(e, 4, s, acc).__dict__, "test_correct": correct, "test_labels": labels}))
    split = noise_table(rows, plan)["direct - none"]["4"]
    ses = [clip_sampling_se(right["direct"][s], right["none"][s], labels) for s in range(3)]
    assert split.test_se == pytest.approx(math.sqrt(np.mean(np.square(ses))))
    assert split.sd == pytest.approx(np.std([0.25, 0.0, 0.5], ddof=1))
    assert "accounts for" in "".join(power(summarise(rows, plan), noise_table(rows, plan)))
    rows[0] = RunResult(**{**rows[0].__dict__, "test_labels": [1, 1, 0, 0]})
    with pytest.raises(ValueError, match="different test clips"):
        noise_table(rows, plan)
    # runs made before per-clip results were kept: no split, and power() says nothing of it
    old = [RunResult(**{**r.__dict__, "test_correct": None}) for r in rows]
    assert noise_table(old, plan) == {}
    assert "accounts for" not in "".join(power(summarise(old, plan), noise_table(old, plan)))


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path) -> None:
    t0 = time.perf_counter()
    result = run_demo(tmp_path / "demo", quick=True, progress=False)
    first = time.perf_counter() - t0
    plan = DemoPlan.quick()
    report = result.report.parent
    for name in ("README.md", "results.json", "accuracy.png", "paired_differences.png",
                 "training_curves.png", "gradcam.png"):  # fmt: skip
        assert (report / name).is_file(), name
    payload = json.loads((report / "results.json").read_text())
    assert [(r["estimator"], r["per_class"], r["seed"]) for r in payload["runs"]] == [
        (r.estimator, r.per_class, r.seed) for r in plan_runs(plan)
    ]
    # the pre-trained backbone exists and every run started from it
    assert (tmp_path / "demo" / "pretrain" / "backbone_base.pt").is_file()
    assert payload["finetune"]["estimator.eps_end"] == 1.0
    paired = payload["summary"]["paired"]
    assert set(paired) == {"direct - none", "direct - gumbel_softmax"}
    for comp in paired.values():
        assert comp["pooled"]["n"] == len(plan.sizes) * len(plan.seeds)
        assert comp["pooled"]["low"] <= comp["pooled"]["mean"] <= comp["pooled"]["high"]
    runs = {(r["estimator"], r["per_class"], r["seed"]): r for r in payload["runs"]}
    for (e, n, s), r in runs.items():
        if e == "none":
            assert r["gaze_exact_cell"] is None  # `none` predicts no gaze
        else:
            assert 0.0 <= r["gaze_exact_cell"] <= r["gaze_within_one_cell"] <= 1.0
        d = paired["direct - none"][str(n)]
        if e == "direct":
            assert r["mean_class_accuracy"] - runs[("none", n, s)]["mean_class_accuracy"] == pytest.approx(
                d["diffs"][plan.seeds.index(s)]
            )
    # every run keeps its model where the README's quickstart points --checkpoint at
    n_test = plan.classes * plan.test_per_class
    for r in payload["runs"]:
        run_dir = tmp_path / "demo" / "runs" / f"{r['estimator']}-n{r['per_class']}-s{r['seed']}"
        ckpt = run_dir / "checkpoints" / f"ckpt-{plan.iters:08d}"
        assert r["checkpoint"] == str(ckpt) and (ckpt / "model.safetensors").is_file()
        assert 1 <= r["threads"] <= payload["machine"]["threads"]
        assert (run_dir / "train.log").read_text().rstrip().endswith(f"last checkpoint {ckpt}")
        # accuracies are counts over the test clips (test_per_class of each class)
        for key in ("mean_class_accuracy", "overall_accuracy"):
            assert r[key] * n_test == pytest.approx(round(r[key] * n_test), abs=1e-9), (r["name"], key)
    # per-clip results kept, in one test order, and the report splits the noise with them
    kept = [json.loads((tmp_path / "demo" / "runs" / r["name"] / "result.json").read_text()) for r in payload["runs"]]
    for r in kept:
        assert len(r["test_correct"]) == n_test and r["test_labels"] == kept[0]["test_labels"]
        assert sum(r["test_correct"]) == pytest.approx(r["overall_accuracy"] * n_test)
    assert set(payload["noise"]["direct - none"]) == {*map(str, plan.sizes), "pooled"}
    # direct optimization's activity was logged for every direct run
    act = payload["direct_activity"]
    assert act["runs"] == len(plan.sizes) * len(plan.seeds) and len(act["flip"]) == len(act["iteration"])
    assert max(act["flip"]) > 0
    md = result.report.read_text()
    assert "| all sizes |" in md and "95 %" in md and "z_eps" in md
    # whether the runs use their data and learn gaze: the rise with data per seed, the KL per arm
    assert "## Do the runs learn from their data?" in md and "## Across pre-trained backbones" not in md
    assert payload["learning"]["rise"]["none"]["n"] == len(plan.seeds)
    kl = {(c["estimator"], c["per_class"]): c["kl_state"] for c in payload["learning"]["curves"]}
    assert kl[("none", 4)] is None and kl[("direct", 4)] in ("converged", "still falling", "did not fall")
    with Image.open(report / "paired_differences.png") as im:
        assert im.size[0] > 300
    # a rerun finds every run done and only rewrites the report
    t1 = time.perf_counter()
    again = run_demo(tmp_path / "demo", quick=True, progress=False)
    assert [r.mean_class_accuracy for r in again.runs] == [r.mean_class_accuracy for r in result.runs]
    assert time.perf_counter() - t1 < first


def test_other_data_options_are_refused(tmp_path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "data.json").write_text(json.dumps({"classes": 99}))
    with pytest.raises(ValueError, match="other data options"):
        run_demo(tmp_path / "d", quick=True, progress=False)


def test_a_finished_run_with_other_settings_is_refused(tmp_path) -> None:
    """Rerunning the demo into the same --out with other fine-tuning settings must not report
    the old runs as the new ones: the finished run's config.yaml is compared with the plan."""
    from types import SimpleNamespace
    from unittest import mock

    from gaze_attention.demo import runs as demo_runs
    from gaze_attention.engine.config import save_config

    plan = DemoPlan(sizes=(4,), seeds=(0,), largest_only=())
    spec = plan_runs(plan)[0]
    data = SimpleNamespace(root=tmp_path / "prepared")
    base = tmp_path / "pretrain" / "backbone_base.pt"
    trained: list[object] = []
    with mock.patch("gaze_attention.engine.train.train", side_effect=lambda cfg, **kw: trained.append(cfg)):
        # a finished run as run_one leaves it: the resolved config and result.json
        run_dir = tmp_path / "runs" / spec.name
        run_dir.mkdir(parents=True)
        from gaze_attention.engine.config import load_config

        cfg = load_config("tiny-finetune", {
            **plan.finetune_overrides(), "data.root": str(data.root), "data.workers": 0,
            "data.max_train_per_class": 4, "estimator.name": spec.estimator, "run.out": str(run_dir),
            "run.seed": 0, "run.tensorboard": False, "run.checkpoint_every": plan.iters, "run.keep_last": 1,
            "init.base": str(base),
        })  # fmt: skip
        save_config(cfg, run_dir / "config.yaml")
        (run_dir / "result.json").write_text(json.dumps(_row(spec.estimator, 4, 0, 0.5).to_dict()))
        # the same settings (the folder moved: another root and base path; a config field
        # newer than the run, absent from its config.yaml) reuse it
        import yaml

        had = yaml.safe_load((run_dir / "config.yaml").read_text())
        del had["optim"]["freeze"]
        (run_dir / "config.yaml").write_text(yaml.safe_dump(had))
        moved = SimpleNamespace(root=tmp_path / "elsewhere")
        assert demo_runs.run_one(spec, plan, moved, tmp_path / "runs", tmp_path / "b.pt").mean_class_accuracy == 0.5
        for other, b, what in [
            (DemoPlan(sizes=(4,), seeds=(0,), largest_only=(), iters=96), base, "optim.iters: 72, now 96"),
            (DemoPlan(sizes=(4,), seeds=(0,), largest_only=(), lr=0.02), base, "optim.lr: 0.01, now 0.02"),
            (plan, None, "init.base"),  # --no-pretrain
        ]:
            with pytest.raises(ValueError, match="other settings") as err:
                demo_runs.run_one(spec, other, data, tmp_path / "runs", b)
            assert what in str(err.value) and spec.name in str(err.value)
    assert not trained  # nothing was trained again, and nothing was removed
    assert (run_dir / "result.json").is_file()
    # a finished run whose settings cannot be read is refused, naming the file
    for broken in ("optim: [unclosed", None):
        if broken is None:
            (run_dir / "config.yaml").unlink()
        else:
            (run_dir / "config.yaml").write_text(broken)
        with pytest.raises(ValueError, match="config.yaml: cannot read the finished run's settings"):
            demo_runs.run_one(spec, plan, data, tmp_path / "runs", base)
    assert (run_dir / "result.json").is_file()


def test_a_backbone_pretrained_for_another_network_is_refused(tmp_path) -> None:
    """An older demo's folder holds a backbone of the nine-module network: rerunning the demo
    (five modules) into it must name the difference, not reuse or half-load that backbone."""
    from unittest import mock

    import yaml

    from gaze_attention.demo import runs as demo_runs

    plan = DemoPlan()
    folder = _finished_pretraining(tmp_path, plan)
    with mock.patch("gaze_attention.engine.train.train", side_effect=AssertionError("trained again")):
        # the same settings from a moved folder: reused
        assert demo_runs.pretrain(plan, tmp_path / "elsewhere", tmp_path, print) == folder / "backbone_base.pt"
        had = yaml.safe_load((folder / "run" / "config.yaml").read_text())
        had["model"]["backbone_config"] = None  # as the nine-module demo wrote it
        (folder / "run" / "config.yaml").write_text(yaml.safe_dump(had))
        with pytest.raises(ValueError, match=r"pretrain/run holds a finished run trained with other settings \(model.backbone_config: None, now \{'mixed'"):
            demo_runs.pretrain(plan, tmp_path / "pre", tmp_path, print)
    assert (folder / "backbone_base.pt").read_bytes() == b"weights"  # nothing removed


def test_the_report_counts_runs_an_earlier_invocation_trained() -> None:
    runs = [{"train_seconds": 20.0, "eval_seconds": 6.0}] * 30
    assert _run_time_text(runs, 900.0) == ""  # one invocation did it all (plus data and report)
    text = _run_time_text(runs, 120.0)  # an extension that found 26 of them done
    assert "30 fine-tuning runs" in text and "13.0 minutes of training and evaluation in all" in text


def test_the_thread_probe_does_not_time_the_wake_up_after_a_change() -> None:
    # A fake machine on a fake clock: 2 threads run the step in 1 ms, 1 thread in 2 ms, and the
    # first call after raising the thread count costs 5 ms more (the change, not the step).
    clock = [0.0]
    state = {"threads": 2, "woken": True}

    def set_threads(n: int) -> None:
        state["woken"] = n <= state["threads"] and state["woken"]
        state["threads"] = n

    def step() -> None:
        clock[0] += {1: 0.002, 2: 0.001}[state["threads"]] + (0.0 if state["woken"] else 0.005)
        state["woken"] = True

    from gaze_attention.demo import runs as demo_runs

    took = demo_runs.probe_seconds(step, (1, 2), set_threads, rounds=3, clock=lambda: clock[0])
    assert took[2] == pytest.approx(3 * 2 * 0.001) and took[1] == pytest.approx(3 * 2 * 0.002)


def test_the_thread_probe_still_finds_one_thread_faster_when_a_core_is_held() -> None:
    clock, state = [0.0], {"threads": 2}

    def step() -> None:  # another job holds a core: every barrier of 2 threads waits for it
        clock[0] += {1: 0.002, 2: 0.060}[state["threads"]]

    from gaze_attention.demo import runs as demo_runs

    took = demo_runs.probe_seconds(step, (1, 2), lambda n: state.update(threads=n), clock=lambda: clock[0])
    assert demo_runs.fewer_threads_if_clearly_faster(took, 2) == 1


def test_one_thread_must_be_clearly_faster_to_be_chosen() -> None:
    from gaze_attention.demo import runs as demo_runs

    # the probe's noise on a quiet machine: 1 thread a little faster in a few probes
    assert demo_runs.fewer_threads_if_clearly_faster({1: 0.017, 2: 0.020}, 2) == 2
    assert demo_runs.fewer_threads_if_clearly_faster({1: 0.010, 2: 0.020}, 2) == 1
    assert demo_runs.fewer_threads_if_clearly_faster({1: 0.040, 2: 0.020}, 2) == 2


def test_cpu_jiffies_from_proc_stat_over_the_allowed_cpus() -> None:
    from gaze_attention.demo import runs as demo_runs

    stat = (
        "cpu  900 0 300 5000 100 0 0 0 0 0\n"  # the sum line: not counted
        "cpu0 100 10 50 1000 20 5 5 10 0 0\n"  # busy: 100+10+50+5+5+10 (steal is busy), idle 1000+20
        "cpu1 200 0 100 2000 40 0 0 0 0 0\n"
        "cpu2 999 0 0 0 0 0 0 0 0 0\n"  # outside the affinity
        "intr 12345 0 0\nctxt 999\n"
    )
    assert demo_runs.cpu_jiffies(stat, {0, 1}) == (180 + 300, 1200 + 2340)
    assert demo_runs.cpu_jiffies(stat, {1}) == (300, 2340)


def test_threads_for_the_cores_other_processes_leave_free() -> None:
    from gaze_attention.demo import runs as demo_runs

    assert demo_runs.threads_for_free_cores(2, 0.1, most=2) == 2  # quiet, a little steal
    assert demo_runs.threads_for_free_cores(2, 1.1, most=2) == 1  # one other busy process
    assert demo_runs.threads_for_free_cores(2, 2.0, most=2) == 1  # never fewer than 1
    assert demo_runs.threads_for_free_cores(16, 4.2, most=16) == 12
    assert demo_runs.threads_for_free_cores(16, 0.0, most=8) == 8  # never more than torch's


def test_others_busy_cores_counts_other_processes_not_this_one(monkeypatch) -> None:
    import os
    from types import SimpleNamespace

    from gaze_attention.demo import runs as demo_runs

    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    # Over the window the two allowed CPUs were busy for 1.5 core-windows of jiffies, of which
    # this process took 0.5: others kept 1.0 core busy. cpu2 is outside the affinity.
    window = 0.2
    busy_jiffies = round(1.5 * window * ticks)
    stats = iter([
        "cpu0 100 0 0 1000 0 0 0 0\ncpu1 100 0 0 1000 0 0 0 0\ncpu2 0 0 0 0 0 0 0 0\n",
        f"cpu0 {100 + busy_jiffies} 0 0 1000 0 0 0 0\ncpu1 100 0 0 1040 0 0 0 0\ncpu2 500 0 0 0 0 0 0 0\n",
    ])  # fmt: skip
    times = iter([SimpleNamespace(user=10.0, system=1.0), SimpleNamespace(user=10.0 + 0.5 * window, system=1.0)])
    monkeypatch.setattr(demo_runs.Path, "read_text", lambda self, *a, **k: next(stats))
    monkeypatch.setattr(demo_runs.os, "times", lambda: next(times))
    monkeypatch.setattr(demo_runs.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(demo_runs.os, "sysconf", lambda name: ticks, raising=False)
    monkeypatch.setattr(demo_runs.time, "sleep", lambda s: None)
    busy, cores = demo_runs.others_busy_cores(window)
    assert cores == 2 and busy == pytest.approx(1.0, abs=1 / (window * ticks))


def test_choose_threads_falls_back_to_the_probe_without_proc_stat() -> None:
    from unittest import mock

    import torch

    from gaze_attention.demo import runs as demo_runs

    before = torch.get_num_threads()
    try:
        with (
            mock.patch.object(demo_runs, "max_threads", return_value=2),
            mock.patch.object(demo_runs, "others_busy_cores", return_value=None),
            mock.patch.object(demo_runs, "probe_seconds", return_value={1: 0.010, 2: 0.090}) as probe,
        ):
            assert demo_runs.choose_threads() == 1 and torch.get_num_threads() == 1
        probe.assert_called_once()
        with (
            mock.patch.object(demo_runs, "max_threads", return_value=2),
            mock.patch.object(demo_runs, "others_busy_cores", return_value=(0.1, 2)),
            mock.patch.object(demo_runs, "probe_seconds") as probe,
        ):
            assert demo_runs.choose_threads() == 2 and torch.get_num_threads() == 2
        probe.assert_not_called()
    finally:
        torch.set_num_threads(before)


def test_the_report_says_which_runs_trained_on_fewer_threads() -> None:
    runs = [{"threads": 2}] * 5 + [{"threads": 1}] * 3 + [{}]  # the last: a run from before threads were kept
    assert _fewer_threads_text(runs, 2) == (
        "; 3 of 9 runs trained on 1 thread, chosen where other processes held cores when they started"
    )
    assert _fewer_threads_text([{"threads": 2}] * 4, 2) == ""
    assert _fewer_threads_text([{"threads": 1}] * 4, 2, fixed=1) == "; every run on 1 thread (--threads)"


def test_threads_option_fixes_every_runs_threads(monkeypatch) -> None:
    from unittest import mock

    import torch

    from gaze_attention.cli import build_parser
    from gaze_attention.commands import demo as demo_command
    from gaze_attention.demo import runs as demo_runs

    before = torch.get_num_threads()
    monkeypatch.setattr(demo_runs, "_MAX_THREADS", None)  # as in a fresh process
    try:
        with mock.patch.object(demo_runs, "others_busy_cores") as seen:
            assert demo_runs.choose_threads(None, 1) == 1 and torch.get_num_threads() == 1
        seen.assert_not_called()  # fixed: the load is not looked at
        assert demo_runs.max_threads() == before  # the report still gets the machine's count
    finally:
        torch.set_num_threads(before)
    args = build_parser().parse_args(["demo", "--threads", "1", "--out", "x"])
    with mock.patch("gaze_attention.demo.run_demo") as run_demo:
        run_demo.return_value.report.read_text.return_value = ""
        demo_command.run(args)
    assert run_demo.call_args.kwargs["threads"] == 1


def test_the_report_names_the_rerun_that_reaches_the_targets() -> None:
    plan = DemoPlan(sizes=(4, 30), seeds=(0, 1, 2), largest_only=("gumbel_softmax",))
    rows = []
    for n in plan.sizes:
        for s, d in zip(plan.seeds, (0.1, -0.1, 0.0)):
            rows += [_row("none", n, s, 0.4), _row("direct", n, s, 0.4 + d), _row("gumbel_softmax", n, s, 0.4)]
    rows = [RunResult(**{**r.__dict__, "train_seconds": 20.0, "eval_seconds": 5.0}) for r in rows]
    summary = summarise(rows, plan)
    # pooled: std of (10, -10, 0) twice = 8.94 points over 6 pairs; per size: 10 points over 3.
    # Stein's two-stage rule with these 3 seeds as the first stage: t(5) for the pooled row,
    # t(2) per size (52 seeds: the per size rows ask for most).
    seeds = max(-(-stein_pairs(100 * float(np.std([0.1, -0.1, 0.0] * 2, ddof=1)), 6, 3.0) // 2), stein_pairs(10.0, 3, 6.0))
    assert seeds == math.ceil((4.303 * 10.0 / 6.0) ** 2) == 52
    lines = more_seeds(summary, plan, rows, "gaze-attention demo --seeds 0 1 2 --out 'my demo'")
    assert len(lines) == 3 and "direct - none" in lines[0] and "direct - gumbel_softmax" in lines[1]
    # and always, with a pre-trained backbone: the rerun that varies it, beside this folder
    runs = len(plan_runs(plan))
    assert lines[2] == (
        "- Every interval here is conditional on this one pre-trained backbone (seed 12345): the paired "
        "seeds vary fine-tuning, not pre-training. `gaze-attention demo --seeds 0 1 2 --out 'my demo' "
        "--backbones 5` reuses these runs, repeats the plan on 4 more backbones beside this folder (my "
        f"demo-backbone1 to my demo-backbone4: 4 pre-trainings and {4 * runs} runs, about "
        f"{round(4 * runs * 25 / 60)} minutes at this demo's pace) and adds the interval over the 5 "
        "backbones to this report."
    )
    # the pre-training's minutes count too, where its log gave them
    timed = more_seeds(summary, plan, rows, "gaze-attention demo", pretrain_seconds=120.0)
    assert f"about {round((4 * runs * 25 + 4 * 120) / 60)} minutes at this demo's pace" in timed[-1]
    # a report with the section across backbones points there instead
    from pathlib import Path

    from gaze_attention.demo.report import Backbone

    two = [Backbone(12345, Path("a"), summary), Backbone(1, Path("a-backbone1"), summary)]
    lines_two = more_seeds(summary, plan, rows, "gaze-attention demo --backbones 2", backbones=two)
    assert "the section across backbones below varies it too" in lines_two[-1]
    # and more seeds there train on every backbone, at twice the cost
    runs = (seeds - 3) * 2 * 2
    assert f"trains {runs} more on each of the 2 backbones ({2 * runs} runs, about {round(2 * runs * 25 / 60)} minutes" in lines_two[0]
    want = f"gaze-attention demo --seeds 0 1 2 --out 'my demo' --max-seeds {seeds}"
    runs = (seeds - 3) * 2 * 2
    assert f"`{want}` reuses these runs and trains {runs} more, about {round(runs * 25 / 60)} minutes" in lines[0]
    assert "Stein's rule at the std of the first 3 seeds' pairs asks for 52 seeds" in lines[0]
    # gumbel_softmax runs at 30 only, on the first --gumbel-seeds: its std 10 points asks for
    # pairs_needed(10, 6) of them, and as many seeds
    g = pairs_needed(10.0, 6.0)
    want = "gaze-attention demo --out 'my demo' --seeds " + " ".join(map(str, range(g))) + f" --gumbel-seeds {g}"
    assert f"`{want}` reuses these runs and trains {(g - 3) + (g - 3) * 2 * 2} more" in lines[1]
    # enough seeds already, too few with gumbel_softmax: only --gumbel-seeds grows
    few = DemoPlan(sizes=(4, 30), seeds=tuple(range(20)), largest_only=("gumbel_softmax",), largest_only_seeds=3)
    lines = more_seeds(summary, few, rows, "gaze-attention demo --gumbel-seeds 3")
    assert any(f"--seeds {' '.join(map(str, range(20)))} --gumbel-seeds {g}` reuses these runs and trains {g - 3} more" in x for x in lines)
    assert more_seeds(summary, plan, rows, "gaze-attention demo --quick") == []  # no power by design
    # the default runs no gumbel_softmax: the report names the option that adds it, and the
    # seeds it needs beyond these 3
    bare = DemoPlan(sizes=(4, 30), seeds=(0, 1, 2))
    plain = [r for r in rows if r.estimator != "gumbel_softmax"]
    lines = more_seeds(summarise(plain, bare), bare, plain, "gaze-attention demo --seeds 0 1 2")
    runs = 6 + 3 * 2 * 2
    assert lines[-2] == (
        "- direct - gumbel_softmax (the estimator of Li et al., ECCV 2018) was not run: "
        "`gaze-attention demo --gumbel-seeds 6 --seeds 0 1 2 3 4 5` reuses these runs and trains gumbel_softmax "
        f"at 30 clips per class on the first 6 seeds, {runs} runs, about {round(runs * 25 / 60)} minutes at this demo's pace."
    )
    # targets met (no spread): nothing to say but that the backbone is one draw (seed 1: draw 2)
    flat = [RunResult(**{**r.__dict__, "mean_class_accuracy": 0.5 if r.estimator == "direct" else 0.4}) for r in rows]
    lines = more_seeds(summarise(flat, plan), plan, flat, "gaze-attention demo")
    assert len(lines) == 1 and "`gaze-attention demo --backbones 5` reuses these runs" in lines[0]
    assert "(demo_out-backbone1 to demo_out-backbone4:" in lines[0]
    lines = more_seeds(summarise(flat, plan), plan, flat, "gaze-attention demo --out=runs/d")  # argparse's = form
    assert "`gaze-attention demo --out=runs/d --backbones 5`" in lines[0] and "(d-backbone1 to d-backbone4:" in lines[0]
    from gaze_attention.demo.report import without_option

    assert without_option("gaze-attention demo --backbones=5 --seeds 0 1 --out x", "--backbones") == [
        "gaze-attention", "demo", "--seeds", "0", "1", "--out", "x"
    ]  # fmt: skip
    one = DemoPlan(sizes=(4, 30), seeds=(0, 1, 2), largest_only=("gumbel_softmax",), pretrain_seed=1)
    lines = more_seeds(summarise(flat, one), one, flat, "gaze-attention demo --pretrain-seed 1 --out b1")
    assert lines == [x for x in lines if "(seed 1)" in x and "--pretrain-seed 2 --out b1-backbone2`" in x] and lines
    # from the folder that line named, the next seed goes beside it, not inside its name
    lines = more_seeds(summarise(flat, one), one, flat, "gaze-attention demo --pretrain-seed 1 --out demo_out-backbone1")
    assert "`gaze-attention demo --pretrain-seed 2 --out demo_out-backbone2`" in lines[0]
    nopre = DemoPlan(sizes=(4, 30), seeds=(0, 1, 2), largest_only=("gumbel_softmax",), pretrain=False)
    assert more_seeds(summarise(flat, nopre), nopre, flat, "gaze-attention demo --no-pretrain") == []


def test_backbone_seeds_and_their_folders() -> None:
    from pathlib import Path

    from gaze_attention.demo.plan import backbone_out, backbone_seeds

    assert backbone_seeds(12345, 1) == (12345,)
    assert backbone_seeds(12345, 3) == (12345, 1, 2)
    assert backbone_seeds(2, 4) == (2, 1, 3, 4)  # the first is never drawn twice
    with pytest.raises(ValueError, match="at least one backbone"):
        backbone_seeds(1, 0)
    assert backbone_out(Path("runs/demo_out"), 1) == Path("runs/demo_out-backbone1")
    # from a folder already named for a backbone: its sibling, not a name that grows
    assert backbone_out("runs/x-backbone1", 2) == Path("runs/x-backbone2")


def _history(kl: list[float], ce: list[float]) -> list[dict]:
    return [{"iteration": 10 * (i + 1), "ce": c, "kl": k} for i, (k, c) in enumerate(zip(kl, ce))]


def test_the_report_says_whether_runs_learn_from_their_data() -> None:
    from gaze_attention.demo.report import learning, learning_section

    plan = DemoPlan(sizes=(4, 30), seeds=(0, 1, 2))
    rows = []
    for s, gain in zip(plan.seeds, (0.02, 0.04, 0.06)):  # `none` gains 4 points on average: misses 5
        for n, kl in ((4, [2.6, 1.6, 1.55]), (30, [2.6, 2.2, 1.9])):
            up = gain if n == 30 else 0.0
            rows.append(RunResult(**{**_row("none", n, s, 0.5 + up).__dict__, "history": _history([0.0] * 3, [2.0, 1.5, 1.0])}))
            rows.append(RunResult(**{**_row("direct", n, s, 0.6 + up).__dict__, "history": _history(kl, [2.0, 1.4, 1.0])}))
    learn = learning(rows, plan)
    assert learn["rise"]["none"].mean == pytest.approx(0.04) and learn["rise"]["none"].n == 3
    assert learn["rise"]["none"].diffs == pytest.approx((0.02, 0.04, 0.06))
    states = {(c["estimator"], c["per_class"]): c["kl_state"] for c in learn["curves"]}
    # at 4: the last window moved the KL by 0.05 of a 1.05 fall (under 10 %); at 30 by 0.3 of 0.7
    assert states == {("none", 4): None, ("none", 30): None, ("direct", 4): "converged", ("direct", 30): "still falling"}
    flat = [RunResult(**{**r.__dict__, "history": _history([2.6, 2.7, 2.8], [2.0, 1.5, 1.0])}) for r in rows]
    assert {c["kl_state"] for c in learning(flat, plan)["curves"] if c["estimator"] == "direct"} == {"did not fall"}
    back_up = [RunResult(**{**r.__dict__, "history": _history([2.6, 1.5, 1.9], [2.0, 1.5, 1.0])}) for r in rows]
    assert {c["kl_state"] for c in learning(back_up, plan)["curves"] if c["estimator"] == "direct"} == {"rose in the last window"}
    md = "\n".join(learning_section(learn, plan))
    assert "- none: +4.0 [" in md and "misses +5" in md
    assert "| direct | 30 | 2.00 → 1.00 | 2.60 → 1.90 | -0.30 | still falling |" in md
    more = [RunResult(**{**r.__dict__, "mean_class_accuracy": r.mean_class_accuracy + (0.03 if r.per_class == 30 else 0)}) for r in rows]
    assert "meets +5" in "\n".join(learning_section(learning(more, plan), plan))


def test_the_interval_over_backbones_is_over_their_means() -> None:
    from pathlib import Path

    from gaze_attention.demo.report import Backbone, across_backbones, across_section

    plan = DemoPlan(sizes=(4, 30), seeds=(0, 1, 2))
    effects = {12345: 0.05, 1: -0.04, 2: 0.02}  # each backbone's own gaze effect
    backbones = []
    for seed, effect in effects.items():
        rows = []
        for n in plan.sizes:
            for s, wiggle in zip(plan.seeds, (-0.02, 0.0, 0.02)):
                rows += [_row("none", n, s, 0.5), _row("direct", n, s, 0.5 + effect + wiggle)]
        backbones.append(Backbone(seed, Path("/x/demo") if seed == 12345 else Path(f"/x/demo-backbone{seed}"),
                                  summarise(rows, plan)))  # fmt: skip
    across = across_backbones(backbones)
    over, pooled = across["direct - none"]["pooled"]["over"], across["direct - none"]["pooled"]["all_pairs"]
    means = [0.05, -0.04, 0.02]
    assert over.n == 3 and over.diffs == pytest.approx(tuple(means))
    assert over.half_width == pytest.approx(t975(2) * np.std(means, ddof=1) / math.sqrt(3))
    # all pairs: 18 of them, as if independent, so a narrower interval than the backbones give
    assert pooled.n == 18 and pooled.mean == pytest.approx(over.mean) and pooled.half_width < over.half_width
    assert across["direct - none"]["4"]["over"].n == 3
    md = "\n".join(across_section(backbones, across, Path("/x/demo/report")))
    assert "12345 (this report), [1](../../demo-backbone1/report/README.md)" in md
    assert "| direct - none | all sizes | +5.0 | -4.0 | +2.0 | +1.0 [" in md
    assert "no detectable difference over backbones" in md and "(3 backbones; the interval of 2 of them alone is above 0, of 1 below)" in md
    need = pairs_needed(100 * float(np.std(means, ddof=1)), 3.0)
    assert f"so ±3 needs {need} backbones (have 3)" in md


def test_backbones_option_runs_the_plan_beside_the_folder(tmp_path) -> None:
    """--backbones K: the plan on K backbones, each beside --out with its own report and command,
    and --out's report written last with all of them (the training itself stubbed out)."""
    from unittest import mock

    import gaze_attention.demo as demo
    from gaze_attention.cli import main as cli_main

    seen = {}

    def fake(out, quick=False, **kw):  # type: ignore[no-untyped-def]
        seen.update(kw)
        raise ValueError("stop here")

    with mock.patch("gaze_attention.demo.run_demo", side_effect=fake):
        cli_main(["demo", "--out", str(tmp_path), "--backbones", "3"])
        assert seen["backbones"] == 3
        seen.clear()
        assert cli_main(["demo", "--out", str(tmp_path), "--backbones", "3", "--no-pretrain"]) == 2
        assert not seen  # refused before anything runs
    with pytest.raises(ValueError, match="--no-pretrain"):
        run_demo(tmp_path / "d", plan=DemoPlan(pretrain=False), progress=False, backbones=2)

    trained, reports = [], []

    def fake_run_one(spec, plan, data, runs_dir, base):  # type: ignore[no-untyped-def]
        trained.append((plan.pretrain_seed, runs_dir.parent.name, base))
        return _row(spec.estimator, spec.per_class, spec.seed, 0.5 + (0.01 * plan.pretrain_seed if spec.estimator == "direct" else 0))

    def fake_report(results, plan, out, data, command, seconds, machine=None, backbones=None):  # type: ignore[no-untyped-def]
        reports.append((out.name, plan.pretrain_seed, command, [b.seed for b in backbones or []]))
        return out / "report" / "README.md"

    plan = DemoPlan(sizes=(4, 30), seeds=(0, 1))
    with (
        mock.patch.object(demo, "prepare_data", side_effect=lambda plan, out, log: (out / "prepared", out / "pre")),
        mock.patch.object(demo, "pretrain", side_effect=lambda plan, pre, out, log: out / f"base{plan.pretrain_seed}.pt"),
        mock.patch.object(demo, "run_one", side_effect=fake_run_one),
        mock.patch.object(demo, "choose_threads"),
        mock.patch.object(demo, "machine_facts", return_value={}),
        mock.patch.object(demo, "write_report", side_effect=fake_report),
        mock.patch("gaze_attention.data.memory.MemoryData"),
    ):
        result = run_demo(tmp_path / "demo_out", plan=plan, progress=False, backbones=3,
                          command=f"gaze-attention demo --backbones 3 --out {tmp_path / 'demo_out'}")  # fmt: skip
    per = len(plan_runs(plan))
    assert [t[:2] for t in trained] == [(12345, "demo_out")] * per + [(1, "demo_out-backbone1")] * per + [
        (2, "demo_out-backbone2")
    ] * per
    assert {t[2].name for t in trained if t[0] == 2} == {"base2.pt"}  # each from its own backbone
    sib = tmp_path / "demo_out-backbone1"
    assert reports == [
        ("demo_out", 12345, f"gaze-attention demo --backbones 3 --out {tmp_path / 'demo_out'}", []),
        ("demo_out-backbone1", 1, f"gaze-attention demo --pretrain-seed 1 --out {sib}", []),
        ("demo_out-backbone2", 2, f"gaze-attention demo --pretrain-seed 2 --out {tmp_path / 'demo_out-backbone2'}", []),
        ("demo_out", 12345, f"gaze-attention demo --backbones 3 --out {tmp_path / 'demo_out'}", [12345, 1, 2]),
    ]
    assert [b.seed for b in result.backbones] == [12345, 1, 2]
    assert result.backbones[2].summary.paired["direct - none"]["pooled"].mean == pytest.approx(0.02)


def test_backbones_refuses_a_folder_beside_out_that_holds_another_backbone(tmp_path) -> None:
    from unittest import mock

    import gaze_attention.demo as demo

    _finished_pretraining(tmp_path / "demo_out", DemoPlan())
    _finished_pretraining(tmp_path / "demo_out-backbone1", DemoPlan(pretrain_seed=3))  # made by hand, seed 3
    with (
        mock.patch.object(demo, "prepare_data", side_effect=lambda plan, out, log: (out / "prepared", out / "pre")),
        mock.patch.object(demo, "run_one", side_effect=lambda spec, *a: _row(spec.estimator, spec.per_class, spec.seed, 0.5)),
        mock.patch.object(demo, "choose_threads"),
        mock.patch.object(demo, "machine_facts", return_value={}),
        mock.patch.object(demo, "write_report", side_effect=lambda results, plan, out, *a, **k: out / "report" / "README.md"),
        mock.patch("gaze_attention.data.memory.MemoryData"),
        pytest.raises(ValueError, match=r"demo_out-backbone1/pretrain/run holds a finished run trained with other settings \(run.seed: 3, now 1\)"),
    ):
        run_demo(tmp_path / "demo_out", plan=DemoPlan(seeds=(0,)), progress=False, backbones=2)


def test_another_backbone_shares_the_data_by_hard_links(tmp_path) -> None:
    from unittest import mock

    from gaze_attention.demo.runs import _data_options, share_data

    plan = DemoPlan()
    src, dst = tmp_path / "demo_out", tmp_path / "demo_out-backbone1"
    (src / "raw" / "cropped_clips").mkdir(parents=True)
    (src / "raw" / "cropped_clips" / "a.mp4").write_bytes(b"clip")
    (src / "prepared" / "images_rgb" / "c").mkdir(parents=True)
    (src / "prepared" / "images_rgb" / "c" / "1.jpg").write_bytes(b"frame")
    (src / "prepared" / "manifest.jsonl").write_text('{"clip": "c"}\n')
    (src / "prepared" / "run.lock").write_text("")
    (src / "data.json").write_text(json.dumps(_data_options(plan)))
    # another plan's data is not this one's
    assert not share_data(src, dst, DemoPlan(classes=4)) and not dst.exists()
    # a file system that cannot link: nothing left behind, the backbone makes its own data
    with mock.patch("gaze_attention.demo.runs.os.link", side_effect=OSError(18, "Invalid cross-device link")):
        assert not share_data(src, dst, plan)
    assert not any(dst.iterdir()) and not (dst / "data.json").exists()
    assert share_data(src, dst, plan)
    for rel in ("raw/cropped_clips/a.mp4", "prepared/images_rgb/c/1.jpg"):  # the bulk: one file on disk
        assert (dst / rel).stat().st_ino == (src / rel).stat().st_ino
    # what prepare appends to is a copy of its own; locks stay with their folder
    manifest = dst / "prepared" / "manifest.jsonl"
    assert manifest.read_text() == '{"clip": "c"}\n' and manifest.stat().st_ino != (src / "prepared" / "manifest.jsonl").stat().st_ino
    assert not (dst / "prepared" / "run.lock").exists()
    assert json.loads((dst / "data.json").read_text()) == _data_options(plan)
    assert not share_data(src, dst, plan)  # a folder with data of its own keeps it
    assert not (dst / "data.sharing").exists()


def test_an_interrupted_share_of_the_data_is_done_again(tmp_path) -> None:
    """Killed while renaming: one set in place, one still partial, no stamp; the next try
    clears both and links again instead of leaving the sibling to prepare beside them."""
    from gaze_attention.demo.runs import _data_options, share_data

    plan = DemoPlan()
    src, dst = tmp_path / "demo_out", tmp_path / "demo_out-backbone1"
    for name in ("raw", "prepared"):
        (src / name).mkdir(parents=True)
        (src / name / "a.jpg").write_bytes(name.encode())
    (src / "data.json").write_text(json.dumps(_data_options(plan)))
    (dst / "raw").mkdir(parents=True)
    (dst / "raw" / "a.jpg").write_bytes(b"raw")
    (dst / "prepared.partial").mkdir()
    (dst / "prepared.partial" / "half.jpg").write_bytes(b"")
    assert not share_data(src, dst, plan)  # no marker: a folder's own data, left alone
    assert (dst / "prepared.partial" / "half.jpg").exists()
    (dst / "data.sharing").write_text(f"{src}\n")
    assert share_data(src, dst, plan)
    assert sorted(p.name for p in dst.iterdir()) == ["data.json", "prepared", "raw"]
    for name in ("raw", "prepared"):
        assert (dst / name / "a.jpg").stat().st_ino == (src / name / "a.jpg").stat().st_ino


def test_stein_interval_by_hand() -> None:
    iv = stein_interval([0.01, 0.02, 0.03], [0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    # mean of all six, width from the first three's std (0.01) and t with 2 degrees of freedom
    assert iv.mean == pytest.approx(0.035) and iv.n == 6
    assert iv.half_width == pytest.approx(4.303 * 0.01 / math.sqrt(6))
    assert (iv.stage_one_n, iv.stage_one_sd) == (3, pytest.approx(0.01))
    assert iv.to_dict()["stage_one_n"] == 3
    assert "stage_one_n" not in paired_interval([0.01, 0.02]).to_dict()
    # the fewest pairs in all whose two-stage width is at most the target, never below n0
    assert stein_pairs(1.0, 3, 1.0) == math.ceil(4.303**2) == 19
    assert 4.303 * 1.0 / math.sqrt(19) <= 1.0 < 4.303 * 1.0 / math.sqrt(18)
    assert stein_pairs(0.5, 12, 3.0) == 12 and stein_pairs(0.0, 6, 3.0) == 6 and stein_pairs(5.0, 1, 3.0) == 1
    assert stein_interval([0.1], [0.1, 0.2, 0.4]) == paired_interval([0.1, 0.2, 0.4])  # no first-stage std


def test_the_two_stage_interval_keeps_its_coverage() -> None:
    """Normal differences with std 8 points, a first stage of 3 pairs, target +-3: the pairs
    Stein's rule asks for give an interval that covers the mean 95 % of the time (95.2 % in these
    4000 draws), where adding pairs until a t-interval met +-3 covers less (91.1 %)."""
    rng = np.random.default_rng(0)
    reps, sd, n0, target = 4000, 8.0, 3, 3.0
    stein = naive = 0
    for _ in range(reps):
        first = rng.normal(0.0, sd, n0)
        more = rng.normal(0.0, sd, 3000)  # more than either rule ever asks for here
        n = stein_pairs(float(np.std(first, ddof=1)), n0, target)
        iv = stein_interval(first, np.concatenate([first, more[: n - n0]]))
        assert iv.half_width <= target + 1e-9
        stein += iv.low <= 0.0 <= iv.high
        k = n0
        while (t := paired_interval(np.concatenate([first, more[: k - n0]]))).half_width > target:
            k += 1
        naive += t.low <= 0.0 <= t.high
    assert 0.94 <= stein / reps <= 0.96
    assert naive / reps < 0.93


def test_a_two_stage_summary_takes_its_widths_from_the_first_stage() -> None:
    plan = DemoPlan(sizes=(4, 30), seeds=(0, 1, 2, 3), stage_one=2, largest_only=())
    d = {0: 0.10, 1: 0.0, 2: 0.05, 3: 0.05}  # first stage: std 7.1 points; all four: 4.1
    rows = [x for s in plan.seeds for n in plan.sizes for x in (_row("none", n, s, 0.5), _row("direct", n, s, 0.5 + d[s]))]
    dn = summarise(rows, plan).paired["direct - none"]
    assert dn["4"].n == 4 and dn["4"].mean == pytest.approx(0.05)
    assert dn["4"].half_width == pytest.approx(12.706 * float(np.std([0.1, 0.0], ddof=1)) / 2)
    assert dn["pooled"].n == 8 and dn["pooled"].stage_one_n == 4
    assert dn["pooled"].half_width == pytest.approx(3.182 * float(np.std([0.1, 0.0] * 2, ddof=1)) / math.sqrt(8))
    lines = power(summarise(rows, plan))
    assert "the first stage's 2 pairs have std 7.1 points, which sets the width (all 4 pairs: 4.1)" in lines[0]
    # a fixed design: the plain t-interval over all pairs
    fixed = summarise(rows, DemoPlan(sizes=(4, 30), seeds=(0, 1, 2, 3), largest_only=()))
    assert fixed.paired["direct - none"]["4"].stage_one_n is None
    assert fixed.paired["direct - none"]["4"].half_width == pytest.approx(3.182 * float(np.std(list(d.values()), ddof=1)) / 2)


def _staged_demo(tmp_path, plan, diff, backbones=1, **kw):  # type: ignore[no-untyped-def]
    """run_demo with training stubbed out: direct - none = diff(seed); returns the seeds
    trained, the plan the report got and the log."""
    from unittest import mock

    import gaze_attention.demo as demo

    trained, reported, lines = [], [], []

    def fake_run_one(spec, plan, data, runs_dir, base):  # type: ignore[no-untyped-def]
        trained.append((runs_dir.parent.name, spec.seed))
        return _row(spec.estimator, spec.per_class, spec.seed, 0.5 + (diff(spec.seed) if spec.estimator == "direct" else 0))

    def fake_report(results, plan, out, data, command, seconds, machine=None, backbones=None):  # type: ignore[no-untyped-def]
        reported.append(plan)
        return out / "report" / "README.md"

    with (
        mock.patch.object(demo, "prepare_data", side_effect=lambda plan, out, log: (out / "prepared", out / "pre")),
        mock.patch.object(demo, "pretrain", side_effect=lambda plan, pre, out, log: out / "base.pt"),
        mock.patch.object(demo, "run_one", side_effect=fake_run_one),
        mock.patch.object(demo, "choose_threads"),
        mock.patch.object(demo, "machine_facts", return_value={}),
        mock.patch.object(demo, "write_report", side_effect=fake_report),
        mock.patch.object(demo, "share_data", return_value=False),
        mock.patch("gaze_attention.data.memory.MemoryData"),
        mock.patch("builtins.print", side_effect=lambda *a, **k: lines.append(" ".join(map(str, a)))),
    ):
        run_demo(tmp_path / "d", plan=plan, progress=True, backbones=backbones, **kw)
    return trained, reported, lines


def test_the_demo_trains_the_seeds_the_two_stage_rule_asks_for(tmp_path) -> None:
    sizes = (4, 30)
    noisy = {0: 0.2, 1: -0.1, 2: 0.05}  # first stage: std 15 points over 3 pairs per size
    plan = DemoPlan(sizes=sizes, seeds=(0, 1, 2), max_seeds=40)
    trained, reported, lines = _staged_demo(tmp_path, plan, lambda s: noisy.get(s, 0.05))
    sd = 100 * float(np.std(list(noisy.values()), ddof=1))
    want = max(stein_pairs(sd, 3, 6.0), -(-stein_pairs(100 * float(np.std(list(noisy.values()) * 2, ddof=1)), 6, 3.0) // 2))
    assert want > 40  # capped
    assert sorted({s for _, s in trained}) == list(range(40))
    assert len(trained) == 40 * len(sizes) * 2  # each run once: the first stage is not trained again
    final = reported[-1]
    assert final.stage_one == 3 and final.seeds == tuple(range(40))
    assert any(f"capped at --max-seeds 40 (the targets need {want})" in x for x in lines)
    # under the cap: exactly the seeds the rule asks for
    trained, reported, _ = _staged_demo(tmp_path / "b", replace_plan(plan, max_seeds=want + 5), lambda s: noisy.get(s, 0.05))
    assert reported[-1].seeds == tuple(range(want))
    # a quiet first stage: no second one, and its intervals are two-stage (here plain) ones
    trained, reported, lines = _staged_demo(tmp_path / "c", plan, lambda s: 0.05)
    assert sorted({s for _, s in trained}) == [0, 1, 2] and reported[-1].stage_one == 3
    assert any("meet the targets" in x and "no second stage" in x for x in lines)
    # --backbones K: every backbone with the first stage only, unless --max-seeds is given
    trained, reported, _ = _staged_demo(tmp_path / "e", plan, lambda s: noisy.get(s, 0.05), backbones=2)
    assert sorted({s for _, s in trained}) == [0, 1, 2] and {p.stage_one for p in reported} == {None}
    trained, _, _ = _staged_demo(tmp_path / "f", plan, lambda s: noisy.get(s, 0.05), backbones=2, max_seeds=5)
    assert sorted({s for _, s in trained}) == [0, 1, 2, 3, 4] and {d for d, _ in trained} == {"d", "d-backbone1"}


def replace_plan(plan: DemoPlan, **kw) -> DemoPlan:  # type: ignore[no-untyped-def]
    import dataclasses

    return dataclasses.replace(plan, **kw)


def test_max_seeds_option(tmp_path) -> None:
    from unittest import mock

    from gaze_attention.cli import main as cli_main

    seen = {}

    def fake(out, quick=False, **kw):  # type: ignore[no-untyped-def]
        seen.update(kw)
        raise ValueError("stop here")

    with mock.patch("gaze_attention.demo.run_demo", side_effect=fake):
        cli_main(["demo", "--out", str(tmp_path), "--max-seeds", "12"])
        assert seen["max_seeds"] == 12
        seen.clear()
        cli_main(["demo", "--out", str(tmp_path)])
        assert "max_seeds" not in seen  # the plan's default, 24
        assert cli_main(["demo", "--out", str(tmp_path), "--quick", "--max-seeds", "4"]) == 2
    assert DemoPlan().max_seeds == 24 and DemoPlan().two_stage and not DemoPlan.quick().two_stage
    assert not DemoPlan(seeds=tuple(range(30))).two_stage


def test_the_report_says_capped_only_where_the_rule_asked_for_more_than_ran() -> None:
    from gaze_attention.demo.report import _design_text

    plan = DemoPlan(seeds=tuple(range(24)), stage_one=6, max_seeds=24)
    assert "seeds 6 to 23 too (24 in all)." in _design_text(plan, 24)  # the rule's count, at the cap
    assert "(24 in all, capped at --max-seeds 24: the rule asks for 30)" in _design_text(plan, 30)
    assert "no seeds were added" in _design_text(DemoPlan(stage_one=6), 6)
    assert _design_text(DemoPlan(), 6) == ""  # a fixed design

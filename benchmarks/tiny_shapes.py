"""Reshaped `tiny` networks: how much faster their CPU training step is, and what they learn.

The `tiny` step is dominated by the full-resolution layers (the two 7x7x7 stems are 57 % of
its FLOPs, then their BatchNorm and the first max-pool) and by the many small convolutions of
its 18 Inception modules. This script times, in both I3D streams of the `tiny` network:

- `nine`: the `tiny` preset (all nine Inception modules), the network the demo fine-tuned until
  2026-12-01;
- `five`: five of the nine (`backbone_config: {mixed: [Mixed_3b, Mixed_4b, Mixed_4f, Mixed_5b,
  Mixed_5c]}`, each module taking the channels the one before gives): the `tiny-finetune`
  preset's network, which the demo fine-tunes;
- `stem4`, `five+stem4`: the same with the stem convolution at spatial stride 4 and without
  `MaxPool3d_2a_3x3` (`backbone_config: {stem_stride: 4}`: the same [T/2, H/4, W/4] map after
  them from a quarter of the stem's output positions);
- `five+kt3`, `five+kt2`, `five+kt1`: `five` with a stem 3, 2 or 1 frames deep instead of 7
  (`stem_temporal_kernel`).

The grid, the heads and the channel widths are unchanged. Each is timed round-robin in one
process against the demo's network and data path of 2026-11-30 (`train_speed.py`'s
`before`): the training step (direct estimator, losses, backward, clipping, momentum SGD; fp32,
channels_last_3d; a batch of 8 in memory) and the iteration (a batch drawn from the training
loader, then the step). It prints the machine, its fp32 matmul rate, FLOPs and speed-ups.

`--accuracy DEMO_FOLDER` (a folder `gaze-attention demo` wrote: it reads `prepared/` and
`pretrain_prepared/`) also trains each variant as the demo does: pre-train it without gaze (the
demo's plan; `--pretrain-seed` draws another backbone), then fine-tune `none` and `direct` at
each `--sizes` with each `--seeds` (`demo.runs.pretrain` and `demo.runs.run_one`), and prints
mean class accuracy and direct - none per seed. About 5 minutes per variant on 2 cores.

    python benchmarks/tiny_shapes.py [--rounds 4] [--data PREPARED] [--threads N]
    python benchmarks/tiny_shapes.py --accuracy DEMO_FOLDER --variants nine five --out DIR
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from train_speed import BATCH, TINY_2026_11_30, Variant, make_data, matmul_gflops, round_robin

from gaze_attention.data import ClipDataset, PreparedData
from gaze_attention.data.memory import MemoryData
from gaze_attention.engine.precision import cpu_model
from gaze_attention.models.gaze_attention import PRESETS, ModelConfig
from gaze_attention.models.i3d import INCEPTION_CHANNELS

FIVE = ["Mixed_3b", "Mixed_4b", "Mixed_4f", "Mixed_5b", "Mixed_5c"]
NINE = list(INCEPTION_CHANNELS)
VARIANTS: dict[str, dict] = {  # the I3D backbone_config of each variant
    "nine": {"mixed": NINE, "stem_stride": 2},
    "five": {"mixed": FIVE, "stem_stride": 2},
    "stem4": {"mixed": NINE, "stem_stride": 4},
    "five+stem4": {"mixed": FIVE, "stem_stride": 4},
    "five+kt3": {"mixed": FIVE, "stem_temporal_kernel": 3},
    "five+kt2": {"mixed": FIVE, "stem_temporal_kernel": 2},
    "five+kt1": {"mixed": FIVE, "stem_temporal_kernel": 1},
}


def network(variant: str) -> ModelConfig:
    return dataclasses.replace(PRESETS["tiny"], backbone_config=dict(VARIANTS[variant]))


@contextlib.contextmanager
def built_as(variant: str) -> Iterator[None]:
    """Inside, the demo's pre-training and fine-tuning build this variant."""
    from gaze_attention.engine import config

    load = config.load_config

    def load_variant(name, overrides=None):  # type: ignore[no-untyped-def]
        return load(name, {**(overrides or {}), "model.backbone_config": dict(VARIANTS[variant])})

    config.load_config = load_variant
    try:
        yield
    finally:
        config.load_config = load


def time_steps(data_dir: Path, variants: list[str], rounds: int) -> None:
    """Step (and iteration, data included) of each variant and of the 2026-11-30 demo network."""
    fp32 = matmul_gflops(torch.float32)
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"matmul 2048^2: fp32 {fp32:.0f} GFLOP/s")
    mem = MemoryData(data_dir)
    mem.preload(mem.split(1, "train"), PRESETS["tiny"].crop)
    # The baseline the issue measured against: the 2026-11-30 network, data path and kernels.
    steps = {"2026-11-30": Variant(TINY_2026_11_30, PreparedData(data_dir, cache=True), ClipDataset, baseline=True)}
    for name in variants:
        steps[name] = Variant(network(name), mem, mem.dataset_class)
    for v in steps.values():  # warm-up: a pass over the training set (fills the baseline's frame cache)
        for _ in range(-(-v.size // BATCH)):
            v.iteration()
    flops = {k: v.flops() for k, v in steps.items()}
    fns = {f"{what} {k}": getattr(v, fn) for k, v in steps.items() for what, fn in (("step", "step_only"), ("iteration", "iteration"))}
    times = round_robin(fns, rounds, cpu=torch.get_num_threads() == 1)
    best = {k: min(t) for k, t in times.items()}
    med = {k: statistics.median(t) for k, t in times.items()}
    unit = "CPU s, 1 thread" if torch.get_num_threads() == 1 else "wall s"
    print(
        f"\n| s per batch of {BATCH} ({unit}, {rounds} rounds; best, median) | step | step speed-up over 2026-11-30 "
        "| iteration (data + step) | iteration speed-up | GFLOP | % of fp32 matmul (step, best) | parameters |"
    )
    print("|---|---|---|---|---|---|---|---|")
    s0, i0 = "step 2026-11-30", "iteration 2026-11-30"
    for k, v in steps.items():
        s, i = f"step {k}", f"iteration {k}"
        share = 100 * flops[k] / best[s] / 1e9 / fp32
        params = sum(p.numel() for p in v.model.parameters())
        print(
            f"| {k} | {best[s]:.3f}, {med[s]:.3f} | {best[s0] / best[s]:.2f}x, {med[s0] / med[s]:.2f}x "
            f"| {best[i]:.3f}, {med[i]:.3f} | {best[i0] / best[i]:.2f}x, {med[i0] / med[i]:.2f}x "
            f"| {flops[k] / 1e9:.1f} | {share:.0f} | {params} |"
        )


def train_arms(
    folder: Path, variants: list[str], sizes: list[int], seeds: list[int], out: Path, pretrain_seed: int | None
) -> None:
    from gaze_attention.demo import DemoPlan, RunSpec
    from gaze_attention.demo import runs as demo_runs

    plan = DemoPlan() if pretrain_seed is None else DemoPlan(pretrain_seed=pretrain_seed)
    data = MemoryData(folder / "prepared")
    for name in variants:
        where = out / name
        acc: dict[tuple[str, int, int], float] = {}
        with built_as(name):
            base = demo_runs.pretrain(plan, folder / "pretrain_prepared", where, print)
            for n in sizes:
                for s in seeds:
                    for arm in ("none", "direct"):
                        r = demo_runs.run_one(RunSpec(arm, s, n), plan, data, where / "runs", base)
                        acc[arm, n, s] = 100 * r.mean_class_accuracy
                        kl = r.history[-1].get("kl")
                        print(f"{name} {arm} n{n} s{s}: {acc[arm, n, s]:.1f} % (last KL {kl:.2f}, {r.train_seconds:.0f} s training)")
        for n in sizes:
            diffs = [acc["direct", n, s] - acc["none", n, s] for s in seeds]
            print(
                f"{name}, {n} clips/class: none {statistics.mean(acc['none', n, s] for s in seeds):.1f}, "
                f"direct {statistics.mean(acc['direct', n, s] for s in seeds):.1f}, direct - none "
                + ", ".join(f"{d:+.1f}" for d in diffs)
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--rounds", type=int, default=4, help="timed rounds (each times every variant once)")
    p.add_argument("--data", type=Path, help="a prepared folder to time on (default: a small synthetic one)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's); 1 times in CPU seconds")
    p.add_argument("--accuracy", type=Path, metavar="DEMO_FOLDER", help="also pre-train and fine-tune on this demo's data")
    p.add_argument("--sizes", type=int, nargs="+", default=[4, 30], help="with --accuracy: training clips per class")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="with --accuracy: fine-tuning seeds")
    p.add_argument("--pretrain-seed", type=int, help="with --accuracy: pre-train with this seed instead of the demo's 12345")
    p.add_argument("--out", type=Path, help="with --accuracy: where the runs go (default: a temporary folder)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with contextlib.ExitStack() as stack:
        if args.data is None:
            args.data = make_data(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tiny_shapes-"))))
        time_steps(args.data, args.variants, args.rounds)
        if args.accuracy:
            out = args.out or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tiny_shapes-runs-")))
            train_arms(args.accuracy, args.variants, args.sizes, args.seeds, out, args.pretrain_seed)


if __name__ == "__main__":
    main()

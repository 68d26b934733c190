"""CPU training speed of the demo: today's data path and network against the 2026-11-30 ones.

Three measurements, each timed round-robin in one process (a burst of load from elsewhere hits
every variant alike; best and median of the rounds are printed, best being the one that load
from other jobs can only spoil, not improve):

- `iteration`: what a demo fine-tuning run repeats, data included: draw a batch of 8 from the
  training loader exactly as `engine.train` builds it (`ShardedInfiniteSampler`, `SeededDraws`,
  0 workers), then the step: forward with the direct estimator, the losses, backward, gradient
  clipping at 20 and a momentum-SGD step, in fp32, channels_last_3d (the demo's settings).
  `before`: the `tiny` network of 2026-11-30 (24 frames at 112x112, grid (3, 4)) on a
  `PreparedData(cache=True)` + `ClipDataset` (decoded JPEGs cached per frame, a window
  stacked from them, the gaze file read per sample) and the layers' kernels of then
  (`models.fastpath.baseline_kernels()`: torch's BatchNorm, a separate ReLU, padded copies
  before asymmetric max-pools), as the demo ran then. `after`: the current `tiny` preset on
  `MemoryData` (data/memory.py: whole clips decoded once, scaled for the crop, the gaze kept;
  since 2026-12-03 batched straight into channels_last_3d, `data.dataset.collate_channels_last`),
  the `tiny-finetune` preset's network and its `optim.freeze` (if it keeps layers as
  pre-trained, no backward through them), with the CPU channels-last BatchNorm + ReLU backward
  of models/batchnorm.py.
- `step`: the same step alone on a batch already in memory, before and after network.
- `convolutions`: the `after` step's Conv3d calls alone (every one, captured from a real step:
  its input's shape, layout and whether it needs a gradient; forward and the backward the step
  runs, on a gradient in the output's layout), nothing else. No change outside the convolutions
  can make the step or the iteration faster than these: the `ceiling` line divides `before`'s
  times by theirs, the most any such change could reach against the targets (3x, 2x).

With `--threads 1` the times are CPU seconds of this process, which other jobs on a shared
machine do not inflate; otherwise wall-clock seconds. It prints the machine (CPU model,
threads, a 2048^2 fp32 and bf16 matmul rate), the FLOPs of each step and of the convolutions
(`torch.utils.flop_counter`) and the share of the fp32 matmul rate each reaches.
The data set is a small synthetic one made in a temporary folder (DIS flow, 170x128 as the
demo's), or --data DIR.

    python benchmarks/train_speed.py [--rounds 8] [--data PREPARED] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gaze_attention.data import ClipDataset, PreparedData
from gaze_attention.data.dataset import collate_channels_last
from gaze_attention.data.memory import MemoryData
from gaze_attention.demo.plan import finetune_preset
from gaze_attention.engine.distributed import SeededDraws, ShardedInfiniteSampler
from gaze_attention.engine.evaluate import autocast_context
from gaze_attention.engine.precision import cpu_model
from gaze_attention.engine.schedules import freeze_parameters
from gaze_attention.losses import TRAIN_GAZE_MODE, training_losses
from gaze_attention.models import GazeAttentionNet
from gaze_attention.models.fastpath import baseline_kernels
from gaze_attention.models.gaze_attention import PRESETS, ModelConfig

# The demo's network as it was on 2026-11-30 (the `tiny` preset), the baseline measured against.
TINY_2026_11_30 = ModelConfig(frames=24, crop=112, width=0.125, dropout=0.5, bn_momentum=0.1)


def demo_network() -> ModelConfig:
    """The network the demo fine-tunes now: `tiny` with the `tiny-finetune` preset's fields."""
    return dataclasses.replace(PRESETS["tiny"], **finetune_preset().model.overrides())


BATCH = 8


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    c = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=c)
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    best = float("inf")
    for _ in range(repeats):
        t = clock()
        torch.mm(a, b, out=c)
        best = min(best, clock() - t)
    return 2 * n**3 / best / 1e9


def make_data(folder: Path, classes: int = 4, per_class: int = 6) -> Path:
    from gaze_attention.data.prepare import prepare
    from gaze_attention.data.synthetic import make_synthetic_raw

    make_synthetic_raw(
        folder / "raw", num_classes=classes, train_per_class=per_class, test_per_class=1, seed=7
    )
    prepare(
        folder / "raw",
        folder / "prepared",
        splits=[1],
        flow="dis",
        size=(170, 128),
        workers=2,
        progress=False,
    )
    return folder / "prepared"


class Variant:
    """A model, its optimizer and an endless batch iterator, stepped as the demo steps."""

    def __init__(
        self,
        cfg: ModelConfig,
        data: PreparedData,
        dataset_class: type[ClipDataset],
        seed: int = 0,
        baseline: bool = False,
        freeze: tuple[str, ...] = (),
    ):
        self.baseline = baseline
        torch.manual_seed(seed)
        self.model = GazeAttentionNet(cfg, num_classes=data.num_classes).to(
            memory_format=torch.channels_last_3d
        )
        freeze_parameters(self.model, freeze)
        self.model.train()
        self.opt = torch.optim.SGD(
            self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5, foreach=True
        )
        records = data.split(1, "train")
        self.size = len(records)
        # As engine.train batches for a channels-last CPU model since 2026-12-03 (not `before`).
        cl = not baseline
        ds = dataset_class(
            data, records, train=True, frames=cfg.frames, crop=cfg.crop, grid=self.model.grid, seed=seed,
            channels_last=cl,
        )  # fmt: skip
        loader = torch.utils.data.DataLoader(
            SeededDraws(ds), batch_size=BATCH, sampler=ShardedInfiniteSampler(len(ds), seed=seed),
            num_workers=0, collate_fn=collate_channels_last if cl else None, generator=torch.Generator(),
        )  # fmt: skip
        self.batches = iter(loader)
        self.fixed = next(self.batches)

    def step(self, batch: dict) -> None:
        if self.baseline:
            with baseline_kernels():
                self._step(batch)
        else:
            self._step(batch)

    def _step(self, batch: dict) -> None:
        memory = torch.channels_last_3d
        rgb = batch["rgb"].contiguous(memory_format=memory)
        flow = batch["flow"].contiguous(memory_format=memory)
        with autocast_context(torch.device("cpu"), "fp32"):
            out = self.model(rgb, flow, gaze_mode=TRAIN_GAZE_MODE["direct"], tau=1.0)
        losses = training_losses(
            out, batch["label"], head=self.model.head, estimator="direct", eps=10.0,
            gaze_target=batch["gaze"], gaze_valid=batch["gaze_valid"], kl_weight=1.0,
        )  # fmt: skip
        self.opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 20.0)
        self.opt.step()
        torch.stack([losses["total"].detach(), norm]).double().cpu()

    def iteration(self) -> None:
        self.step(next(self.batches))

    def step_only(self) -> None:
        self.step(self.fixed)

    def flops(self) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            self.step_only()
        return float(counter.get_total_flops())


class Convolutions:
    """Every Conv3d call of one step of `variant`, replayed forward and backward on its own."""

    def __init__(self, variant: Variant) -> None:
        seen: list[tuple[torch.nn.Conv3d, torch.Tensor]] = []

        def record(module: torch.nn.Module, args: tuple) -> None:
            seen.append((module, args[0]))  # type: ignore[arg-type]

        convs = [m for m in variant.model.modules() if isinstance(m, torch.nn.Conv3d)]
        hooks = [m.register_forward_pre_hook(record) for m in convs]
        try:
            variant.step_only()
        finally:
            for h in hooks:
                h.remove()
        if not seen:
            raise RuntimeError("no Conv3d ran in a step")
        self.calls = []
        for module, x in seen:
            # empty_like keeps x's strides (channels-last or not); the values do not matter to
            # oneDNN's speed, but uninitialised memory could hold denormals, so fill it.
            xx = torch.empty_like(x).normal_().requires_grad_(x.requires_grad)
            w = module.weight.detach().clone().requires_grad_(module.weight.requires_grad)
            y = self._conv(module, xx, w)
            self.calls.append((module, xx, w, torch.empty_like(y).normal_()))

    @staticmethod
    def _conv(module: torch.nn.Conv3d, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv3d(x, w, None, module.stride, module.padding, module.dilation, module.groups)

    def run(self) -> None:
        for module, x, w, grad in self.calls:
            y = self._conv(module, x, w)
            wrt = [t for t in (x, w) if t.requires_grad]
            if wrt:
                torch.autograd.grad(y, wrt, grad)

    def flops(self) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            self.run()
        return float(counter.get_total_flops())


def round_robin(fns: dict[str, object], rounds: int, cpu: bool) -> dict[str, list[float]]:
    """Seconds per call of each variant, called in turn; `cpu`: process CPU seconds instead
    of wall-clock ones (with one thread, what the work costs however many other jobs share
    the cores; wall-clock time on a shared machine measures the other jobs too)."""
    clock = time.process_time if cpu else time.perf_counter
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = clock()
            fn()  # type: ignore[operator]
            times[name].append(clock() - t)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=8, help="timed rounds (each times every variant once)")
    p.add_argument("--data", type=Path, help="a prepared folder (default: a small synthetic one)")
    p.add_argument(
        "--threads", type=int, help="torch intra-op threads (default: torch's); 1 times in CPU seconds"
    )
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args()

    tmp = None
    if args.data is None:
        tmp = tempfile.TemporaryDirectory(prefix="train_speed-")
        args.data = make_data(Path(tmp.name))
    if args.threads:
        torch.set_num_threads(args.threads)
    fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"matmul 2048^2: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s")

    before = Variant(TINY_2026_11_30, PreparedData(args.data, cache=True), ClipDataset, baseline=True)
    mem = MemoryData(args.data)
    mem.preload(mem.split(1, "train"), demo_network().crop)
    after = Variant(demo_network(), mem, mem.dataset_class, freeze=finetune_preset().optim.freeze)
    # Warm-up: one pass over the training set each (fills the before path's frame cache).
    for v in (before, after):
        for _ in range(-(-v.size // BATCH)):
            v.iteration()
    convs = Convolutions(after)
    convs.run()
    flops = {"before": before.flops(), "after": after.flops(), "convolutions": convs.flops()}
    times = round_robin(
        {
            "iteration before": before.iteration,
            "iteration after": after.iteration,
            "step before": before.step_only,
            "step after": after.step_only,
            "convolutions after": convs.run,
        },
        args.rounds,
        cpu=torch.get_num_threads() == 1,
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    print(
        f"\n| {'CPU s, 1 thread' if torch.get_num_threads() == 1 else 'wall s'}, {args.rounds} rounds | before: best, median | after: best, median | speed-up: best, median |"
    )
    print("|---|---|---|---|")
    rows = {}
    for what in ("iteration", "step"):
        b, a = f"{what} before", f"{what} after"
        rows[what] = {
            "before_s": [best[b], med[b]], "after_s": [best[a], med[a]],
            "speedup": [best[b] / best[a], med[b] / med[a]],
        }  # fmt: skip
        print(
            f"| {what}: s per batch of {BATCH} | {best[b]:.3f}, {med[b]:.3f} | {best[a]:.3f}, {med[a]:.3f} | "
            f"{best[b] / best[a]:.2f}x, {med[b] / med[a]:.2f}x |"
        )
        print(f"| {what}: clips/s (best) | {BATCH / best[b]:.1f} | {BATCH / best[a]:.1f} | |")
    c = "convolutions after"
    rows["convolutions"] = {"after_s": [best[c], med[c]]}
    print(f"| the after step's {len(convs.calls)} convolutions alone | | {best[c]:.3f}, {med[c]:.3f} | |")
    ceiling = {"iteration": best["iteration before"] / best[c], "step": best["step before"] / best[c]}
    rows["ceiling"] = ceiling
    print(
        f"| ceiling (before / convolutions alone, best): what no change outside them can pass | | | "
        f"iteration {ceiling['iteration']:.2f}x, step {ceiling['step']:.2f}x |"
    )
    for k in ("before", "after"):
        rate = flops[k] / best[f"step {k}"] / 1e9
        print(
            f"| step {k}: {flops[k] / 1e9:.1f} GFLOP, {rate:.0f} GFLOP/s (best) = {100 * rate / fp32:.0f} % of fp32 matmul | | | |"
        )
    rate = flops["convolutions"] / best[c] / 1e9
    print(
        f"| convolutions after: {flops['convolutions'] / 1e9:.1f} GFLOP ({100 * flops['convolutions'] / flops['after']:.0f} % of the step's), "
        f"{rate:.0f} GFLOP/s (best) = {100 * rate / fp32:.0f} % of fp32 matmul; {100 * best[c] / best['step after']:.0f} % of the step's time | | | |"
    )
    cfgs = {"before": TINY_2026_11_30, "after": demo_network()}
    for k, c in cfgs.items():
        print(f"{k}: {c.frames} frames at {c.crop}x{c.crop}, width {c.width}, grid {c.grid}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": cpu_model(),
                    "threads": torch.get_num_threads(),
                    "matmul_fp32": fp32,
                    "matmul_bf16": bf16,
                    "flops": flops,
                    "times": times,
                    "summary": rows,
                    "date": time.strftime("%Y-%m-%d %H:%M"),
                },
                indent=1,
            )  # fmt: skip
        )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

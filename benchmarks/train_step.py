"""Training step and evaluation throughput of the `paper` network against the reference structure.

Paper geometry: two-stream I3D, 24 frames at 224x224, 106 classes, batch 1. A training step is
forward, the direct-optimization estimator (candidate losses for all N = T'*S*S gaze cells),
CE + KL + estimator term, backward, gradient clipping at 20 and an SGD step.

Variants, timed round-robin in one process (so that a change in machine load hits all alike):
- `reference fp32`: a re-implementation of the reference's structure: F.pad before every
  Unit3D convolution and max-pool (the pytorch-i3d `Unit3D` / `MaxPool3dSamePadding`),
  contiguous NCDHW, the N candidate losses by N head passes over N copies of x5
  (`gaze_attention.estimators.brute_force_candidate_losses`), one window at a time in
  evaluation.
- `ours fp32`: this package's network and `gaze_attention.losses.training_losses` (padding
  folded into the convolutions, closed-form candidate losses), as the engine runs it.
- `ours bf16 + channels_last_3d`: the same under bf16 autocast with channels_last_3d weights
  and inputs.
Achieved GFLOP/s use the FLOPs counted by `torch.utils.flop_counter` on our fp32 step, set
against a large matmul measured in the same process, in each precision: `% fp32 mm` is the
share of the fp32 matmul peak, `% own mm` the share of the peak of the variant's own precision
(fp32 or the low one). The choice `--precision auto` makes on this device is printed too.

    python benchmarks/train_step.py [--steps 3] [--windows 8] [--batch 8] [--train-batch 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import gaze_attention as ga
from gaze_attention.engine.evaluate import autocast_context
from gaze_attention.estimators import (
    brute_force_candidate_losses,
    direct_optimization_grad,
    direct_optimization_loss,
    gumbel_max,
    hard_argmax,
)
from gaze_attention.losses import gaze_kl_loss, training_losses
from gaze_attention.models.i3d import INCEPTION_CHANNELS

BN = dict(eps=1e-3, momentum=0.01)


# ----------------------------------------------------------------------------- reference structure


def _triple(v):
    return (v, v, v) if isinstance(v, int) else tuple(v)


def _same_pads(shape, kernel, stride) -> list[int]:
    """TF SAME padding as pytorch-i3d's compute_pad, in F.pad order (W, H, T)."""
    pads: list[int] = []
    for axis in (4, 3, 2):
        k, s, size = kernel[axis - 2], stride[axis - 2], shape[axis]
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return pads


class RefUnit3D(nn.Module):
    def __init__(self, cin: int, cout: int, kernel=1, stride=1) -> None:
        super().__init__()
        self.kernel, self.stride = _triple(kernel), _triple(stride)
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=False)
        self.bn = nn.BatchNorm3d(cout, **BN)

    def forward(self, x):
        x = F.pad(x, _same_pads(x.shape, self.kernel, self.stride))  # always, as the reference
        return F.relu(self.bn(self.conv3d(x)))


class RefMaxPool(nn.Module):
    def __init__(self, kernel, stride) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        return F.max_pool3d(F.pad(x, _same_pads(x.shape, self.kernel, self.stride)), self.kernel, self.stride)


class RefInception(nn.Module):
    def __init__(self, cin: int, ch) -> None:
        super().__init__()
        self.b0 = RefUnit3D(cin, ch[0])
        self.b1a = RefUnit3D(cin, ch[1])
        self.b1b = RefUnit3D(ch[1], ch[2], 3)
        self.b2a = RefUnit3D(cin, ch[3])
        self.b2b = RefUnit3D(ch[3], ch[4], 3)
        self.b3a = RefMaxPool((3, 3, 3), (1, 1, 1))
        self.b3b = RefUnit3D(cin, ch[5])
        self.out_channels = ch[0] + ch[2] + ch[4] + ch[5]

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class RefI3D(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = RefUnit3D(cin, 64, 7, 2)
        self.MaxPool3d_2a_3x3 = RefMaxPool((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = RefUnit3D(64, 64)
        self.Conv3d_2c_3x3 = RefUnit3D(64, 192, 3)
        self.MaxPool3d_3a_3x3 = RefMaxPool((1, 3, 3), (1, 2, 2))
        c = 192
        for name in ("Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d",
                     "Mixed_4e", "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c"):  # fmt: skip
            if name == "MaxPool3d_4a_3x3":
                setattr(self, name, RefMaxPool((3, 3, 3), (2, 2, 2)))
            elif name == "MaxPool3d_5a_2x2":
                setattr(self, name, RefMaxPool((2, 2, 2), (2, 2, 2)))
            else:
                m = RefInception(c, INCEPTION_CHANNELS[name])
                setattr(self, name, m)
                c = m.out_channels

    def forward(self, x):
        pool5 = None
        for name, m in self.named_children():
            x = m(x)
            if name == "MaxPool3d_5a_2x2":
                pool5 = x
        return pool5, x


class RefGaze(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.Mixed_5b = RefInception(832, INCEPTION_CHANNELS["Mixed_5b"])
        self.Mixed_5c = RefInception(832, INCEPTION_CHANNELS["Mixed_5c"])
        self.g1 = nn.Conv3d(1024, 256, (1, 3, 3), padding=(0, 1, 1))
        self.b1 = nn.BatchNorm3d(256, **BN)
        self.g2 = nn.Conv3d(256, 64, (1, 3, 3), padding=(0, 1, 1))
        self.b2 = nn.BatchNorm3d(64, **BN)
        self.g3 = nn.Conv3d(64, 1, 1)

    def forward(self, x4):
        x = self.Mixed_5c(self.Mixed_5b(x4))
        x = F.relu(self.b2(self.g2(F.relu(self.b1(self.g1(x))))))
        return self.g3(x).squeeze(1)


class RefHead(nn.Module):
    def __init__(self, num_classes: int, grid=(3, 7)) -> None:
        super().__init__()
        n = grid[0] * grid[1] ** 2
        self.fc = nn.Linear(n, n)
        self.fc_f = nn.Conv3d(1024, num_classes, 1)
        self.dropout = nn.Dropout(0.7)

    def forward(self, z, x5):
        b, t, s, _ = z.shape
        att = torch.sigmoid(self.fc(z.reshape(b, -1))).view(b, 1, t, s, s)
        f = F.avg_pool3d(x5 * att, x5.shape[2:]) + F.avg_pool3d(x5, x5.shape[2:])
        return self.fc_f(self.dropout(f)).flatten(1)


class RefNet(nn.Module):
    """Reference structure with our parameter names (so one state dict loads into both)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.model_rgb = RefI3D(3)
        self.backbone.model_flow = RefI3D(2)
        self.gaze = RefGaze()
        self.head = RefHead(num_classes)

    def features(self, rgb, flow):
        r4, r5 = self.backbone.model_rgb(rgb)
        f4, f5 = self.backbone.model_flow(flow)
        return r4 + f4, r5 + f5


# ----------------------------------------------------------------------------- steps


def ref_train_step(net: RefNet, opt, batch, eps: float) -> float:
    rgb, flow, labels, target, valid = batch
    x4, x5 = net.features(rgb, flow)
    pi = net.gaze(x4)  # [B, T', S, S]
    perturbed, z = gumbel_max(pi)
    logits = net.head(z, x5)
    ce = F.cross_entropy(logits, labels)
    kl = gaze_kl_loss(pi, target, valid)
    with torch.no_grad():
        net.head.eval()
        cand = brute_force_candidate_losses(net.head, z, x5.detach(), labels)  # N head passes
        net.head.train()
    do = direct_optimization_loss(perturbed, direct_optimization_grad(perturbed, z, cand, eps))
    loss = ce + kl + do
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 20.0)
    opt.step()
    return float(loss.detach())


def our_train_step(model, opt, batch, eps: float, precision: str, memory) -> float:
    rgb, flow, labels, target, valid = batch
    rgb, flow = rgb.contiguous(memory_format=memory), flow.contiguous(memory_format=memory)
    with autocast_context(rgb.device, precision):
        out = model(rgb, flow, gaze_mode="sample")
    losses = training_losses(out, labels, head=model.head, estimator="direct", eps=eps,
                             gaze_target=target, gaze_valid=valid)  # fmt: skip
    opt.zero_grad(set_to_none=True)
    losses["total"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
    opt.step()
    return float(losses["total"].detach())


@torch.no_grad()
def ref_eval_window(net: RefNet, rgb, flow):
    x4, x5 = net.features(rgb, flow)
    _, z = gumbel_max(net.gaze(x4))
    return net.head(z, x5)


@torch.no_grad()
def our_eval(model, rgb, flow, precision: str, memory):
    with autocast_context(rgb.device, precision):
        return model(rgb.contiguous(memory_format=memory), flow.contiguous(memory_format=memory)).logits


# ----------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def round_robin(fns: dict[str, Callable[[], object]], repeats: int, device) -> dict[str, list[float]]:
    """One warm-up call each, then `repeats` rounds calling every variant once per round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
        _sync(device)
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t)
    return times


def matmul_gflops(device, dtype, n: int = 4096, repeats: int = 5) -> float:
    """Best of `repeats` n x n matmuls into a preallocated output."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)
    torch.matmul(a, b, out=c)
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        torch.matmul(a, b, out=c)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def count_flops(fn: Callable[[], object]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5, help="timed training steps per variant")
    p.add_argument("--windows", type=int, default=8, help="evaluation windows per variant and round")
    p.add_argument("--batch", type=int, default=8, help="windows per batch in batched evaluation")
    p.add_argument("--eval-rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--train-batch", type=int, default=1, help="clips per timed training step")
    p.add_argument(
        "--low", default="bf16", choices=("bf16", "fp16"), help="low precision of the fast variant"
    )
    p.add_argument(
        "--compile", action="store_true", help="also time torch.compile of our low-precision model"
    )
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-eval", action="store_true")
    p.add_argument("--json", help="write the measurements here")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    classes = 106
    cl = torch.channels_last_3d
    contiguous = torch.contiguous_format

    ours = ga.build_model("paper", num_classes=classes).to(device)
    ref = RefNet(classes).to(device)
    ref.load_state_dict(ours.state_dict(), strict=True)  # same weights, same names
    ours_cl = ga.build_model("paper", num_classes=classes).to(device)
    ours_cl.load_state_dict(ours.state_dict())
    ours_cl.to(memory_format=cl)
    low = args.low
    info = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    results: dict[str, object] = {"info": info}

    g = torch.Generator().manual_seed(0)

    def batch_of(b: int):
        rgb = (torch.rand(b, 3, 24, 224, 224, generator=g) * 2 - 1).to(device)
        flow = (torch.rand(b, 2, 24, 224, 224, generator=g) * 2 - 1).to(device)
        labels = torch.randint(0, classes, (b,), generator=g).to(device)
        target = torch.zeros(b, 3, 7, 7)
        target[:, :, 3, 3] = 1
        return rgb, flow, labels, target.to(device), torch.ones(b, 3, dtype=torch.bool, device=device)

    # The re-implementation computes what our network computes (eval mode, argmax gaze).
    with torch.no_grad():
        rgb, flow = batch_of(1)[:2]
        ours.eval()
        ref.eval()
        mine = ours(rgb, flow, gaze_mode="argmax").logits
        x4, x5 = ref.features(rgb, flow)
        theirs = ref.head(hard_argmax(ref.gaze(x4)), x5)
        parity = float((mine - theirs).abs().max())
    results["parity_max_abs_logit_diff"] = parity

    peak32 = matmul_gflops(device, torch.float32)
    peak_low = matmul_gflops(device, torch.bfloat16 if low == "bf16" else torch.float16)
    results["matmul_gflops"] = {"fp32": peak32, low: peak_low}
    print(f"{info['device']}, {info['threads']} threads, torch {info['torch']}")
    print(f"large matmul: fp32 {peak32:.0f} GFLOP/s, {low} {peak_low:.0f} GFLOP/s")
    print(f"reference structure vs ours, max |logit difference|: {parity:.2e}")
    from gaze_attention.engine.precision import resolve_precision

    auto = resolve_precision("auto", device)
    results["auto"] = {"precision": auto.precision, "reason": auto.reason}
    print(f"--precision auto here: {auto}")

    if not args.skip_train:
        train_batch = batch_of(args.train_batch)
        # The reference: torch's default SGD; ours: the engine's optimizer (foreach, see train.py).
        opts = {
            "ref": torch.optim.SGD(ref.parameters(), lr=1e-6, momentum=0.9, weight_decay=4e-5),
            **{
                n: torch.optim.SGD(m.parameters(), lr=1e-6, momentum=0.9, weight_decay=4e-5, foreach=True)
                for n, m in (("ours", ours), ("ours_cl", ours_cl))
            },
        }
        for m in (ref, ours, ours_cl):
            m.train()
        eps = 1.0
        flops = count_flops(lambda: our_train_step(ours, opts["ours"], train_batch, eps, "fp32", contiguous))
        fns = {
            "reference fp32": lambda: ref_train_step(ref, opts["ref"], train_batch, eps),
            "ours fp32": lambda: our_train_step(ours, opts["ours"], train_batch, eps, "fp32", contiguous),
            "ours fp32 + channels_last_3d": lambda: our_train_step(
                ours_cl, opts["ours_cl"], train_batch, eps, "fp32", cl
            ),
            f"ours {low} + channels_last_3d": lambda: our_train_step(
                ours_cl, opts["ours_cl"], train_batch, eps, low, cl
            ),
        }
        if args.compile:
            compiled = torch.compile(ours_cl)
            fns[f"ours {low} + channels_last_3d + compile"] = lambda: our_train_step(
                compiled, opts["ours_cl"], train_batch, eps, low, cl
            )
        times = round_robin(fns, args.steps, device)
        # Best of N is the reading least disturbed by other processes; the median is shown too.
        base = min(times["reference fp32"])
        print(
            f"\ntraining step, batch {args.train_batch} ({flops / 1e9:.0f} GFLOP counted), {args.steps} rounds:"
        )
        print(
            f"{'variant':42s} {'best s':>7s} {'median':>7s} {'speed-up':>9s} {'GFLOP/s':>8s} {'% fp32 mm':>9s}"
            f" {'% own mm':>9s}"
        )
        rows = {}
        for name, ts in times.items():
            best, med = min(ts), statistics.median(ts)
            rate = flops / best / 1e9
            own = peak_low if f" {low}" in name else peak32  # the peak of the variant's precision
            rows[name] = {"seconds": ts, "best_s": best, "median_s": med, "speedup": base / best,
                          "speedup_median": statistics.median(times["reference fp32"]) / med, "gflops": rate,
                          "fraction_of_fp32_peak": rate / peak32, "fraction_of_own_peak": rate / own}  # fmt: skip
            print(
                f"{name:42s} {best:7.2f} {med:7.2f} {base / best:8.2f}x {rate:8.0f} {100 * rate / peak32:8.0f}%"
                f" {100 * rate / own:8.0f}%"
            )
        results["train_step"] = {"gflop": flops / 1e9, "variants": rows}

    if not args.skip_eval:
        for m in (ref, ours, ours_cl):
            m.eval()
        one = batch_of(1)[:2]
        many = batch_of(args.batch)[:2]
        n_batches = max(1, args.windows // args.batch)
        w_batched = n_batches * args.batch

        def windows_one(fn) -> Callable[[], None]:
            def run() -> None:
                for _ in range(args.windows):
                    fn(*one)

            return run

        def windows_batched(fn) -> Callable[[], None]:
            def run() -> None:
                for _ in range(n_batches):
                    fn(*many)

            return run

        fns = {
            "reference fp32, one window at a time": windows_one(lambda r, f: ref_eval_window(ref, r, f)),
            "ours fp32, one window at a time": windows_one(
                lambda r, f: our_eval(ours, r, f, "fp32", contiguous)
            ),
            f"ours fp32, batches of {args.batch}": windows_batched(
                lambda r, f: our_eval(ours, r, f, "fp32", contiguous)
            ),
            f"ours {low} + channels_last_3d, one window at a time": windows_one(
                lambda r, f: our_eval(ours_cl, r, f, low, cl)
            ),
            f"ours {low} + channels_last_3d, batches of {args.batch}": windows_batched(
                lambda r, f: our_eval(ours_cl, r, f, low, cl)
            ),
        }
        counts = {k: (args.windows if "one window" in k else w_batched) for k in fns}
        times = round_robin(fns, args.eval_rounds, device)
        rates = {k: counts[k] / min(v) for k, v in times.items()}
        base = rates["reference fp32, one window at a time"]
        print(f"\nevaluation windows/s (24x224x224, two streams), best of {args.eval_rounds} rounds:")
        for k, r in rates.items():
            print(f"{k:55s} {r:7.2f} windows/s  {r / base:5.2f}x")
        results["eval"] = {
            k: {"windows_per_s": r, "speedup": r / base, "seconds": times[k]} for k, r in rates.items()
        }

    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()

"""CPU evaluation in channels_last_3d against contiguous, as `evaluate`, `predict` and
`visualize` run an I3D model since 2026-12-01 (`engine.inference.use_cpu_layout`).

Two measurements, each timed round-robin in one process (best and median of the rounds):

- `tiny`: `engine.evaluate.evaluate` of the demo's network (`tiny` with the `tiny-finetune`
  fields) over the test split of a small synthetic set (--data PREPARED, or one made in a
  temporary folder), argmax gaze, batches of 32 as the demo evaluates;
- `paper`: one forward pass of the paper network over 2 windows of 24x224^2 (untrained
  weights: the cost does not depend on them), argmax gaze;
- `tiny` in channels_last_3d at each of --batch-sizes windows per forward pass (the demo
  evaluated in batches of 32 until 2026-12-02, in 8 since), as ratios to the first size, with
  the largest change of a logit against the first size (0 where the kernels sum alike).

It prints the machine (CPU model, threads, a 2048^2 fp32 matmul rate), seconds per call in
each layout and the ratio, and checks that the two layouts give the same logits to rounding.

    python benchmarks/eval_layout.py [--rounds 3] [--data PREPARED] [--threads N] [--batch-sizes 32 4 8 16]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_speed import demo_network, make_data, matmul_gflops  # noqa: E402

from gaze_attention.data.memory import MemoryData  # noqa: E402
from gaze_attention.engine.evaluate import evaluate  # noqa: E402
from gaze_attention.engine.inference import use_cpu_layout  # noqa: E402
from gaze_attention.engine.precision import cpu_model  # noqa: E402
from gaze_attention.models import GazeAttentionNet, build_model  # noqa: E402


def both_layouts(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    cl = copy.deepcopy(model)
    assert use_cpu_layout(cl, "cpu")
    return {"contiguous": model.eval(), "channels_last_3d": cl.eval()}


def timed(fns: dict[str, object], rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up: oneDNN picks its kernels on the first call
        fn()  # type: ignore[operator]
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()  # type: ignore[operator]
            out[k].append(time.perf_counter() - t)
    return out


def report(name: str, times: dict[str, list[float]]) -> None:
    c, cl = times["contiguous"], times["channels_last_3d"]
    print(
        f"| {name} | {min(c):.2f}, {statistics.median(c):.2f} | {min(cl):.2f}, {statistics.median(cl):.2f} | "
        f"{min(c) / min(cl):.2f}x, {statistics.median(c) / statistics.median(cl):.2f}x |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (each times both layouts once)")
    p.add_argument("--data", type=Path, help="a prepared folder (default: a small synthetic one)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 4, 8, 16],
                   help="windows per pass for the batch-size table; ratios are to the first")  # fmt: skip
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = None
    if args.data is None:
        tmp = tempfile.TemporaryDirectory(prefix="eval_layout-")
        args.data = make_data(Path(tmp.name), per_class=2)
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"matmul 2048^2: fp32 {matmul_gflops(torch.float32):.0f} GFLOP/s")
    print("\n| wall s per call | contiguous: best, median | channels_last_3d: best, median | speed-up: best, median |")
    print("|---|---|---|---|")

    data = MemoryData(args.data)
    torch.manual_seed(0)
    models = both_layouts(GazeAttentionNet(demo_network(), num_classes=data.num_classes))
    results: dict[str, dict] = {}

    def run_eval(k: str) -> None:
        results[k] = evaluate(models[k], data, 1, gaze_mode="argmax", batch_size=32)

    times = timed({k: (lambda k=k: run_eval(k)) for k in models}, args.rounds)
    n = len(results["contiguous"]["clips"])
    report(f"`tiny` (demo network): evaluate {n} clips", times)
    for a, b in zip(results["contiguous"]["clips"], results["channels_last_3d"]["clips"], strict=True):
        torch.testing.assert_close(torch.tensor(a["logits"]), torch.tensor(b["logits"]), rtol=1e-4, atol=1e-4)

    torch.manual_seed(0)
    models = both_layouts(build_model("paper", num_classes=106))
    g = torch.Generator().manual_seed(0)
    rgb, flow = torch.randn(2, 3, 24, 224, 224, generator=g), torch.randn(2, 2, 24, 224, 224, generator=g)
    logits: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def forward(k: str) -> None:
        fmt = torch.channels_last_3d if k == "channels_last_3d" else torch.contiguous_format
        out = models[k](rgb.contiguous(memory_format=fmt), flow.contiguous(memory_format=fmt), gaze_mode="argmax")
        logits[k] = out.logits

    times = timed({k: (lambda k=k: forward(k)) for k in models}, args.rounds)
    report("`paper`: forward, 2 windows of 24x224^2", times)
    torch.testing.assert_close(logits["contiguous"], logits["channels_last_3d"], rtol=1e-3, atol=1e-3)
    print("\nlogits equal to rounding in both layouts")

    print("\n| `tiny`, channels_last_3d: windows per pass | wall s per evaluate: best, median | speed-up over "
          f"{args.batch_sizes[0]}: best, median | largest logit change |")  # fmt: skip
    print("|---|---|---|---|")
    torch.manual_seed(0)
    net = GazeAttentionNet(demo_network(), num_classes=data.num_classes).eval()
    use_cpu_layout(net, "cpu")
    by_size: dict[int, dict] = {}

    def run_size(b: int) -> None:
        by_size[b] = evaluate(net, data, 1, gaze_mode="argmax", batch_size=b)

    times = timed({b: (lambda b=b: run_size(b)) for b in args.batch_sizes}, args.rounds)
    first = args.batch_sizes[0]
    for b in args.batch_sizes:
        t, t0 = times[b], times[first]
        moved = max(
            max(abs(x - y) for x, y in zip(a["logits"], c["logits"], strict=True))
            for a, c in zip(by_size[first]["clips"], by_size[b]["clips"], strict=True)
        )  # fmt: skip
        print(f"| {b} | {min(t):.2f}, {statistics.median(t):.2f} | {min(t0) / min(t):.2f}x, "
              f"{statistics.median(t0) / statistics.median(t):.2f}x | {moved:.1e} |")  # fmt: skip
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

"""Direct-optimization step: closed form vs the reference's brute force.

The step is: candidate losses for every (slice, cell) of every sample, then the per-slice
argmax of pi~ - eps * loss and the gradient (z - z_eps) / eps. The reference evaluates the
candidate losses with N = T'*S*S head passes over N copies of x5 (one sample per call);
ours folds the classifier into x5 and needs a few small matrix products.

Both run on the same inputs (paper geometry: C_f = 1024, T' = 3, S = 7, 106 classes) and
their gradients must be identical. Each timing and memory reading runs in a fresh process so
that peak resident memory is that method's own (large allocations are mmapped, see
MALLOC_MMAP_THRESHOLD_ below, so freed memory leaves the resident set).

    python benchmarks/estimator.py [--batches 1 4 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def _inputs(batch: int, seed: int = 0):
    import gaze_attention as ga
    from gaze_attention.models.gaze_attention import AttentionHead

    g = torch.Generator().manual_seed(seed)
    head = AttentionHead(features=1024, num_classes=106, grid=(3, 7)).eval()
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    features = torch.randn(batch, 1024, 3, 7, 7, generator=g).relu()
    pi = torch.randn(batch, 3, 7, 7, generator=g)
    perturbed, z = ga.estimators.gumbel_max(pi, generator=g)
    labels = torch.randint(0, 106, (batch,), generator=g)
    return head, features, perturbed, z, labels


def reference_head(head):
    """The reference's head forward: elementwise attention, two AvgPool3d, Conv3d classifier."""

    def forward(z: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        t_slices, side = z.shape[1], z.shape[-1]
        a = head.fc(z.flatten(1)).view(-1, 1, t_slices, side, side)
        kernel = (t_slices, side, side)
        f = F.avg_pool3d(features * torch.sigmoid(a), kernel) + F.avg_pool3d(features, kernel)
        return head.fc_f(head.dropout(f)).flatten(1)

    return forward


def _step(method: str, head, features, perturbed, z, labels, eps: float = 1.0) -> torch.Tensor:
    from gaze_attention import estimators as est

    with torch.no_grad():
        if method == "closed":
            cand = head.candidate_losses(z, features, labels)
        else:
            cand = est.brute_force_candidate_losses(reference_head(head), z, features, labels)
        return est.direct_optimization_grad(perturbed, z, cand, eps)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(method: str, batch: int, repeats: int) -> dict:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    inputs = _inputs(batch)
    _step(method, *inputs)  # warm-up (and first-touch allocations)
    before = _rss_bytes()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        grad = _step(method, *inputs)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # The peak during the timed calls, over what was resident when they began.
    extra = max(0, peak - before) if peak > peak_before else 0
    return {"time_s": sorted(times)[len(times) // 2], "extra_bytes": extra, "grad": grad.tolist()}


def run_in_subprocess(method: str, batch: int, repeats: int) -> dict:
    """Time with the default allocator; read memory in a second process where every large
    allocation is mmapped (so a freed block leaves the resident set and the peak is honest)."""
    result = {}
    for mode, env in (("time", {}), ("memory", {"MALLOC_MMAP_THRESHOLD_": "65536"})):
        out = subprocess.run(
            [sys.executable, __file__, "--worker", method, str(batch), str(repeats)],
            env=dict(os.environ, **env),
            check=True,
            capture_output=True,
            text=True,
        )
        reading = json.loads(out.stdout.strip().splitlines()[-1])
        if mode == "time":
            result.update(time_s=reading["time_s"], grad=reading["grad"])
        else:
            result["extra_bytes"] = reading["extra_bytes"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, batch, repeats = args.worker[0], int(args.worker[1]), int(args.worker[2])
        print(json.dumps(worker(method, batch, repeats)))
        return

    print(f"torch {torch.__version__}, {os.environ.get('BENCH_THREADS', '2')} threads, paper geometry (N = 147)")
    print("| B | brute force (ms) | closed form (ms) | speed-up | brute extra MiB | closed extra MiB | memory ratio | identical |")
    print("|---|---|---|---|---|---|---|---|")
    for batch in args.batches:
        brute = run_in_subprocess("brute", batch, args.repeats)
        closed = run_in_subprocess("closed", batch, max(args.repeats, 20))
        same = brute["grad"] == closed["grad"]
        mib = 1024 * 1024
        ratio = brute["extra_bytes"] / max(closed["extra_bytes"], 4096)
        print(
            f"| {batch} | {brute['time_s'] * 1e3:.1f} | {closed['time_s'] * 1e3:.2f} | "
            f"{brute['time_s'] / closed['time_s']:.0f}x | {brute['extra_bytes'] / mib:.1f} | "
            f"{closed['extra_bytes'] / mib:.2f} | {'>=' if closed['extra_bytes'] < 4096 else ''}{ratio:.0f}x | "
            f"{'yes' if same else 'NO'} |"
        )


if __name__ == "__main__":
    main()

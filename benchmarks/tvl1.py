"""Speed of the PyTorch TV-L1 (`prepare --flow tvl1-torch`) against OpenCV's, and the EGTEA estimate.

Frame pairs of the synthetic generator at the stored size (340x256 by default). OpenCV's
DualTVL1 runs one pair at a time on one thread (what each `prepare` worker does); the PyTorch
version runs batches of pairs on --device (cpu or cuda). Printed per batch size: frame pairs
per second, and the time EGTEA Gaze+'s ~1.05 million frames would take on one such device.
The agreement with OpenCV on the timed pairs (mean end-point error, share of identical 8-bit
flow values) is printed too, so the speed is never of a different computation.

    python benchmarks/tvl1.py [--device cuda] [--size 340x256] [--batches 1,8,32] [--pairs 64]
                              [--opencv-pairs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
import torch

EGTEA_FRAMES = 1_050_000  # ~10,300 clips (README, "Speed")


def _size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pairs_of(size: tuple[int, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """n consecutive grey frame pairs [n, H, W] of synthetic clips (several clips for variety)."""
    from gaze_attention.data.synthetic import render_clip

    rng = np.random.default_rng(0)
    grey = []
    while sum(len(g) - 1 for g in grey) < n:
        frames, *_ = render_clip(rng, int(rng.integers(6)), int(rng.integers(6)), 6, 6, 17, size)
        grey.append(np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]))
    i0 = np.concatenate([g[:-1] for g in grey])[:n]
    i1 = np.concatenate([g[1:] for g in grey])[:n]
    return i0, i1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:N")
    p.add_argument("--size", type=_size, default=(340, 256), help="WxH of the frames (prepare's --size)")
    p.add_argument("--batches", default="1,8,32", help="batch sizes (frame pairs per call) to time")
    p.add_argument("--pairs", type=int, default=64, help="frame pairs timed per batch size (GPU)")
    p.add_argument("--opencv-pairs", type=int, default=3, help="pairs timed with OpenCV (1.3 s each at 340x256)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", help="write the measurements here")
    args = p.parse_args()

    from gaze_attention.data.flow import encode_flow
    from gaze_attention.data.tvl1 import resolve_device, tvl1

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    n = max(args.pairs, max(batches)) if device.type == "cuda" else max(batches)
    i0, i1 = pairs_of(args.size, n)
    w, h = args.size
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"TV-L1 at {w}x{h}; torch {torch.__version__} on {device} ({name}); OpenCV {cv2.__version__}")
    results: dict = {"size": [w, h], "device": str(device), "device_name": name, "torch": torch.__version__}

    cv2.setNumThreads(1)
    algo = cv2.optflow.DualTVL1OpticalFlow_create()
    k = min(args.opencv_pairs, n)
    t = time.perf_counter()
    ref = np.stack([algo.calc(i0[j], i1[j], None) for j in range(k)])
    cv_s = (time.perf_counter() - t) / k
    results["opencv_s_per_pair"] = cv_s
    print(f"OpenCV DualTVL1, 1 thread: {1 / cv_s:7.2f} pairs/s  -> EGTEA {cv_s * EGTEA_FRAMES / 3600:7.1f} h per core")

    t0 = torch.from_numpy(i0).to(device)
    t1 = torch.from_numpy(i1).to(device)
    tvl1(t0[:1], t1[:1])  # warm-up: CUDA context, kernels
    _sync(device)
    results["batches"] = {}
    for b in batches:
        todo = n if device.type == "cuda" else b  # on a CPU one batch is slow enough
        done = 0
        out = []
        t = time.perf_counter()
        while done < todo:
            e = min(done + b, todo)
            out.append(tvl1(t0[done:e], t1[done:e]))
            done = e
        _sync(device)
        sec = (time.perf_counter() - t) / todo
        flow = torch.cat(out).permute(0, 2, 3, 1).cpu().numpy()
        epe = float(np.linalg.norm(flow[:k] - ref[: min(k, todo)], axis=-1).mean()) if todo >= k else float("nan")
        same = float((encode_flow(flow[:k]) == encode_flow(ref[:k])).mean()) if todo >= k else float("nan")
        mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        results["batches"][b] = {"s_per_pair": sec, "pairs_per_s": 1 / sec, "egtea_hours": sec * EGTEA_FRAMES / 3600,
                                 "epe_vs_opencv": epe, "identical_8bit": same, "max_mem_mib": mem}  # fmt: skip
        print(
            f"torch TV-L1, batch {b:3d}: {1 / sec:7.2f} pairs/s  -> EGTEA {sec * EGTEA_FRAMES / 3600:7.1f} h "
            f"on this device; vs OpenCV: EPE {epe:.3f} px, {100 * same:.1f} % identical 8-bit values"
            + (f"; peak memory {mem:.0f} MiB" if device.type == "cuda" else "")
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()

"""Data pipeline speed: optical flow per frame, `prepare` throughput, loader throughput.

All on synthetic clips (`gaze_attention.data.synthetic`), so it runs anywhere:

- flow: ms per frame pair for tvl1 / dis / farneback at the stored size, OpenCV on one thread
  (what each `prepare` worker uses), as wall time and as CPU time;
- prepare: CPU ms per frame per flow method (one process), and clips per minute with
  `--workers N` (worker start-up included);
- loader: two-stream training clips per second (T x crop^2, RGB + flow + gaze targets) with
  0 and 2 DataLoader workers, and CPU ms per clip (issue 3's target: >= 20 clips/s with 2
  workers on 2 cores).

CPU times stay meaningful on a shared, busy machine where wall times do not; the 1-minute load
average is printed with the results.

    python benchmarks/data.py [--size 340x256] [--clips 12] [--workers 2] [--tvl1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def _size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.split("x"))
    return w, h


def bench_flow(size: tuple[int, int], pairs: int = 8) -> dict:
    from gaze_attention.data.flow import FlowComputer
    from gaze_attention.data.synthetic import render_clip

    frames, *_ = render_clip(np.random.default_rng(0), 3, 0, 2, 4, pairs + 1, size)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    out = {}
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    for method in ("tvl1", "dis", "farneback"):
        fc = FlowComputer(method)
        fc(grey[0], grey[1])  # warm-up
        n = 3 if method == "tvl1" else pairs
        t, c = time.perf_counter(), time.process_time()
        for i in range(n):
            fc(grey[i], grey[i + 1])
        out[f"flow_{method}_wall_ms_per_frame"] = (time.perf_counter() - t) / n * 1e3
        out[f"flow_{method}_cpu_ms_per_frame"] = (time.process_time() - c) / n * 1e3
    cv2.setNumThreads(threads)
    return out


def bench_prepare(root: Path, size: tuple[int, int], clips: int, workers: int, tvl1: bool) -> dict:
    from gaze_attention.data.prepare import prepare
    from gaze_attention.data.synthetic import make_synthetic_raw

    raw = root / "raw"
    per_class = max(1, clips // 4)
    make_synthetic_raw(
        raw, num_classes=4, train_per_class=per_class, test_per_class=0, size=size, frames=(24, 40)
    )
    out = {}
    for method in ("none", "dis", "farneback") + (("tvl1",) if tvl1 else ()):
        # CPU cost per frame: one process, no pool start-up in the figure.
        dst = root / f"prep1_{method}"
        c = time.process_time()
        r = prepare(raw, dst, flow=method, size=size, workers=1, progress=False)
        dc = time.process_time() - c
        assert r.ok, r.summary()
        frames = sum(json.loads(line)["num_frames"] for line in open(dst / "manifest.jsonl"))
        out[f"prepare_{method}_cpu_ms_per_frame"] = dc / frames * 1e3
        # Throughput with the worker processes, start-up included.
        dst = root / f"prep_{method}"
        t = time.perf_counter()
        r = prepare(raw, dst, flow=method, size=size, workers=workers, progress=False)
        assert r.ok, r.summary()
        out[f"prepare_{method}_clips_per_min_{workers}workers"] = (
            len(r.prepared) / (time.perf_counter() - t) * 60
        )
    return out


def bench_loader(prepared: Path, frames: int, crop: int, seconds: float = 8.0) -> dict:
    from torch.utils.data import DataLoader

    from gaze_attention.data import ClipDataset, PreparedData, seed_worker

    data = PreparedData(prepared)
    records = data.split(1, "train")
    ds = ClipDataset(data, records * 50, train=True, frames=frames, crop=crop, grid=(frames // 8, crop // 32))
    out = {}
    n, c = 0, time.process_time()
    for i in range(20):
        ds[i]
        n += 1
    out["loader_cpu_ms_per_clip"] = (time.process_time() - c) / n * 1e3
    for workers in (0, 2):
        dl = DataLoader(ds, batch_size=4, num_workers=workers, worker_init_fn=seed_worker, shuffle=True)
        it = iter(dl)
        next(it)  # workers started, first batch out
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            n += len(next(it)["label"])
        out[f"loader_{workers}workers_clips_per_s"] = n / (time.perf_counter() - t)
        del it
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=_size, default=(340, 256), help="stored frame size WxH")
    ap.add_argument("--clips", type=int, default=12, help="synthetic clips for the prepare timing")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--tvl1", action="store_true", help="also time `prepare --flow tvl1` (slow)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    results: dict = {
        "size": list(args.size),
        "cpus": os.cpu_count(),
        "load_avg_1min_start": os.getloadavg()[0],
    }
    results.update(bench_flow(args.size))
    with tempfile.TemporaryDirectory() as tmp:
        results.update(bench_prepare(Path(tmp), args.size, args.clips, args.workers, args.tvl1))
        results.update(bench_loader(Path(tmp) / "prep_dis", args.frames, args.crop))
    results["load_avg_1min_end"] = os.getloadavg()[0]
    for k, v in results.items():
        print(f"{k:40s} {v:.2f}" if isinstance(v, float) else f"{k:40s} {v}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""`predict` on long videos: peak resident memory and windows per second.

A 640x480 video of a moving pattern is generated (H.264, cached in --cache), then each
(preset, length) runs `predict_video` in a fresh process, so that the peak resident set
(ru_maxrss) is that run's own: decoding, resizing to 340x256, DIS flow on the fly, windows of
the preset's network (untrained weights: the cost does not depend on them), the timeline.
Peak memory should stay flat as the video grows: only the windows in flight are held.

    nice -n 15 python benchmarks/predict_memory.py --preset tiny --minutes 1 5 30
    nice -n 15 python benchmarks/predict_memory.py --preset paper --minutes 0.5 2 --precision bf16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path


def make_video(path: Path, minutes: float, fps: int = 24, size: tuple[int, int] = (640, 480)) -> Path:
    """A `minutes`-long H.264 video: a gradient with a square moving across it (streamed, small memory)."""
    import av
    import numpy as np

    if path.is_file():
        return path
    w, h = size
    tmp = path.with_suffix(".part.mp4")
    base = np.empty((h, w, 3), np.uint8)
    base[...] = np.linspace(30, 200, w, dtype=np.uint8)[None, :, None]
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        for i in range(int(round(minutes * 60 * fps))):
            frame = base.copy()
            x, y = (7 * i) % (w - 80), (3 * i) % (h - 80)
            frame[y : y + 80, x : x + 80] = (240, 190, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    os.replace(tmp, path)
    return path


def run_one(video: str, preset: str, precision: str, batch_size: int | None) -> dict:
    """Inside the child process: one predict_video, then its own peak RSS."""
    import torch

    import gaze_attention as ga
    from gaze_attention.engine.predict import predict_video

    torch.manual_seed(0)
    model = ga.build_model(preset, num_classes=106).eval()
    names = [f"class {i}" for i in range(106)]
    t0 = time.perf_counter()
    result = predict_video(model, video, names, gaze_mode="argmax", precision=precision, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    return {
        "frames": result["frames"],
        "windows": len(result["windows"]),
        "seconds": seconds,
        "windows_per_s": len(result["windows"]) / seconds,
        "frames_per_s": result["frames"] / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("tiny", "paper"), default="tiny")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 5.0])
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--cache", default="/tmp/gaze_attention_bench", help="folder for the generated videos")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.preset, args.precision, args.batch_size)))
        return

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"preset {args.preset}, {args.precision}, 640x480 at {args.fps} fps, DIS flow, argmax gaze")
    print(f"{'minutes':>8} {'frames':>7} {'windows':>7} {'seconds':>8} {'win/s':>7} {'frames/s':>8} {'peak RSS MB':>11}")
    for minutes in args.minutes:
        t0 = time.perf_counter()
        video = make_video(cache / f"bench_{minutes:g}min_{args.fps}fps.mp4", minutes, args.fps)
        made = time.perf_counter() - t0
        cmd = [sys.executable, __file__, "--child", str(video), "--preset", args.preset, "--precision",
               args.precision] + (["--batch-size", str(args.batch_size)] if args.batch_size else [])  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        row = {"minutes": minutes, "video_seconds_to_make": made, **json.loads(out.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(f"{minutes:8g} {row['frames']:7d} {row['windows']:7d} {row['seconds']:8.1f} {row['windows_per_s']:7.2f} "
              f"{row['frames_per_s']:8.1f} {row['peak_rss_mb']:11.0f}", flush=True)  # fmt: skip
    if len(rows) > 1:
        print(f"peak RSS, longest / shortest video: {rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}x "
              f"for {rows[-1]['frames'] / rows[0]['frames']:.1f}x the frames")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"preset": args.preset, "precision": args.precision, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

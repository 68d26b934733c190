"""Seconds per training step and peak memory of a ViT backbone preset, with and without
gradient checkpointing (the GPU check of docs/gpu.md; runs on the CPU too).

    python benchmarks/vit_step.py --device cuda [--preset vit-b] [--batch 8] [--steps 5] [--precision bf16]

The step is the full method: forward in gaze mode "sample", CE + direct-optimization loss,
backward, AdamW. Memory: torch.cuda.max_memory_allocated on a GPU, the process's peak RSS on
the CPU (which includes the model and the input).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gaze_attention.losses import training_losses  # noqa: E402
from gaze_attention.models import build_model  # noqa: E402


def step_time(preset: str, device: torch.device, batch: int, steps: int, precision: str, checkpointing: bool,
              frames: int | None, crop: int | None) -> tuple[float, float]:
    over = {k: v for k, v in (("frames", frames), ("crop", crop)) if v is not None}
    net = build_model(preset, num_classes=106, backbone_config={"grad_checkpointing": checkpointing}, **over)
    net.to(device).train()
    cfg = net.config
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    rgb = torch.rand(batch, 3, cfg.frames, cfg.crop, cfg.crop, device=device) * 2 - 1
    labels = torch.randint(0, cfg.num_classes, (batch,), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    t0 = 0.0
    for i in range(steps + 1):  # the first step warms up (kernel selection, allocator)
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = net(rgb, None, gaze_mode="sample")
        loss = training_losses(out, labels, head=net.head, estimator="direct", eps=1.0)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return (time.perf_counter() - t0) / steps, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="vit-b")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="bf16")
    ap.add_argument("--frames", type=int, default=None, help="override the preset's frames")
    ap.add_argument("--crop", type=int, default=None, help="override the preset's crop")
    args = ap.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.preset} on {name}, batch {args.batch}, {args.precision}, torch {torch.__version__}")
    for checkpointing in (False, True):
        sec, peak = step_time(args.preset, device, args.batch, args.steps, args.precision, checkpointing,
                              args.frames, args.crop)
        what = "peak GPU memory" if device.type == "cuda" else "peak RSS"
        print(f"  gradient checkpointing {str(checkpointing):5}: {sec:.3f} s/step, {what} {peak:.2f} GiB")


if __name__ == "__main__":
    main()

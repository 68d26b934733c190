"""Our ViT-B VideoMAE backbone against Hugging Face transformers' VideoMAEModel, in one process.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/backbones.py [--frames 8] [--reps 3]

Both run the same random ViT-B/16 weights (ours loaded from the folder `save_pretrained`
writes) on one clip of FRAMES x 224 x 224: forward (no grad) and a training step (forward,
backward of a squared-mean loss), fp32 and bf16 autocast, best of REPS with ours and theirs
interleaved. Peak memory of our training step with and without gradient checkpointing: each
in a fresh subprocess, the process's peak RSS (`resource.getrusage` ru_maxrss) after one step
minus its RSS (/proc/self/statm) before it, the model (random weights) and input built; and
the activations autograd saves for backward (`saved_tensors_hooks`, weights excluded), which
the allocator's reuse of freed memory does not blur.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gaze_attention.engine.precision import cpu_matmul_probe, cpu_model  # noqa: E402
from gaze_attention.models import BackboneWeightsWarning, VideoMAE, build_model  # noqa: E402


def _ours(folder: Path, frames: int, checkpointing: bool = False) -> VideoMAE:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackboneWeightsWarning)
        net = build_model("vit-b", backbone_weights=folder, frames=frames, num_classes=2,
                          backbone_config={"grid": None, "drop_path": 0.0, "grad_checkpointing": checkpointing})
    return net.backbone


def _step_fn(model: torch.nn.Module, x: torch.Tensor, ours: bool, train: bool, bf16: bool):
    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if train:
                model.zero_grad(set_to_none=True)
                out = model.tokens(x)[1] if ours else model(pixel_values=x.transpose(1, 2)).last_hidden_state
                out.float().square().mean().backward()
            else:
                with torch.no_grad():
                    model.tokens(x) if ours else model(pixel_values=x.transpose(1, 2))
    return run


def timings(folder: Path, hf: torch.nn.Module, frames: int, reps: int) -> list[dict]:
    ours = _ours(folder, frames).train()
    hf.train()
    x = torch.randn(1, 3, frames, 224, 224)
    rows = []
    for train in (False, True):
        for bf16 in (False, True):
            fns = [_step_fn(ours, x, True, train, bf16), _step_fn(hf, x, False, train, bf16)]
            for f in fns:
                f()  # warm-up
            best = [float("inf"), float("inf")]
            for _ in range(reps):
                for k, f in enumerate(fns):
                    t = time.perf_counter()
                    f()
                    best[k] = min(best[k], time.perf_counter() - t)
            rows.append({"what": "train step" if train else "forward", "precision": "bf16" if bf16 else "fp32",
                         "ours_s": best[0], "hf_s": best[1], "speedup": best[1] / best[0]})
    return rows


def peak_memory(frames: int, checkpointing: bool) -> tuple[float, float]:
    """(MiB of peak RSS over one fp32 training step above the RSS before it, MiB of activations
    autograd saved for backward), in a fresh process (this script with --memory-child)."""
    cmd = [sys.executable, __file__, "--memory-child", "--frames", str(frames)]
    out = subprocess.run(cmd + (["--checkpointing"] if checkpointing else []), capture_output=True, text=True,
                         check=True)
    rss, saved = out.stdout.strip().splitlines()[-1].split()
    return float(rss), float(saved)


def _rss_mib() -> float:
    """Resident set size now (MiB), from /proc/self/statm."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def memory_child(frames: int, checkpointing: bool) -> None:
    # Random weights, not loaded ones: loading holds extra copies whose peak would hide the step's.
    m = build_model("vit-b", frames=frames, num_classes=2,
                    backbone_config={"grid": None, "drop_path": 0.0, "grad_checkpointing": checkpointing}).backbone
    m.train()
    x = torch.randn(1, 3, frames, 224, 224)
    weights = {p.data_ptr() for p in m.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in weights:  # activations only, each storage once
            saved[t.data_ptr()] = max(saved.get(t.data_ptr(), 0), t.numel() * t.element_size())
        return t

    before = _rss_mib()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = m.tokens(x)[1]
    out.square().mean().backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(peak - before, sum(saved.values()) / 2**20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8, help="clip length (16 is vit-b's; 8 keeps it to minutes)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--memory-only", action="store_true", help="only the peak-memory measurement")
    ap.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.frames, args.checkpointing)
        return
    import transformers

    probe = cpu_matmul_probe()
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"transformers {transformers.__version__}")
    print(f"matmul 1024^2: fp32 {probe.fp32_gflops:.0f} GFLOP/s, bf16 {probe.bf16_gflops:.0f} GFLOP/s")
    torch.manual_seed(0)
    cfg = transformers.VideoMAEConfig(num_frames=args.frames, image_size=224, use_mean_pooling=False)
    hf = transformers.VideoMAEModel(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        hf.save_pretrained(folder)
        tokens = args.frames // 2 * 14 * 14
        print(f"ViT-B/16 VideoMAE, batch 1, {args.frames} x 224 x 224 ({tokens} tokens); "
              f"transformers attention: {hf.config._attn_implementation}")
        rows = [] if args.memory_only else timings(folder, hf, args.frames, args.reps)
        print(f"{'step':<11} {'precision':<9} {'ours s':>8} {'HF s':>8} {'HF/ours':>8}")
        for r in rows:
            print(f"{r['what']:<11} {r['precision']:<9} {r['ours_s']:8.3f} {r['hf_s']:8.3f} {r['speedup']:8.2f}x")
        mem = {c: peak_memory(args.frames, c) for c in (False, True)}
        for c in (False, True):
            print(f"ours, batch 1, fp32 training step{' with gradient checkpointing' if c else ''}: peak RSS "
                  f"{mem[c][0]:.0f} MiB above the RSS before it; activations saved for backward {mem[c][1]:.0f} MiB")
        print(json.dumps({"rows": rows, "peak_mib": {"plain": mem[False], "checkpointing": mem[True]}}))


if __name__ == "__main__":
    main()

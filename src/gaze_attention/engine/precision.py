"""`precision: auto`: bf16 autocast where the device runs it faster, fp32 elsewhere.

- CUDA: bf16 when the GPU runs it natively (compute capability 8.0 and up: A100, H100, RTX
  30xx/40xx, ...), else fp32 (fp16 stays an explicit choice: it needs a gradient scaler).
- CPU: a short probe: a square matmul (1024 by default) in fp32 and in bf16 with the threads
  torch uses, measured once per machine and kept in the user's cache folder
  (`$GAZE_ATTENTION_CACHE`, else `$XDG_CACHE_HOME/gaze-attention`, else `~/.cache/gaze-attention`;
  keyed by CPU model, core count, threads and torch version), so commands do not pay for it
  (about 20 s on a CPU whose bf16 is emulated). bf16 is chosen only when it is clearly faster (by 10 %).
  CPU flags alone do not decide it: a Zen 4 core has avx512_bf16, yet its bf16 matmul ran at
  163 GFLOP/s against 313 in fp32 (issue 11); Intel cores with AMX do run bf16 faster.
- Anything else (MPS, ...): fp32.

`resolve_precision` is called once at the start of `train`, `evaluate` and `predict`; the
choice and its reason are printed. Under torchrun the ranks take rank 0's choice, so a noisy
probe cannot make processes of one job disagree.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from gaze_attention import fsio

CHOICES = ("auto", "fp32", "bf16", "fp16")
CPU_BF16_MARGIN = 1.10  # bf16 must beat fp32 by this factor to be chosen


@dataclass(frozen=True)
class MatmulProbe:
    """Measured matmul throughput of the CPU in GFLOP/s."""

    size: int
    fp32_gflops: float
    bf16_gflops: float
    threads: int


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision to use and why."""

    precision: str  # fp32 | bf16 | fp16
    reason: str

    def __str__(self) -> str:
        return f"precision {self.precision}: {self.reason}"


def _matmul_gflops(a: torch.Tensor, b: torch.Tensor, reps: int) -> float:
    """Best-of-`reps` GFLOP/s of one square matmul (after a warm-up)."""
    return _interleaved([(a, b)], reps)[0]


def _interleaved(pairs: list[tuple[torch.Tensor, torch.Tensor]], reps: int) -> list[float]:
    """Best-of-`reps` GFLOP/s of each pair's matmul, the pairs timed in turn: on a shared
    machine a burst of other work then slows both precisions alike."""
    for a, b in pairs:
        torch.mm(a, b)  # warm-up: oneDNN / BLAS kernel selection, page faults
    best = [float("inf")] * len(pairs)
    for _ in range(reps):
        for k, (a, b) in enumerate(pairs):
            t = time.perf_counter()
            torch.mm(a, b)
            best[k] = min(best[k], time.perf_counter() - t)
    return [2 * a.shape[0] ** 3 / s / 1e9 for (a, _), s in zip(pairs, best, strict=True)]


def fp32_matmul_gflops(size: int = 1024, reps: int = 3) -> float:
    """This CPU's fp32 square-matmul rate now (best of `reps`, not cached): for reports, which
    should say what the machine did during the run, not what the probe once measured."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=g), torch.randn(size, size, generator=g)
    return _matmul_gflops(a, b, reps)


def cache_dir() -> Path:
    """Where per-machine measurements are kept."""
    if os.environ.get("GAZE_ATTENTION_CACHE"):
        return Path(os.environ["GAZE_ATTENTION_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gaze-attention"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), for keys and reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _probe_key(size: int, reps: int) -> str:
    return f"{cpu_model()}|{os.cpu_count()} cpus|{torch.get_num_threads()} threads|torch {torch.__version__}|{size}x{reps}"


def _read_cached(key: str) -> MatmulProbe | None:
    try:
        entry = json.loads((cache_dir() / "matmul-probe.json").read_text(encoding="utf-8")).get(key)
        return MatmulProbe(**entry) if entry else None
    except (OSError, ValueError, TypeError):
        return None


def _write_cached(key: str, probe: MatmulProbe) -> None:
    """Best effort: a read-only home only costs the next command another probe."""
    path = cache_dir() / "matmul-probe.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if not isinstance(entries, dict):
            entries = {}
        entries[key] = asdict(probe)
        fsio.write_json(path, entries)
    except (OSError, ValueError):
        pass


@functools.lru_cache(maxsize=4)
def cpu_matmul_probe(size: int = 1024, reps: int = 3) -> MatmulProbe:
    """fp32 and bf16 matmul GFLOP/s of this CPU (best of `reps`; ~0.1 s at 1024 on 2 cores
    where bf16 is native), measured once per machine (see `cache_dir`) and per process."""
    key = _probe_key(size, reps)
    cached = _read_cached(key)
    if cached is not None:
        return cached
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g)
    b = torch.randn(size, size, generator=g)
    fp32, bf16 = _interleaved([(a, b), (a.bfloat16(), b.bfloat16())], reps)
    probe = MatmulProbe(size, fp32, bf16, torch.get_num_threads())
    _write_cached(key, probe)
    return probe


def _cuda_choice(device: torch.device) -> PrecisionChoice:
    index = device.index if device.index is not None else torch.cuda.current_device()
    name = torch.cuda.get_device_name(index)
    major, minor = torch.cuda.get_device_capability(index)
    if major >= 8:
        return PrecisionChoice("bf16", f"{name} (compute capability {major}.{minor}) runs bf16 natively")
    return PrecisionChoice(
        "fp32", f"{name} (compute capability {major}.{minor}) has no native bf16 (needs 8.0 or newer)"
    )


def _cpu_choice(probe: MatmulProbe) -> PrecisionChoice:
    ratio = probe.bf16_gflops / probe.fp32_gflops
    measured = (
        f"CPU matmul {probe.size}^2 on {probe.threads} thread(s): bf16 {probe.bf16_gflops:.0f} GFLOP/s, "
        f"fp32 {probe.fp32_gflops:.0f} GFLOP/s"
    )
    if ratio >= CPU_BF16_MARGIN:
        return PrecisionChoice("bf16", f"{measured} (bf16 {ratio:.2f}x faster)")
    return PrecisionChoice("fp32", f"{measured} (bf16 not faster: {ratio:.2f}x)")


def resolve_precision(requested: str, device: torch.device | str) -> PrecisionChoice:
    """The concrete precision for `requested` (auto, fp32, bf16, fp16) on `device`."""
    if requested not in CHOICES:
        raise ValueError(f"precision must be one of {', '.join(CHOICES)}, got {requested!r}")
    if requested != "auto":
        return PrecisionChoice(requested, "as configured")
    device = torch.device(device)
    if device.type == "cuda":
        return _cuda_choice(device)
    if device.type == "cpu":
        return _cpu_choice(cpu_matmul_probe())
    return PrecisionChoice("fp32", f"no bf16 speed-up is known for {device.type} devices")


def resolve_for_ranks(requested: str, device: torch.device | str, info) -> PrecisionChoice:
    """`resolve_precision` on rank 0, shared with every rank of a distributed job."""
    from gaze_attention.engine.distributed import broadcast_object

    choice = resolve_precision(requested, device) if info.rank == 0 or requested != "auto" else None
    if requested != "auto":
        return choice
    return broadcast_object(info, choice)


__all__ = [
    "CHOICES",
    "MatmulProbe",
    "cache_dir",
    "cpu_model",
    "PrecisionChoice",
    "cpu_matmul_probe",
    "fp32_matmul_gflops",
    "resolve_for_ranks",
    "resolve_precision",
]

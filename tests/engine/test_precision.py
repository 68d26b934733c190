"""`precision: auto`: the choice logic (probe and CUDA queries mocked), and its wiring."""

from __future__ import annotations

import pytest
import torch

from gaze_attention.engine import precision as P
from gaze_attention.engine.config import load_config
from gaze_attention.engine.distributed import DistInfo


def _probe(fp32: float, bf16: float) -> P.MatmulProbe:
    return P.MatmulProbe(size=1024, fp32_gflops=fp32, bf16_gflops=bf16, threads=2)


@pytest.mark.parametrize(
    ("fp32", "bf16", "want"),
    [
        (313.0, 163.0, "fp32"),  # this machine's Zen 4 (issue 11): bf16 half as fast
        (300.0, 320.0, "fp32"),  # within the margin: not worth the lower precision
        (300.0, 1200.0, "bf16"),  # a CPU with AMX
    ],
)
def test_cpu_follows_the_probe(monkeypatch, fp32, bf16, want):
    monkeypatch.setattr(P, "cpu_matmul_probe", lambda: _probe(fp32, bf16))
    choice = P.resolve_precision("auto", "cpu")
    assert choice.precision == want
    assert f"bf16 {bf16:.0f} GFLOP/s" in choice.reason and f"fp32 {fp32:.0f} GFLOP/s" in choice.reason
    assert str(choice).startswith(f"precision {want}: CPU matmul")


@pytest.mark.parametrize(("cap", "want"), [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp32"), ((6, 1), "fp32")])
def test_cuda_follows_compute_capability(monkeypatch, cap, want):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: cap)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Some GPU")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(P, "cpu_matmul_probe", lambda: pytest.fail("no CPU probe for a GPU"))
    choice = P.resolve_precision("auto", "cuda:1")
    assert choice.precision == want
    assert "Some GPU" in choice.reason and f"{cap[0]}.{cap[1]}" in choice.reason


def test_explicit_choices_and_other_devices(monkeypatch):
    monkeypatch.setattr(P, "cpu_matmul_probe", lambda: pytest.fail("an explicit precision needs no probe"))
    for p in ("fp32", "bf16", "fp16"):
        assert P.resolve_precision(p, "cpu") == P.PrecisionChoice(p, "as configured")
    assert P.resolve_precision("auto", "mps").precision == "fp32"
    with pytest.raises(ValueError, match="fp8"):
        P.resolve_precision("fp8", "cpu")


def test_ranks_take_the_choice_of_rank_0(monkeypatch):
    monkeypatch.setattr(P, "cpu_matmul_probe", lambda: _probe(100.0, 500.0))
    assert P.resolve_for_ranks("auto", "cpu", DistInfo()).precision == "bf16"
    assert P.resolve_for_ranks("fp16", "cpu", DistInfo()).precision == "fp16"


def test_real_probe_is_measured_once():
    probe = P.cpu_matmul_probe(256, 1)
    assert probe.fp32_gflops > 0 and probe.bf16_gflops > 0
    assert P.cpu_matmul_probe(256, 1) is probe  # cached: one measurement per process


def test_presets_default_to_auto():
    assert load_config("paper").run.precision == "auto"
    assert load_config("tiny").run.precision == "auto"
    assert load_config("tiny", {"run.precision": "bf16"}).run.precision == "bf16"


def test_probe_is_kept_per_machine_across_processes(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("GAZE_ATTENTION_CACHE", str(tmp_path))
    code = "from gaze_attention.engine.precision import cpu_matmul_probe as p; print(p(128, 1).fp32_gflops)"
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert (tmp_path / "matmul-probe.json").is_file()
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert first.stdout == second.stdout  # read back, not measured again
    (tmp_path / "matmul-probe.json").write_text("not json")
    third = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert float(third.stdout) > 0  # a damaged cache is measured over


def test_the_reported_matmul_rate_is_measured_now(tmp_path, monkeypatch):
    monkeypatch.setenv("GAZE_ATTENTION_CACHE", str(tmp_path))
    P._write_cached(P._probe_key(1024, 3), P.MatmulProbe(1024, 1.0, 1.0, torch.get_num_threads()))
    assert P.fp32_matmul_gflops(128, 1) > 1.0  # not the stale cached 1 GFLOP/s

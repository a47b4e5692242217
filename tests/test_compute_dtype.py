"""workbench.compute: the run-time compute dtype (bf16 only where it is fast), with the probe mocked."""
from __future__ import annotations

import logging

import pytest
import torch

from workbench import compute


@pytest.fixture(autouse=True)
def fresh_cache():
    compute._auto.cache_clear()
    yield
    compute._auto.cache_clear()


def _mock(monkeypatch, flags, t_bf16, t_fp32):
    calls = []

    def probe():
        calls.append(1)
        return t_bf16, t_fp32

    monkeypatch.setattr(compute, "cpu_bf16_flags", lambda: flags)
    monkeypatch.setattr(compute, "probe_cpu_matmul", probe)
    return calls


def test_auto_picks_bf16_where_the_probe_finds_it_fast(monkeypatch, caplog):
    calls = _mock(monkeypatch, ("amx_bf16",), t_bf16=0.001, t_fp32=0.004)
    with caplog.at_level(logging.INFO, logger="workbench.compute"):
        choice = compute.choose_dtype("auto", "cpu")
    assert choice.dtype == torch.bfloat16 and "4.0x faster" in choice.reason and "amx_bf16" in choice.reason
    assert "compute dtype: bfloat16 on cpu" in caplog.text  # the log says which and why
    assert compute.resolve_dtype("auto", "cpu") == torch.bfloat16
    assert len(calls) == 1  # cached per process: the probe ran once


def test_auto_picks_fp32_where_bf16_is_emulated(monkeypatch):
    # e.g. a CPU whose flags are unknown (ARM) and whose bf16 matmul is 60x slower than fp32
    _mock(monkeypatch, None, t_bf16=0.060, t_fp32=0.001)
    choice = compute.choose_dtype("auto", "cpu")
    assert choice.dtype == torch.float32 and "0.02x" in choice.reason


def test_auto_needs_a_clear_gain_not_a_tie(monkeypatch):
    _mock(monkeypatch, ("avx512_bf16",), t_bf16=0.0010, t_fp32=0.0011)
    assert compute.resolve_dtype("auto", "cpu") == torch.float32


def test_x86_without_bf16_flags_skips_the_slow_probe(monkeypatch):
    calls = _mock(monkeypatch, (), t_bf16=0.0001, t_fp32=1.0)  # a probe would say bf16; it must not run
    choice = compute.choose_dtype("auto", "cpu")
    assert choice.dtype == torch.float32 and "no native bf16" in choice.reason and calls == []


def test_cuda_follows_device_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert compute.resolve_dtype("auto", "cuda") == torch.bfloat16
    compute._auto.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert compute.resolve_dtype("auto", "cuda") == torch.float32


def test_explicit_dtypes_and_bad_names():
    assert compute.resolve_dtype("float32", "cpu") == torch.float32
    assert compute.resolve_dtype("bf16") == torch.bfloat16
    assert compute.resolve_dtype(torch.float16) == torch.float16
    assert compute.choose_dtype("bfloat16").reason == "bfloat16 on cpu: requested"
    assert compute.parse_dtype("auto") is None and compute.parse_dtype(None) is None
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        compute.resolve_dtype("float8")


def test_cpuinfo_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(compute.platform, "machine", lambda: "x86_64")
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert compute.cpu_bf16_flags(f) == ()
    f.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert compute.cpu_bf16_flags(f) == ("avx512_bf16", "amx_bf16")
    assert compute.cpu_bf16_flags(tmp_path / "missing") is None
    monkeypatch.setattr(compute.platform, "machine", lambda: "aarch64")
    assert compute.cpu_bf16_flags(f) is None


def test_real_probe_returns_positive_times():
    t_bf16, t_fp32 = compute.probe_cpu_matmul(repeats=2)
    assert t_bf16 > 0 and t_fp32 > 0


def test_cpu_name_reads_the_model_line_and_falls_back(tmp_path):
    from workbench.compute import cpu_name

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU @ 1.00GHz\nflags\t\t: avx2\n")
    assert cpu_name(info) == "Test CPU @ 1.00GHz"
    assert cpu_name(tmp_path / "missing") not in ("", "Test CPU @ 1.00GHz")

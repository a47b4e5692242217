"""Which floating-point dtype to compute in, picked at run time for the machine at hand.

bfloat16 halves memory traffic and is several times faster than float32 where the hardware has it
(CUDA GPUs from Ampere on; CPUs with AVX-512 BF16 or AMX), but on a CPU without native bf16
(e.g. AVX2 only) torch emulates it and a bf16 matmul is ~100x *slower* than float32. Machines
change between sessions and users' machines differ, so ``"auto"`` decides per process:

- CUDA: bf16 when ``torch.cuda.is_bf16_supported()`` for that device, else float32;
- CPU: a few-ms timing probe of a bf16 vs a float32 matmul (cached per process); bf16 only
  when it is clearly faster. On x86, ``/proc/cpuinfo`` flags short-cut the probe: without any
  native bf16 flag (``avx512_bf16``, ``amx_bf16``) the answer is float32 without timing the
  slow emulated path;
- anything else (mps, ...): float32.

Every decision is logged with its reason (``log.info``), and :func:`choose_dtype` returns the
reason for run records such as ``train_config.json``.

Example
-------
>>> resolve_dtype("float32")
torch.float32
>>> resolve_dtype("bf16")
torch.bfloat16
>>> resolve_dtype("auto", "cpu") in (torch.bfloat16, torch.float32)
True
>>> choose_dtype("auto", "cpu").reason  # doctest: +SKIP
'bfloat16 on cpu: bf16 matmul 2.4x faster than float32 in a timing probe (CPU flags: amx_bf16, avx512_bf16)'
"""
from __future__ import annotations

import contextlib
import functools
import logging
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

__all__ = ["cpu_name", "torch_threads", "DtypeChoice", "choose_dtype", "resolve_dtype", "optional_dtype", "parse_dtype", "cpu_bf16_flags",
           "probe_cpu_matmul", "DTYPE_CHOICES"]

_NAMES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}
#: what a ``--dtype`` option accepts (argparse ``choices``)
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
#: bf16 must beat float32 by this factor in the probe (a tie is not worth the rounding)
BF16_MIN_SPEEDUP = 1.2
#: /proc/cpuinfo flags of native bf16 arithmetic on x86
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: probe shape [M, K] x [K, N], tall-skinny times wide like an SAE encoder (0.3 GFLOP: a few ms in
#: float32; smaller shapes are dominated by call overhead and under-state the bf16 gain)
_PROBE = (256, 384, 1536)


@dataclass(frozen=True)
class DtypeChoice:
    """A resolved compute dtype and why it was chosen."""

    dtype: torch.dtype
    reason: str

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def parse_dtype(dtype) -> torch.dtype | None:
    """A torch dtype from a name (``"bfloat16"``, ``"bf16"``, ``"float32"``, ...) or a dtype;
    ``None`` and ``"auto"`` give None (decide with :func:`choose_dtype`)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).lower().removeprefix("torch.")
    if name == "auto":
        return None
    if name not in _NAMES:
        raise ValueError(f"unknown dtype {dtype!r}: use auto, {', '.join(sorted(_NAMES))}")
    return _NAMES[name]


def optional_dtype(dtype, device="cpu") -> torch.dtype | None:
    """For options whose default (None) means "the component's own default": None stays None,
    ``"auto"`` is resolved for ``device``, a name becomes its dtype (``--model-dtype``, ``--dtype``)."""
    return None if dtype is None else resolve_dtype(dtype, device)


def resolve_dtype(dtype="auto", device="cpu") -> torch.dtype:
    """The dtype to compute in on ``device``: ``dtype`` itself when given, else the ``"auto"`` choice."""
    return choose_dtype(dtype, device).dtype


def choose_dtype(dtype="auto", device="cpu") -> DtypeChoice:
    """:func:`resolve_dtype` with the reason; ``"auto"`` decisions are logged once per device."""
    explicit = parse_dtype(dtype)
    device = torch.device(device)
    if explicit is not None:
        return DtypeChoice(explicit, f"{str(explicit).removeprefix('torch.')} on {device.type}: requested")
    return _auto(device.type, device.index if device.type == "cuda" else None)


@functools.lru_cache(maxsize=None)
def _auto(device_type: str, index: int | None) -> DtypeChoice:
    if device_type == "cuda":
        ok = torch.cuda.is_bf16_supported() if index is None else _cuda_bf16(index)
        choice = DtypeChoice(torch.bfloat16 if ok else torch.float32,
                             f"{'bfloat16' if ok else 'float32'} on cuda: the GPU "
                             f"{'supports' if ok else 'does not support'} bf16")
    elif device_type == "cpu":
        choice = _auto_cpu(cpu_bf16_flags(), probe_cpu_matmul)
    else:
        choice = DtypeChoice(torch.float32, f"float32 on {device_type}: bf16 speed not known there")
    log.info("compute dtype: %s", choice.reason)
    return choice


def _cuda_bf16(index: int) -> bool:
    with torch.cuda.device(index):
        return torch.cuda.is_bf16_supported()


def _auto_cpu(flags: tuple[str, ...] | None, probe) -> DtypeChoice:
    """The CPU decision from the cpuinfo ``flags`` (None: unknown) and ``probe() -> (t_bf16, t_fp32)``."""
    flag_note = f" (CPU flags: {', '.join(flags)})" if flags else ""
    if flags is not None and not flags:
        return DtypeChoice(torch.float32, "float32 on cpu: no native bf16 (no avx512_bf16/amx_bf16 in /proc/cpuinfo), "
                                          "bf16 would be emulated and slow")
    t_bf16, t_fp32 = probe()
    speedup = t_fp32 / max(t_bf16, 1e-12)
    if speedup >= BF16_MIN_SPEEDUP:
        return DtypeChoice(torch.bfloat16, f"bfloat16 on cpu: bf16 matmul {speedup:.1f}x faster than float32 "
                                           f"in a timing probe{flag_note}")
    return DtypeChoice(torch.float32, f"float32 on cpu: bf16 matmul only {speedup:.2f}x the speed of float32 "
                                      f"in a timing probe (needs >= {BF16_MIN_SPEEDUP}x){flag_note}")


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name (``/proc/cpuinfo``; else ``platform.processor()``), for benchmarks to say which
    CPU ran them."""
    try:
        line = next((ln for ln in Path(cpuinfo).read_text().splitlines() if ln.startswith("model name")), None)
    except OSError:
        line = None
    return line.split(":", 1)[1].strip() if line else (platform.processor() or "unknown")


def cpu_bf16_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, ...] | None:
    """Native-bf16 flags of an x86 CPU from ``/proc/cpuinfo``; None where that says nothing
    (not Linux, not x86: then only the probe decides)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return None
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), None)
    if line is None:
        return None
    have = set(line.split(":", 1)[1].split())
    return tuple(f for f in _BF16_FLAGS if f in have)


def probe_cpu_matmul(repeats: int = 5) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of one ``[256, 384] x [384, 1536]`` matmul in bfloat16 and in float32.

    The two dtypes alternate, so a burst of load from other processes hits both alike.
    """
    m, k, n = _PROBE
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    pairs = {dt: (a.to(dt), b.to(dt)) for dt in (torch.bfloat16, torch.float32)}
    best = {dt: float("inf") for dt in pairs}
    for _ in range(repeats + 1):  # the first round: one-off kernel selection and allocation
        for dt, (x, y) in pairs.items():
            t = time.perf_counter()
            torch.mm(x, y)
            best[dt] = min(best[dt], time.perf_counter() - t) if _ else best[dt]
    return best[torch.bfloat16], best[torch.float32]


_THREADS_LOCK = threading.Lock()
_THREADS_USERS = 0
_THREADS_BEFORE = 0


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run a block on ``n`` torch intra-op threads (None or 0: leave the setting alone), then restore it.

    torch's thread count is one setting for the whole process, so a library must not leave it changed.
    Blocks may overlap (the app runs jobs on threads, exits come in any order): the count in force
    before the first of them is restored when the last one ends, whatever the others set meanwhile.

    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    global _THREADS_USERS, _THREADS_BEFORE
    with _THREADS_LOCK:
        if _THREADS_USERS == 0:
            _THREADS_BEFORE = torch.get_num_threads()
        _THREADS_USERS += 1
        if n and int(n) != torch.get_num_threads():
            torch.set_num_threads(int(n))
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_USERS -= 1
            if _THREADS_USERS == 0 and torch.get_num_threads() != _THREADS_BEFORE:
                torch.set_num_threads(_THREADS_BEFORE)

"""Where and how a run computes: the device, the precision (with the CPU facts that decide it), seeding.

``precision="auto"`` on a CPU picks bf16 only where the CPU has native bf16 *and* a timed training step of a
transformer layer is faster in it (a CPU can multiply faster in bf16 and still train slower); on CUDA, bf16
where supported, else fp16 with a GradScaler. docs/performance.md has the measurements per CPU.
"""

from __future__ import annotations

import os
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> $MTL_LAB_DEVICE if set, else CUDA when present, else CPU."""
    if name == "auto":
        name = os.environ.get("MTL_LAB_DEVICE", "auto")  # set by the notebook runner's --device
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def eval_batch_size(device: torch.device) -> int:
    """Batch size for scoring when none is given: 32 on a CPU (faster than 128 there: fewer pad tokens in each
    length bucket; ``benchmarks/bench_training.py``), 128 on a GPU (which wants big batches)."""
    return 128 if device.type == "cuda" else 32


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_device(batch: dict, device: torch.device) -> dict:
    """A collated batch with its tensors moved to ``device`` (other values as they are)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


# ----------------------------------------------------------------------------- the CPU


# CPU flags that mean native bf16 matmuls (x86: AVX512-BF16 or AMX; Arm: the BF16 extension).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpuinfo_field(names: tuple[str, ...], cpuinfo: str | None = None) -> str | None:
    """The first /proc/cpuinfo field (or one of the given text) named one of ``names``; None where unreadable."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in names:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (or the given text); None where they cannot be read."""
    flags = cpuinfo_field(("flags", "Features"), cpuinfo)
    return set(flags.split()) if flags is not None else None


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo, else the platform), recorded with every run's timings."""
    return cpuinfo_field(("model name",)) or platform.processor() or platform.machine()


# ----------------------------------------------------------------------------- precision


def time_bf16_ratio(size: int = 384, repeats: int = 5) -> float:
    """Seconds of a bf16-autocast training step over seconds of the same step in fp32 on this CPU (< 1: bf16 is faster).

    The step is one transformer layer of MiniLM's width (forward and backward, batch 32 x 32 tokens): a bare
    matmul is not enough, since a CPU can multiply faster in bf16 and still train slower (docs/performance.md).
    """

    generator = torch.get_rng_state()
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(size, 12, 4 * size, dropout=0.0, activation="gelu", batch_first=True)
    x = torch.randn(32, 32, size)
    torch.set_rng_state(generator)  # the probe leaves the caller's random stream as it found it

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = layer(x)
        y.float().square().mean().backward()

    def best(bf16: bool) -> float:
        step(bf16)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step(bf16)
            times.append(time.perf_counter() - t0)
        return min(times)

    return best(True) / best(False)


def cpu_precision_choice(flags: set[str] | None, timed_ratio=None) -> tuple[str, str]:
    """bf16 or fp32 for CPU training, and why: bf16 only where the CPU has native bf16 and it trains faster there.

    ``flags`` are the CPU's feature flags (None: unknown). Without a native bf16 flag: fp32 (bf16 would be
    emulated). With one, or unknown flags, ``timed_ratio()`` (bf16 time / fp32 time of a training step,
    ``time_bf16_ratio``) decides: bf16 when it is at least 1.15x faster, else fp32.
    """
    native = sorted(f for f in NATIVE_BF16_FLAGS if f in flags) if flags is not None else []
    if flags is not None and not native:
        return (
            "fp32",
            "CPU has no native bf16 (no avx512_bf16 / amx_bf16 flag): bf16 would be emulated, many times slower",
        )
    ratio = (timed_ratio or time_bf16_ratio)()
    probe = f"a bf16 training step of a transformer layer took {ratio:.2f}x the fp32 time"
    has = f"CPU has native bf16 ({', '.join(native)}); " if native else "CPU flags unknown; "
    if ratio <= 1 / 1.15:
        return "bf16", f"{has}{probe}"
    if ratio < 1:  # faster, but not by enough to trade fp32's exactness for it
        return "fp32", f"{has}{probe}: bf16 is less than 1.15x faster here, fp32 kept"
    return "fp32", f"{has}{probe}: fp32 is as fast or faster here"


_CPU_CHOICE: tuple[str, str] | None = None


def precision_choice(precision: str, device: torch.device) -> tuple[str, str]:
    """The precision a run uses and why: an explicit choice as given; 'auto' by the device.

    'auto' on CUDA: bf16 where the GPU supports it, else fp16 (+ GradScaler). On a CPU: bf16 only
    where it is native and a timed training step says it is faster (``cpu_precision_choice``; decided once
    per process), else fp32.
    """
    global _CPU_CHOICE
    if precision != "auto":
        return precision, "set explicitly"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "CUDA device supports bf16"
        return "fp16", "CUDA device without bf16: fp16 with a GradScaler"
    if device.type != "cpu":
        return "fp32", f"no autocast default for device {device.type}"
    if _CPU_CHOICE is None:
        _CPU_CHOICE = cpu_precision_choice(cpu_flags())
    return _CPU_CHOICE


def autocast_context(device: torch.device, precision: str):
    """torch.autocast for 'bf16'/'fp16', a no-op context for 'fp32'."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


PROGRESS_ENV = "MTL_LAB_PROGRESS"
_last_note = [0.0]


def progress_note(text: str, every_s: float = 2.0) -> None:
    """Tell a watcher outside the process what long work is doing (``notebooks run`` prints it from a kernel).

    Written to the file $MTL_LAB_PROGRESS names, at most every ``every_s`` seconds; nothing without it."""
    path = os.environ.get(PROGRESS_ENV)
    now = time.monotonic()
    if not path or now - _last_note[0] < every_s:
        return
    _last_note[0] = now
    tmp = Path(f"{path}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:  # a watcher that went away: the work goes on
        pass


def apply_threads() -> dict:
    """Torch's threads for this run ($MTL_LAB_THREADS, else torch's own choice) and OpenMP's wait policy, with why:
    what results.json records."""
    from mtl_lab.threads import THREADS_ENV, fixed_threads, thread_choice

    threads = fixed_threads()
    if threads:
        torch.set_num_threads(threads)
    policy, why = thread_choice()
    actual = os.environ.get("OMP_WAIT_POLICY", "default")
    why = f"{torch.get_num_threads()} torch threads" + (f" ({THREADS_ENV})" if threads else "") + f"; {why}"
    if actual != policy:
        why += f" (OpenMP runs with OMP_WAIT_POLICY={actual}, set when torch was loaded)"
    return {"omp_wait_policy": actual, "threads_reason": why}

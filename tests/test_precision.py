"""precision="auto": bf16 only on a CPU with native bf16 (17x slower than fp32 where it is emulated)."""

import torch

from mtl_lab import evaluate
from mtl_lab.evaluate import cpu_flags, cpu_precision_choice, precision_choice

ZEN4 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
ZEN3 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma\n"
SAPPHIRE = "flags\t\t: avx2 avx512f amx_bf16 amx_tile amx_int8\n"
GRAVITON = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


def test_native_bf16_flags_pick_bf16():
    assert cpu_precision_choice(cpu_flags(ZEN4))[0] == "bf16"
    assert cpu_precision_choice(cpu_flags(SAPPHIRE))[0] == "bf16"
    assert cpu_precision_choice(cpu_flags(GRAVITON))[0] == "bf16"
    assert "avx512_bf16" in cpu_precision_choice(cpu_flags(ZEN4))[1]


def test_avx2_only_cpu_picks_fp32_and_says_why():
    precision, reason = cpu_precision_choice(cpu_flags(ZEN3))
    assert precision == "fp32"
    assert "no native bf16" in reason


def test_unknown_flags_fall_back_to_a_timed_probe():
    assert cpu_flags("model name : something\n") is None
    assert cpu_precision_choice(None, timed_ratio=lambda: 0.6)[0] == "bf16"
    assert cpu_precision_choice(None, timed_ratio=lambda: 17.0) == (
        "fp32",
        "timed probe: a bf16 matmul took 17.00x the fp32 time",
    )
    assert cpu_precision_choice(None, timed_ratio=lambda: 0.95)[0] == "fp32"  # not worth it


def test_explicit_precision_is_kept_and_cpu_choice_is_made_once(monkeypatch):
    cpu = torch.device("cpu")
    assert precision_choice("fp32", cpu) == ("fp32", "set explicitly")
    assert precision_choice("bf16", cpu) == ("bf16", "set explicitly")
    calls = []
    monkeypatch.setattr(evaluate, "_CPU_CHOICE", None)
    monkeypatch.setattr(evaluate, "cpu_flags", lambda: calls.append(1) or cpu_flags(ZEN3))
    assert precision_choice("auto", cpu)[0] == "fp32"
    assert precision_choice("auto", cpu)[0] == "fp32"
    assert len(calls) == 1


def test_the_timed_probe_runs():
    assert evaluate.time_bf16_ratio(size=64, repeats=1) > 0

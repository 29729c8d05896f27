"""precision="auto": bf16 only on a CPU with native bf16 where a timed training step is faster (17x slower where emulated)."""

import torch

from mtl_lab import runtime
from mtl_lab.runtime import cpu_flags, cpu_precision_choice, precision_choice

ZEN4 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
ZEN3 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma\n"
SAPPHIRE = "flags\t\t: avx2 avx512f amx_bf16 amx_tile amx_int8\n"
GRAVITON = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


def test_native_bf16_flags_pick_bf16_where_a_training_step_is_faster():
    fast = lambda: 0.6  # noqa: E731 -- bf16 step in 0.6x the fp32 time
    assert cpu_precision_choice(cpu_flags(ZEN4), timed_ratio=fast)[0] == "bf16"
    assert cpu_precision_choice(cpu_flags(SAPPHIRE), timed_ratio=fast)[0] == "bf16"
    assert cpu_precision_choice(cpu_flags(GRAVITON), timed_ratio=fast)[0] == "bf16"
    assert "avx512_bf16" in cpu_precision_choice(cpu_flags(ZEN4), timed_ratio=fast)[1]


def test_native_bf16_that_trains_slower_picks_fp32_and_says_why():
    # an Intel Xeon with AVX512-BF16 and no AMX: bf16 matmuls are faster, a training step is 1.3x slower
    precision, reason = cpu_precision_choice(cpu_flags(ZEN4), timed_ratio=lambda: 1.3)
    assert precision == "fp32"
    assert "native bf16 (avx512_bf16)" in reason and "1.30x the fp32 time" in reason
    assert cpu_precision_choice(cpu_flags(ZEN4), timed_ratio=lambda: 0.95)[0] == "fp32"  # not worth it


def test_avx2_only_cpu_picks_fp32_without_a_probe():
    def no_probe():
        raise AssertionError("the probe must not run where bf16 is emulated")

    precision, reason = cpu_precision_choice(cpu_flags(ZEN3), timed_ratio=no_probe)
    assert precision == "fp32"
    assert "no native bf16" in reason


def test_unknown_flags_fall_back_to_a_timed_probe():
    assert cpu_flags("model name : something\n") is None
    assert cpu_precision_choice(None, timed_ratio=lambda: 0.6)[0] == "bf16"
    assert cpu_precision_choice(None, timed_ratio=lambda: 17.0) == (
        "fp32",
        "CPU flags unknown; a bf16 training step of a transformer layer took 17.00x the fp32 time: "
        "fp32 is as fast or faster here",
    )
    precision, reason = cpu_precision_choice(None, timed_ratio=lambda: 0.88)  # faster, but not worth it
    assert precision == "fp32" and reason.endswith(
        "0.88x the fp32 time: bf16 is less than 1.15x faster here, fp32 kept"
    )


def test_explicit_precision_is_kept_and_cpu_choice_is_made_once(monkeypatch):
    cpu = torch.device("cpu")
    assert precision_choice("fp32", cpu) == ("fp32", "set explicitly")
    assert precision_choice("bf16", cpu) == ("bf16", "set explicitly")
    calls = []
    monkeypatch.setattr(runtime, "_CPU_CHOICE", None)
    monkeypatch.setattr(runtime, "cpu_flags", lambda: calls.append(1) or cpu_flags(ZEN3))
    assert precision_choice("auto", cpu)[0] == "fp32"
    assert precision_choice("auto", cpu)[0] == "fp32"
    assert len(calls) == 1


def test_the_timed_probe_runs_and_leaves_the_random_stream_alone():
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    assert runtime.time_bf16_ratio(size=48, repeats=1) > 0
    assert torch.equal(torch.rand(3), expected)

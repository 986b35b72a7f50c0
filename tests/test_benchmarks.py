"""benchmarks/train_throughput.py runs its CPU path end to end (the same code runs on CUDA when present): every
figure of a row is there, and the Trainer is also run with sleeptrain's attention kernel where that is not SDPA."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import pytest

from conftest import TINY_RUN


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_the_throughput_benchmark_reports_both_loops_and_like_with_like_kernels(monkeypatch, kernel):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # the repository root holds benchmarks/
    import benchmarks.train_throughput as bench

    small = [w for w in TINY_RUN if not w.startswith(("train.precision", "train.log_every", "train.eval_every"))]
    monkeypatch.setattr(bench, "BENCH_DATA", [*bench.BENCH_DATA[:1], *bench.BENCH_DATA[2:], *small])
    monkeypatch.setattr(bench, "peak_flops", lambda dtype, device: 1e11)
    # the kernel `train.attention=auto` would take (eager: a CPU under bf16, faked here in fp32)
    monkeypatch.setattr(bench, "resolve_attention", lambda *a, **k: (kernel, "faked"))
    out = bench.run("tiny", steps=24, precisions=["fp32"], repeats=1, compile=False, device="cpu", isolate=False)
    row = out["rows"][0]
    assert out["device"] == "cpu"
    assert row["attention"] == kernel and row["precision"] == "fp32"
    for key in ("sleeptrain_tokens_per_s", "hf_trainer_tokens_per_s", "sleep_strict_tokens_per_s", "mfu_sleeptrain"):
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert math.isclose(row["sleeptrain_vs_hf"], row["sleeptrain_tokens_per_s"] / row["hf_trainer_tokens_per_s"])
    assert ("hf_same_kernel_tokens_per_s" in row) == (kernel != "sdpa")
    assert set(row["all_runs_tokens_per_s"]) == {"ours", "hf", "sleep", "for_loop"} | (
        {"hf_same_kernel"} if kernel != "sdpa" else set())
    # every run's peak memory: a training run holds at least its model, optimizer state and a batch's activations
    assert set(row["peak_memory_mib"]) == set(row["all_runs_tokens_per_s"])
    assert all(math.isfinite(v) and v >= 0 for v in row["peak_memory_mib"].values())


def test_a_run_in_its_own_process_reports_its_own_peak_memory(monkeypatch):
    """What the benchmark runs by default: each configuration spawned afresh, its figures measured inside."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    import benchmarks.train_throughput as bench

    small = [w for w in TINY_RUN if not w.startswith(("train.precision", "train.log_every", "train.eval_every"))]
    data = [*bench.BENCH_DATA[:1], *bench.BENCH_DATA[2:], *small]
    with tempfile.TemporaryDirectory() as tmp:
        got = bench.isolated(bench.sleeptrain_run, ["model=tiny", "train.max_steps=12", "train.precision=fp32",
                                                   "train.device=cpu", "schedule=single_pass"], Path(tmp) / "one",
                             bench_data=data)
    assert got["steps"] == 12 and got["tokens_per_s"] > 0
    assert 0 < got["peak_memory_mib"] < 4096


def test_the_peak_memory_probe_sees_an_allocation_inside_its_block(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    import benchmarks.train_throughput as bench
    import torch

    with bench.peak_memory("cpu") as mem:
        block = torch.ones(64 * 2 ** 20 // 4)  # 64 MiB, touched
        block.add_(1)
        time.sleep(0.05)  # the sampler's period is 10 ms
        del block
    assert mem["peak_memory_mib"] >= 48


def test_the_benchmark_refuses_a_device_it_cannot_use(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    import benchmarks.train_throughput as bench

    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: False)
    assert bench.resolve_device("auto") == "cpu"
    with pytest.raises(SystemExit, match="--device: cuda was asked for but no GPU is visible"):
        bench.resolve_device("cuda")
    with pytest.raises(SystemExit, match="--device: 'tpu' is not one of auto, cpu, cuda"):
        bench.resolve_device("tpu")


def test_a_bad_override_stops_the_benchmark_before_any_run(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    import benchmarks.train_throughput as bench
    from sleeptrain.errors import ConfigError

    monkeypatch.setattr(bench, "sleeptrain_run", lambda *a, **k: pytest.fail("a run started"))
    with pytest.raises(ConfigError, match="train.batch_size"):
        bench.run("tiny", steps=2, precisions=["fp32"], repeats=1, device="cpu", overrides=["train.batch_size=-3"],
                  isolate=False)


def test_the_step_profile_times_every_part_of_wake_and_sleep_steps_and_restores_the_loop(monkeypatch):
    """benchmarks/profile_step.py patches the loop's own calls with timed ones: every category is measured (the
    word count too: it broke silently once when WordMeter's method was renamed), both phases' steps are counted, and
    the loop is itself again afterwards."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    import benchmarks.profile_step as prof
    from sleeptrain.lm import loop
    from sleeptrain.lm.words import WordMeter

    before = (loop.forward_losses, loop.prefetched, loop.TrainingLoop.train_step, WordMeter.count)
    small = [w for w in TINY_RUN if not w.startswith(("train.log_every", "train.eval_every"))]
    out = prof.profile("tiny", "sleep_strict", 0, 2, "generated",
                       [*small, "schedule.n_cycles=2", "schedule.sleep_wake_ratio=0.5"])
    assert set(out["ms"]) == set(prof.CATEGORIES) and out["steps_counted"] > 0
    assert all(out["ms"][c] > 0 for c in ("forward (model body)", "backward", "optimizer step", "words / logging"))
    assert out["ms"]["other"] >= -0.05 * out["step_ms"]   # the parts add up to the step, to timer noise
    assert set(out["by_phase"]) == {"wake", "sleep"}
    assert (loop.forward_losses, loop.prefetched, loop.TrainingLoop.train_step, WordMeter.count) == before

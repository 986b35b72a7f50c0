"""`train.precision=auto`: bf16 where this machine runs it natively, fp32 otherwise — measured, not assumed.

On CUDA the answer is `torch.cuda.is_bf16_supported()`. On CPU it depends on the chip: with AVX-512 BF16 / AMX a bf16
matmul runs several times faster than fp32; without them PyTorch emulates bf16 and the same matmul can be ~100x
slower (docs/PERFORMANCE.md). So a sub-second probe times one square matmul in each precision and bf16 is chosen only
when it is faster. An explicit `train.precision=bf16` on a CPU where the probe finds it slower still runs, with a
one-line warning that gives the measured ratio.
"""

from __future__ import annotations

import functools
import time

import torch

PROBE_SIZE = 512
PROBE_SECONDS = 0.3    # the probe's time budget, both precisions together (after one warm-up call each)
PROBE_MIN_ROUNDS = 2
PROBE_MAX_ROUNDS = 50
SLOW = 2.0             # an explicit bf16 warns when its matmul is this many times slower than fp32
AUTO_GAIN = 1.5        # auto picks bf16 on CPU only when its matmul is at least this much faster (a clear margin,
                       # so two runs on one machine do not choose differently from timing noise)


@functools.lru_cache(maxsize=None)
def cpu_matmul_probe(size: int = PROBE_SIZE) -> dict:
    """GFLOP/s of a `size`-square matmul in fp32 and in bf16 on this CPU (cached for the process).

    The two precisions are timed in alternation, one call each per round, and each keeps its fastest call: other
    work on the machine (a test suite, another run) slows single calls at random, and a burst of it must not land
    on one precision only — a probe that timed all fp32 calls, then all bf16 calls, picked bf16 on a loaded machine
    whose bf16 is slower (LOG 2026-11-28)."""
    mats = {name: (torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype))
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    for a, b in mats.values():
        a @ b  # warm-up (kernel selection, allocation)
    best = {name: float("inf") for name in mats}
    start = time.perf_counter()
    for rounds in range(1, PROBE_MAX_ROUNDS + 1):
        for name, (a, b) in mats.items():
            t0 = time.perf_counter()
            a @ b
            best[name] = min(best[name], time.perf_counter() - t0)
        if rounds >= PROBE_MIN_ROUNDS and time.perf_counter() - start >= PROBE_SECONDS:
            break
    return {name: 2 * size ** 3 / max(seconds, 1e-12) / 1e9 for name, seconds in best.items()}


def resolve_precision(requested: str, on_cuda: bool, resumed: str | None = None) -> tuple[str, str]:
    """(precision to run, a line saying why). `requested` is auto | fp32 | bf16 | fp16; `resumed`: the precision
    an `auto` run chose when it started (a resume keeps it, so the run stays one precision)."""
    if requested == "auto" and resumed:
        return resumed, f"train.precision=auto -> {resumed} (as the run chose when it started)"
    if requested != "auto":
        if requested == "bf16" and not on_cuda:
            probe = cpu_matmul_probe()
            if probe["bf16"] < probe["fp32"] / SLOW:
                return "bf16", (f"warning: train.precision=bf16 on a CPU without native bf16: a bf16 matmul runs at "
                                f"{probe['bf16']:.1f} GFLOP/s against {probe['fp32']:.1f} for fp32 "
                                f"({probe['fp32'] / max(probe['bf16'], 1e-9):.1f}x slower); train.precision=auto "
                                f"or fp32 avoids it")
        return requested, f"train.precision={requested} (as set)"
    if on_cuda:
        if torch.cuda.is_bf16_supported():
            return "bf16", "train.precision=auto -> bf16 (the GPU supports bf16)"
        return "fp32", "train.precision=auto -> fp32 (this GPU has no bf16)"
    probe = cpu_matmul_probe()
    chosen = "bf16" if probe["bf16"] > AUTO_GAIN * probe["fp32"] else "fp32"
    return chosen, (f"train.precision=auto -> {chosen} (CPU probe, {PROBE_SIZE}^3 matmul: bf16 "
                    f"{probe['bf16']:.1f} GFLOP/s, fp32 {probe['fp32']:.1f} GFLOP/s)")

"""`train.compile=auto`: torch.compile where it was measured to pay, eager elsewhere — and eager again if it fails.

Measured (docs/PERFORMANCE.md, "The chunked loss under torch.compile"): on a 2-core CPU, the tiny model trains
1.25-1.47x faster compiled (three quiet benchmark runs, fp32), after a warm-up of about 40 s that compiles every
batch shape of the plan. That pays back after roughly 500-800 steps; `auto` compiles from `AUTO_MIN_STEPS` on, so
a short run (a test, a smoke run) never waits for the compiler. torch.compile on a CPU needs a C++ compiler
(Inductor writes C++ kernels); without one on the PATH `auto` stays eager. On CUDA nothing is measured yet, so
`auto` stays eager there and `train.compile=true` is the way to opt in (benchmarks/train_throughput.py --compile
measures it). A resumed run keeps the choice it started with (compiled and eager numerics differ in rounding).
"""

from __future__ import annotations

import os
import shutil

AUTO_MIN_STEPS = 1000
CXX_CANDIDATES = ("g++", "c++", "clang++")


def cxx_compiler() -> str | None:
    """The C++ compiler Inductor would use on a CPU ($CXX, else the first of g++ / c++ / clang++ on the PATH)."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else list(CXX_CANDIDATES)
    return next((found for name in names if (found := shutil.which(name))), None)


def resolve_compile(requested: str, total_steps: int, on_cuda: bool, resumed: bool | None = None
                    ) -> tuple[bool, str]:
    """(compile?, a line saying why). `requested` is auto | true | false; `resumed`: what the run chose when it
    started (None for a new run, or a checkpoint written before the choice was recorded: those ran eager)."""
    if requested != "auto":
        return requested == "true", f"train.compile={requested} (as set)"
    if resumed is not None:
        return resumed, f"train.compile=auto -> {str(resumed).lower()} (as the run chose when it started)"
    if on_cuda:
        return False, "train.compile=auto -> false (not measured on GPUs yet; train.compile=true opts in)"
    if total_steps < AUTO_MIN_STEPS:
        return False, (f"train.compile=auto -> false ({total_steps} steps: below {AUTO_MIN_STEPS}, the compile "
                       "warm-up would not pay back)")
    compiler = cxx_compiler()
    if compiler is None:
        return False, "train.compile=auto -> false (no C++ compiler on the PATH for torch.compile on a CPU)"
    return True, (f"train.compile=auto -> true ({total_steps} steps; C++ compiler {compiler}; the warm-up before "
                  "step 0 compiles every batch shape)")

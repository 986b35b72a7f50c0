"""Shared helpers: machine description, timing, JSON output."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Callable


def machine() -> dict:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Best wall time of `repeats` calls (seconds): the least disturbed by other load."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def write_json(name: str, payload: dict, out_dir: str | Path = "benchmarks/results") -> Path:
    out = Path(out_dir) / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), **payload}, indent=1))
    return out

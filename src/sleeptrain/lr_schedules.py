"""Learning-rate schedules as pure functions of the step (nanochat style): easy to test, plot and resume."""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, peak_lr: float, warmup_steps: int = 0, kind: str = "cosine",
          min_ratio: float = 0.0) -> float:
    """LR for optimizer step `step` (0-based) of `total_steps`: linear warm-up to `peak_lr`, then
    cosine / linear decay to `min_ratio * peak_lr` at the last step, or constant."""
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")
    warmup = min(warmup_steps, max(total_steps - 1, 0))
    if step < warmup:
        return peak_lr * (step + 1) / warmup
    if kind == "constant":
        return peak_lr
    span = max(total_steps - 1 - warmup, 1)
    progress = min(max((step - warmup) / span, 0.0), 1.0)
    if kind == "linear":
        factor = 1.0 - progress
    elif kind == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"unknown LR schedule {kind!r}")
    return peak_lr * (min_ratio + (1.0 - min_ratio) * factor)

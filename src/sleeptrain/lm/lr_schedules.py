"""Learning-rate schedules as pure functions of the step (nanochat style): easy to test, plot and resume."""

from __future__ import annotations

import bisect
import math
from typing import Callable, Iterable

from sleeptrain.config import LR_SCHEDULES  # noqa: F401  (the schema declares the choices)
from sleeptrain.sleep.cycle import lr_effects


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


def plan_lr_function(plan, train_cfg, restarts: Iterable[int] = (),
                     peak_scale: Callable[[int], float] | None = None) -> Callable[[int], float]:
    """step -> LR over a phase plan: one warm-up + decay cycle per segment between `restarts` (steps where a
    fresh LR cycle starts; FORGETTER: each cycle decays to its minimum, then a sleep starts a fresh one). The peak
    of the segment holding `step` is `train.lr * peak_scale(cycle of step)` (1 without `peak_scale`). Warm-up is
    capped at 20% of each LR cycle. Which steps restart and how peaks scale comes from the sleep ops
    (`sleeptrain.sleep.cycle.lr_effects`; `lr_function` composes the two)."""
    total = plan.total_steps
    cuts = sorted(b for b in {0, *restarts} if b < total)

    def lr(step: int) -> float:
        i = bisect.bisect_right(cuts, step) - 1
        start, end = cuts[i], (cuts[i + 1] if i + 1 < len(cuts) else total)
        length = end - start
        peak = train_cfg.lr * (peak_scale(plan.lookup(step).stage.cycle) if peak_scale is not None else 1.0)
        return lr_at(step - start, length, peak, min(train_cfg.warmup_steps, length // 5), train_cfg.lr_schedule,
                     train_cfg.min_lr_ratio)

    return lr


def lr_function(plan, cfg) -> Callable[[int], float]:
    """step -> LR of a run: the schedule of `cfg.train` over the phase plan with the LR effects of the sleep ops
    in `cfg.sleep.ops` (fresh cycles where an op restarts one, peaks scaled per cycle)."""
    restarts, peak_scale = lr_effects([(s.start, s.end) for s in plan.stages if s.phase == "sleep"], cfg)
    return plan_lr_function(plan, cfg.train, restarts, peak_scale)

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


def plan_lr_function(plan, train_cfg, sleep_cfg):
    """step -> LR over a phase plan. The LR cycle restarts wherever an optimizer reset happens (FORGETTER: each
    cycle decays to its minimum, then a light or deep sleep starts a fresh cycle); with `plasticity_decay` in the
    sleep operations, the peak of cycle k is `lr * decay**k`. Warm-up is capped at 20% of each LR cycle."""
    import bisect

    total = plan.total_steps
    boundaries = {0}
    resets = [op for op in sleep_cfg.ops if op in ("optimizer_reset", "deep_reset")]
    if resets:
        before, _ = sleep_cfg.split_ops()
        for stage in plan.stages:
            if stage.phase == "sleep":
                boundaries.add(stage.start if resets[0] in before else stage.end)
    cuts = sorted(b for b in boundaries if b < total)
    decay = sleep_cfg.plasticity_decay if "plasticity_decay" in sleep_cfg.ops else 1.0

    def lr(step: int) -> float:
        i = bisect.bisect_right(cuts, step) - 1
        start, end = cuts[i], (cuts[i + 1] if i + 1 < len(cuts) else total)
        length = end - start
        peak = train_cfg.lr * (decay ** plan.lookup(step).stage.cycle if decay != 1.0 else 1.0)
        return lr_at(step - start, length, peak, min(train_cfg.warmup_steps, length // 5), train_cfg.lr_schedule,
                     train_cfg.min_lr_ratio)

    return lr

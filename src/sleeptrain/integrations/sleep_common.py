"""What `SleepCallback` (a transformers.Trainer) and `SleepSchedule` (any PyTorch loop) share: the config of the
sleep sections and what a loop outside sleeptrain's cannot honour, where the sleeps fall, the restarted LR shape,
and adopting a replaced model in place."""

from __future__ import annotations

import bisect
import math

import torch

from sleeptrain.errors import ConfigError
from sleeptrain.integrations.hf_replay import SCORE_FREE
from sleeptrain.sleep import REPLAY, SleepContext, inner_optimizer, op_class

ALLOWED_SECTIONS = ("schedule", "sleep", "replay")


def shape_factor(kind: str, step: int, length: int, warmup: int) -> float:
    """The multiplier of `transformers.get_scheduler(kind)` at `step` of a `length`-step run (the formulas of
    transformers.optimization, so that a run without restarts keeps the Trainer's LR exactly)."""
    if step < warmup and kind != "constant":
        return step / max(1, warmup)
    if kind in ("constant", "constant_with_warmup"):
        return 1.0
    progress = (step - warmup) / max(1, length - warmup)
    if kind == "linear":
        return max(0.0, (length - step) / max(1, length - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


class CycleLR:
    """step -> LR multiplier: `kind` restarted at every step in `starts` (the first is 0), cycle i warming up for
    `warmups[i]` steps; from the i-th step of `sleeps` on, the peak is `peaks[i + 1]` (`peaks[0]` before any sleep).
    Plain values only: its `__dict__` is what LambdaLR puts in the Trainer's scheduler.pt."""

    def __init__(self, kind: str, starts: list[int], total: int, warmups: list[int], sleeps: list[int],
                 peaks: list[float]):
        self.kind, self.starts, self.total, self.warmups = kind, list(starts), total, list(warmups)
        self.sleeps, self.peaks = list(sleeps), list(peaks)

    def __call__(self, step: int) -> float:
        i = bisect.bisect_right(self.starts, step) - 1
        end = self.starts[i + 1] if i + 1 < len(self.starts) else self.total
        peak = self.peaks[bisect.bisect_right(self.sleeps, step)]
        return peak * shape_factor(self.kind, step - self.starts[i], end - self.starts[i], self.warmups[i])


def sleep_steps(max_steps: int, cycles: int, every_steps: int | None, after_last: bool) -> list[int]:
    """The optimizer steps after which a sleep runs."""
    if every_steps:
        steps = list(range(every_steps, max_steps, every_steps))
    else:
        steps = sorted({round(k * max_steps / cycles) for k in range(1, cycles)} - {0, max_steps})
    return steps + ([max_steps] if after_last else [])


def load_sleep_config(overrides: list[str], who: str = "SleepCallback"):
    """The validated run config of `overrides` (words as `sleeptrain train` takes them), refusing what a loop that
    is not sleeptrain's cannot honour (`who`: SleepCallback, or SleepSchedule, which can rank replay by losses the
    loop passes it)."""
    from sleeptrain.presets import load_config

    for word in overrides:
        key = word.split("=", 1)[0]
        if key != "schedule" and key.split(".", 1)[0] not in ALLOWED_SECTIONS:
            raise ConfigError(f"{who}: {word!r} has no effect there (the model, data, optimizer and LR are your "
                              f"loop's); only schedule=<preset>, schedule.*, sleep.* and replay.* apply")
    cfg = load_config(overrides).config
    if REPLAY in cfg.sleep.ops and cfg.replay.strategy not in SCORE_FREE and who == "SleepCallback":
        raise ConfigError(f"replay.strategy: {cfg.replay.strategy!r} ranks samples by their training loss, which a "
                          f"Trainer callback never sees; use one of {', '.join(SCORE_FREE)} in SleepCallback")
    if REPLAY in cfg.sleep.ops and cfg.replay.context_augment:
        raise ConfigError("replay.context_augment: re-packing replayed documents needs sleeptrain's token store; "
                          "add replay.context_augment=false (the samples are replayed as the dataset gives them)")
    for name in cfg.sleep.ops:  # the one hook a Trainer cannot serve: it never hands a callback the step's batch
        why = op_class(name).uses_step_batch(cfg) if name != REPLAY else None
        if why:
            raise ConfigError(f"sleep.ops: {name!r} needs on_step_batch (each step's batch), which {who} does not "
                              f"take: {why}")
    if cfg.schedule.controller:
        raise ConfigError(f"schedule.controller: the FORGETTER controller is not available in {who} (it needs a "
                          "validation loss at every sleep); add schedule.controller=false for fixed light sleeps")
    return cfg


@torch.no_grad()
def adopt_in_place(ctx: SleepContext, model: torch.nn.Module, optimizer) -> None:
    """An op replaced the model or optimizer (`deep_reset`): the Trainer keeps its objects, so copy the new model's
    parameters and buffers into its model and discard its optimizer's state."""
    if ctx.model is not model:
        fresh = dict(ctx.model.named_parameters()) | dict(ctx.model.named_buffers())
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            tensor.copy_(fresh[name])
    if ctx.optimizer is not optimizer:
        inner_optimizer(optimizer).state.clear()

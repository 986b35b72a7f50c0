"""Everything sleep in one run, behind one narrow object the training loop calls at phase boundaries.

`SleepCycle` builds the ops of `sleep.ops` from the registry, the replay and (with `schedule.controller`) the
FORGETTER controller, and dispatches the hooks of `sleeptrain.sleep.hooks` to them. The loop never names an op;
the ops never see the loop. `lr_effects` reads the ops' LR effects off the registry; the loop composes them with
its LR schedule (`sleeptrain.lm.lr_schedules.plan_lr_function`), so sleep/ needs nothing of lm/.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

import torch

from sleeptrain.sleep.controller import Controller
from sleeptrain.sleep.hooks import SleepContext, SleepHook, StepBatch
from sleeptrain.sleep.registry import CONTROLLER, REPLAY, op_class
from sleeptrain.sleep.replay import Replay

if TYPE_CHECKING:
    from sleeptrain.config import Config


class SleepCycle:
    """The sleep mechanisms of one run (`model`: the unwrapped model, for tables keyed by parameter names).

    `replay` is None where the caller lays out replay itself or has none (`SleepCallback` in a Trainer): the
    cycle then dispatches the hooks only, and its checkpoint state has no replay part."""

    def __init__(self, cfg: "Config", model: torch.nn.Module, replay: Optional[Replay] = None):
        self.cfg, self.replay = cfg, replay
        self.ops_at_start, self.ops_at_end = cfg.sleep.split_ops()
        self.controller = Controller(cfg, model) if cfg.schedule.controller else None
        self.ops: dict[str, SleepHook] = {}
        self.hooks: list[SleepHook] = [self.controller] if self.controller else []
        self._wake_hooks: list[SleepHook] = []
        self._sleep_hooks: list[SleepHook] = []
        self._batch_hooks: list[SleepHook] = []
        for name in cfg.sleep.ops:
            if name != REPLAY:
                self._add(name, model)

    def _add(self, name: str, model: torch.nn.Module) -> None:
        """Build op `name`; `hooks` lists every mechanism in the order its hooks run (the controller first, then
        the ops as listed), `_wake_hooks` only those with an `on_wake_step` (called on every wake step)."""
        self.ops[name] = op_class(name)(self.cfg, model)
        self.hooks = ([self.controller] if self.controller else []) + list(self.ops.values())
        self._wake_hooks = [h for h in self.hooks if type(h).on_wake_step is not SleepHook.on_wake_step]
        self._sleep_hooks = [h for h in self.hooks if type(h).on_sleep_step is not SleepHook.on_sleep_step]
        self._batch_hooks = [h for h in self.hooks if type(h).uses_step_batch(self.cfg)]

    @property
    def wants_batch(self) -> bool:
        """Whether any mechanism takes the step's batch (the loop builds a StepBatch only then)."""
        return bool(self._batch_hooks)

    def on_step_batch(self, model: torch.nn.Module, batch: StepBatch, phase: str) -> None:
        for hook in self._batch_hooks:
            hook.on_step_batch(model, batch, phase)

    def on_wake_step(self, model: torch.nn.Module) -> None:
        for hook in self._wake_hooks:
            hook.on_wake_step(model)

    def on_sleep_step(self, model: torch.nn.Module) -> None:
        for hook in self._sleep_hooks:
            hook.on_sleep_step(model)

    def after_backward(self, model: torch.nn.Module, batch: StepBatch | None, phase: str) -> None:
        """A training step's hooks, after its backward and before the optimizer step: `on_step_batch` (with the
        step's batch, which the loop builds only when `wants_batch`), then `on_wake_step` or `on_sleep_step`."""
        if batch is not None:
            self.on_step_batch(model, batch, phase)
        if phase == "wake":
            self.on_wake_step(model)
        else:
            self.on_sleep_step(model)

    def start(self, ctx: SleepContext, stage=None) -> bool:
        """A sleep starts: `on_sleep_start` hooks, then the replay buffer of `stage` (with a replay). False when a
        hook ends the run. The ops to run now are left in `ctx.ops` (the caller applies them with `apply`)."""
        ctx.ops = list(self.ops_at_start)
        for hook in self.hooks:
            hook.on_sleep_start(ctx)
            if ctx.stop:
                return False
        chosen = self.replay.choose(stage, ctx.step) if self.replay is not None else {}
        ctx.log({"event": "sleep_start", "step": ctx.step, "tokens": ctx.tokens,
                 "cycle": stage.cycle if stage is not None else ctx.cycle, **chosen})
        return True

    def apply(self, name: str, ctx: SleepContext) -> dict[str, Any]:
        """Run op `name` at this boundary (an op swapped in by a hook is built on first use)."""
        if name not in self.ops:
            self._add(name, ctx.unwrapped())
        return self.ops[name].apply(ctx)

    def end(self, ctx: SleepContext) -> None:
        """The run ends (before its final evaluation)."""
        for hook in self.hooks:
            hook.on_run_end(ctx)

    # --- checkpoints ---
    def state_dict(self, sleeping: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """(values, tensors) of the replay and of every hook, keyed by name."""
        values, tensors = {}, {}
        if self.replay is not None:
            values[REPLAY], tensors[REPLAY] = self.replay.state_dict(sleeping)
        for hook in self.hooks:
            values[hook.name], tensors[hook.name] = hook.state_dict()
        return values, tensors

    def load_state_dict(self, values: dict[str, Any], tensors: dict[str, Any], model: torch.nn.Module) -> None:
        """Restore `state_dict`; an op a hook had swapped in before the checkpoint is built again first."""
        if self.replay is not None:
            self.replay.load_state_dict(values[REPLAY], tensors[REPLAY])
        for name in values:
            if name not in (REPLAY, CONTROLLER) and name not in self.ops:
                self._add(name, model)
        for hook in self.hooks:
            hook.load_state_dict(values.get(hook.name, {}), tensors.get(hook.name, {}))


def lr_effects(sleeps: Iterable[tuple[int, int]], cfg: "Config") -> tuple[set[int], Optional[Callable[[int], float]]]:
    """(restarts, peak_scale): the LR effects the registry declares for the ops in `sleep.ops`, over the sleeps of a
    run as (first step, end step) pairs. A fresh LR cycle starts at every step in `restarts` — where an op with
    `restarts_lr_cycle` runs (at the sleep's start if it comes before `replay`, at its end if after); the peak of
    cycle k is multiplied by `peak_scale(k)`, the product of every op's `peak_lr_factor(cfg, k)` (None: no op
    scales it). The training loop and `SleepCallback` compose both with their own LR schedule."""
    sleeps = list(sleeps)
    before, _ = cfg.sleep.split_ops()
    restarts: set[int] = set()
    factors = []
    for name in cfg.sleep.ops:
        if name == REPLAY:
            continue
        cls = op_class(name)
        if cls.restarts_lr_cycle:
            restarts.update(start if name in before else end for start, end in sleeps)
        if cls.peak_lr_factor.__func__ is not SleepHook.peak_lr_factor.__func__:
            factors.append(cls.peak_lr_factor)

    def peak_scale(cycle: int) -> float:
        scale = 1.0
        for factor in factors:
            scale *= factor(cfg, cycle)
        return scale

    return restarts, (peak_scale if factors else None)

"""Everything sleep in one run, behind one narrow object the training loop calls at phase boundaries.

`SleepCycle` builds the ops of `sleep.ops` from the registry, the replay and (with `schedule.controller`) the
FORGETTER controller, and dispatches the hooks of `sleeptrain.sleep.hooks` to them. The loop never names an op;
the ops never see the loop. `lr_function` turns the ops' LR effects into the run's LR schedule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch

from sleeptrain.lm.lr_schedules import plan_lr_function
from sleeptrain.sleep.controller import Controller
from sleeptrain.sleep.hooks import SleepContext, SleepHook, StepBatch
from sleeptrain.sleep.registry import CONTROLLER, REPLAY, op_class
from sleeptrain.sleep.replay import Replay

if TYPE_CHECKING:
    from sleeptrain.config import Config


class SleepCycle:
    """The sleep mechanisms of one run (`model`: the unwrapped model, for tables keyed by parameter names)."""

    def __init__(self, cfg: "Config", model: torch.nn.Module, replay: Replay):
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
        self._batch_hooks = [h for h in self.hooks if type(h).on_step_batch is not SleepHook.on_step_batch]

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

    def start(self, ctx: SleepContext, stage) -> bool:
        """A sleep starts: `on_sleep_start` hooks, then the replay buffer. False when a hook ends the run. The ops
        to run now are left in `ctx.ops` (the loop applies them one by one with `apply`)."""
        ctx.ops = list(self.ops_at_start)
        for hook in self.hooks:
            hook.on_sleep_start(ctx)
            if ctx.stop:
                return False
        ctx.log({"event": "sleep_start", "step": ctx.step, "tokens": ctx.tokens, "cycle": stage.cycle,
                 **self.replay.choose(stage, ctx.step)})
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
        values[REPLAY], tensors[REPLAY] = self.replay.state_dict(sleeping)
        for hook in self.hooks:
            values[hook.name], tensors[hook.name] = hook.state_dict()
        return values, tensors

    def load_state_dict(self, values: dict[str, Any], tensors: dict[str, Any], model: torch.nn.Module) -> None:
        """Restore `state_dict`; an op a hook had swapped in before the checkpoint is built again first."""
        self.replay.load_state_dict(values[REPLAY], tensors[REPLAY])
        for name in values:
            if name not in (REPLAY, CONTROLLER) and name not in self.ops:
                self._add(name, model)
        for hook in self.hooks:
            hook.load_state_dict(values.get(hook.name, {}), tensors.get(hook.name, {}))


def lr_function(plan, cfg: "Config") -> Callable[[int], float]:
    """step -> LR over the phase plan, with the LR effects the registry declares for the ops in `sleep.ops`:
    a fresh LR cycle starts where an op with `restarts_lr_cycle` runs (at the sleep's start if it comes before
    `replay`, at its end if after), and the peak of cycle k is scaled by every op's `peak_lr_factor(cfg, k)`."""
    before, _ = cfg.sleep.split_ops()
    restarts: set[int] = set()
    factors = []
    for name in cfg.sleep.ops:
        if name == REPLAY:
            continue
        cls = op_class(name)
        if cls.restarts_lr_cycle:
            restarts.update(stage.start if name in before else stage.end
                            for stage in plan.stages if stage.phase == "sleep")
        if cls.peak_lr_factor.__func__ is not SleepHook.peak_lr_factor.__func__:
            factors.append(cls.peak_lr_factor)

    def peak_scale(cycle: int) -> float:
        scale = 1.0
        for factor in factors:
            scale *= factor(cfg, cycle)
        return scale

    return plan_lr_function(plan, cfg.train, restarts, peak_scale if factors else None)

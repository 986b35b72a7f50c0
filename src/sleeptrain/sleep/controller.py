"""FORGETTER's adaptive controller (light sleeps while validation improves, then deep sleeps, then stop)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from sleeptrain.sleep.hooks import SleepContext, SleepHook
from sleeptrain.sleep.resets import DEEP_SLEEP, LIGHT_SLEEP

if TYPE_CHECKING:
    from sleeptrain.config import Config


class Controller(SleepHook):
    """When each sleep starts: evaluate; while val loss improves by >= `schedule.criteria`, keep light sleeps
    (optimizer reset); when it stops improving, roll back to the best weights and switch to deep sleeps (the light
    sleep of this and every later boundary becomes a deep reset); stop when a deep sleep fails to improve. Every
    decision is logged as `event: "controller"`. Its state is part of every checkpoint. Enabled by
    `schedule.controller` (not an entry of `sleep.ops`)."""

    name = "controller"

    def __init__(self, cfg: "Config", model: torch.nn.Module | None = None):
        super().__init__(cfg, model)
        self.criteria = cfg.schedule.criteria
        self.mode = "light"
        self.best_loss = float("inf")
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_step = 0

    def on_sleep_start(self, ctx: SleepContext) -> None:
        loss = ctx.evaluate()
        improved = loss <= self.best_loss - self.criteria
        model = ctx.unwrapped()
        if improved:
            self.best_loss, self.best_step = loss, ctx.step
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            decision = self.mode
        elif self.mode == "light":
            self._roll_back(model)
            self.mode = decision = "deep"
        else:
            self._roll_back(model)
            decision = "stop"
        ctx.log({"event": "controller", "step": ctx.step, "cycle": ctx.cycle, "val_loss": loss,
                 "best_val_loss": self.best_loss, "best_step": self.best_step, "improved": improved,
                 "decision": decision})
        if decision == "stop":
            ctx.stop = True
        elif decision == "deep":
            ctx.ops = [DEEP_SLEEP if op == LIGHT_SLEEP else op for op in ctx.ops]

    def _roll_back(self, model: torch.nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def on_run_end(self, ctx: SleepContext) -> None:
        """Keep the best weights seen at a sleep boundary, if better than the last."""
        loss = ctx.evaluate()
        if self.best_state is not None and loss > self.best_loss:
            self._roll_back(ctx.unwrapped())
            ctx.log({"event": "controller", "step": ctx.step, "decision": "final_rollback",
                     "val_loss": loss, "best_val_loss": self.best_loss, "best_step": self.best_step})

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return ({"mode": self.mode, "best_loss": self.best_loss, "best_step": self.best_step},
                dict(self.best_state) if self.best_state is not None else {})

    def load_state_dict(self, values: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.mode, self.best_loss, self.best_step = values["mode"], float(values["best_loss"]), values["best_step"]
        self.best_state = dict(tensors) if tensors else None

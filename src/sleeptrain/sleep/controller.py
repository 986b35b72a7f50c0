"""FORGETTER's adaptive controller (Miura et al., sec. 2; `keiji-miura/FORGETTER-BabyLM`, the `Summary_BabyLM-*_
Forgetter.ipynb` notebooks): light sleeps while validation improves, then deep sleeps, then stop.

The rules, as the authors' code runs them after every epoch (`loss_prev` starts at 10000, `flag` = deep mode):

    deep mode and loss >= loss_prev                 -> stop
    light mode and loss >= loss_prev - criteria     -> deep mode from now on; if loss >= loss_prev, roll back to
                                                       the previous epoch's weights
    loss_prev = loss; the weights now are the next "previous epoch's weights"

Followed as written, including one quirk: after a roll-back `loss_prev` takes the rejected epoch's (higher) loss, so
the first deep sleep only has to beat that. `schedule.controller_baseline=best` is the named alternative that
compares with the best loss so far instead. The authors keep the best weights by saving every epoch under a
hand-set threshold; here the best weights seen at a boundary are kept (restored when the run stops or ends worse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from sleeptrain.config import CONTROLLER_BASELINES
from sleeptrain.sleep.hooks import SleepContext, SleepHook
from sleeptrain.sleep.registry import CONTROLLER
from sleeptrain.sleep.resets import DEEP_SLEEP, LIGHT_SLEEP

if TYPE_CHECKING:
    from sleeptrain.config import Config

BASELINES = CONTROLLER_BASELINES  # schedule.controller_baseline (declared in the schema)


def decide(mode: str, loss: float, previous: float, best: float, criteria: float,
           baseline: str = "previous") -> tuple[str, bool]:
    """(decision, roll back?) for one boundary: decision `light` (stay light), `deep` (sleep deep from now on) or
    `stop`. Light mode rolls back to the previous epoch's weights when the loss rose; a stop restores the best."""
    reference = previous if baseline == "previous" else best
    if mode == "deep":
        return ("stop", True) if loss >= reference else ("deep", False)
    if loss >= reference - criteria:
        return "deep", loss >= reference
    return "light", False


def _cpu_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class Controller(SleepHook):
    """When each sleep starts: evaluate, decide (`decide`), roll back if the rules say so, and turn the sleep's light
    reset into a deep one in deep mode; end the run on `stop`. Every decision is logged as `event: "controller"` with
    the losses it compared. Its state is part of every checkpoint. Enabled by `schedule.controller` (not an entry of
    `sleep.ops`)."""

    name = CONTROLLER

    def __init__(self, cfg: "Config", model: torch.nn.Module | None = None):
        super().__init__(cfg, model)
        self.criteria, self.baseline = cfg.schedule.criteria, cfg.schedule.controller_baseline
        self.mode = "light"
        self.previous_loss = self.best_loss = float("inf")
        self.previous_state: dict[str, torch.Tensor] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_step = 0

    def on_sleep_start(self, ctx: SleepContext) -> None:
        loss = ctx.evaluate()
        model = ctx.unwrapped()
        compared_with = self.previous_loss if self.baseline == "previous" else self.best_loss
        decision, roll_back = decide(self.mode, loss, self.previous_loss, self.best_loss, self.criteria,
                                     self.baseline)
        if loss < self.best_loss:
            self.best_loss, self.best_step, self.best_state = loss, ctx.step, _cpu_copy(model)
        restored = None
        if roll_back:
            restored = "best" if decision == "stop" else "previous"
            state = self.best_state if decision == "stop" else self.previous_state
            if state is not None:
                model.load_state_dict(state)
            else:
                restored = None
        ctx.log({"event": "controller", "step": ctx.step, "cycle": ctx.cycle, "mode": self.mode, "val_loss": loss,
                 "compared_with": None if compared_with == float("inf") else compared_with,
                 "criteria": self.criteria, "best_val_loss": self.best_loss, "best_step": self.best_step,
                 "improved": decision == self.mode, "decision": decision, "rolled_back_to": restored})
        self.previous_loss = loss
        if decision == "stop":
            ctx.stop = True
            return
        self.previous_state = _cpu_copy(model) if restored is None else self.previous_state
        if decision == "deep":
            self.mode = "deep"
            ctx.ops = [DEEP_SLEEP if op == LIGHT_SLEEP else op for op in ctx.ops]

    def on_run_end(self, ctx: SleepContext) -> None:
        """Keep the best weights seen at a sleep boundary, if better than the last."""
        loss = ctx.evaluate()
        if self.best_state is not None and loss > self.best_loss:
            ctx.unwrapped().load_state_dict(self.best_state)
            ctx.log({"event": "controller", "step": ctx.step, "decision": "final_rollback",
                     "val_loss": loss, "best_val_loss": self.best_loss, "best_step": self.best_step})

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        tensors = {f"previous.{k}": v for k, v in (self.previous_state or {}).items()}
        tensors.update({f"best.{k}": v for k, v in (self.best_state or {}).items()})
        return ({"mode": self.mode, "previous_loss": self.previous_loss, "best_loss": self.best_loss,
                 "best_step": self.best_step}, tensors)

    def load_state_dict(self, values: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.mode, self.best_step = values["mode"], values["best_step"]
        self.previous_loss, self.best_loss = float(values["previous_loss"]), float(values["best_loss"])
        previous = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("previous.")}
        best = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("best.")}
        self.previous_state, self.best_state = previous or None, best or None

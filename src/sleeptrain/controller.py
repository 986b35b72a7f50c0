"""FORGETTER's adaptive controller (light sleeps while validation improves, then deep sleeps, then stop)."""

from __future__ import annotations

from typing import Any

import torch


class Controller:
    """After each cycle: evaluate; while val loss improves by >= `criteria`, keep light sleeps (optimizer reset);
    when it stops improving, roll back to the best weights and switch to deep sleeps; stop when a deep sleep fails to
    improve. Every decision is logged as `event: "controller"`. Its state is part of every checkpoint."""

    def __init__(self, criteria: float):
        self.criteria = criteria
        self.mode = "light"
        self.best_loss = float("inf")
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_step = 0

    def decide(self, loop) -> str:
        loss = loop.evaluate()
        improved = loss <= self.best_loss - self.criteria
        model = loop.acc.unwrap_model(loop.model)
        if improved:
            self.best_loss, self.best_step = loss, loop.step
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            decision = self.mode
        elif self.mode == "light":
            self._roll_back(model)
            self.mode = decision = "deep"
        else:
            self._roll_back(model)
            decision = "stop"
        loop.metrics.write({"event": "controller", "step": loop.step, "cycle": loop.stage.cycle, "val_loss": loss,
                            "best_val_loss": self.best_loss, "best_step": self.best_step, "improved": improved,
                            "decision": decision})
        return decision

    def _roll_back(self, model: torch.nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def finish(self, loop) -> None:
        """At the end of the run keep the best weights seen at a cycle boundary, if better than the last."""
        loss = loop.evaluate()
        if self.best_state is not None and loss > self.best_loss:
            self._roll_back(loop.acc.unwrap_model(loop.model))
            loop.metrics.write({"event": "controller", "step": loop.step, "decision": "final_rollback",
                                "val_loss": loss, "best_val_loss": self.best_loss, "best_step": self.best_step})

    # --- checkpoints ---
    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(plain values, tensors)."""
        return ({"mode": self.mode, "best_loss": self.best_loss, "best_step": self.best_step},
                dict(self.best_state) if self.best_state is not None else {})

    def load_state(self, values: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.mode, self.best_loss, self.best_step = values["mode"], float(values["best_loss"]), values["best_step"]
        self.best_state = dict(tensors) if tensors else None

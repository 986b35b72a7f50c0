"""The contract between the training loop and a sleep mechanism: hooks at phase boundaries.

The loop owns the model, the optimizer and the step; a mechanism never sees the loop. At well-defined moments it
calls the mechanism's hooks, each with only what that moment needs (as `transformers.TrainerCallback` gets narrow
state/control, and an Avalanche plugin a before/after call):

    moment                              hook                          receives
    after the backward of a wake step   on_wake_step(model)           the unwrapped model, gradients in .grad
    after the backward of a sleep step  on_sleep_step(model)          the same, while replaying
    after the backward of any step      on_step_batch(model, batch,   the unwrapped model, the step's StepBatch and
                                          phase)                      "wake" | "sleep" (only hooks that define it)
    a sleep starts (before its ops)     on_sleep_start(ctx)           SleepContext; may end the run or swap ops
    the op's own boundary               apply(ctx) -> dict            SleepContext; the dict is logged
    the run ends                        on_run_end(ctx)               SleepContext
    a checkpoint is written / loaded    state_dict() / load_state_dict(values, tensors)
    the LR schedule is laid out         restarts_lr_cycle, peak_lr_factor(cfg, cycle)   (class level: the LR stays
                                                                                          a pure function of the step)

An op listed in `sleep.ops` runs `apply` when the sleep starts if it comes before `replay` in the list, when the
sleep ends if it comes after (without `replay`, every op runs at the start). Everything else is optional.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch

if TYPE_CHECKING:
    from sleeptrain.config import Config


def _no_log(record: dict[str, Any]) -> None:
    return None


@dataclass
class SleepContext:
    """What a mechanism sees at a phase boundary.

    `model` and `optimizer` are the loop's, as the accelerator prepared them; an op may replace both (a deep reset
    builds new ones) and the loop adopts whatever they are when the hook returns. `ops` are the operations about to
    run at this boundary, in order: `on_sleep_start` may substitute one (the FORGETTER controller turns a light
    sleep into a deep one). Setting `stop` in `on_sleep_start` ends the run at this boundary.
    """

    model: torch.nn.Module
    optimizer: Any
    cfg: "Config"
    cycle: int
    step: int = 0
    tokens: int = 0
    accelerator: Any = None
    make_optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer] | None = None
    evaluate: Callable[[], float] | None = None    # validation loss of the current model (also logged)
    log: Callable[[dict[str, Any]], None] = _no_log  # one record into metrics.jsonl
    ops: list[str] = field(default_factory=list)
    stop: bool = False

    def unwrapped(self) -> torch.nn.Module:
        """The model without the accelerator's wrappers (DDP), as saved and loaded."""
        return self.accelerator.unwrap_model(self.model) if self.accelerator else self.model


@dataclass(frozen=True)
class StepBatch:
    """The batch this process trained on in the current step, as host tensors: token ids, the attention mask (None
    where the loop dropped it: causal rows padded only at the end), labels (-100 where no loss is taken; for a
    causal LM aligned with `input_ids`, shifted inside the loss) and whether the model is a masked LM.
    `sample_loss(logits, labels) -> (B,)` is the loop's own per-sample loss (each row's mean token loss over the
    positions that count, float32), for a hook that differentiates it (per-sample gradients); None where the caller
    has none to offer."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    labels: torch.Tensor
    masked: bool
    sample_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


def inner_optimizer(optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside Accelerate's wrapper (or the optimizer itself)."""
    return getattr(optimizer, "optimizer", optimizer)


class SleepHook:
    """Base class of every sleep mechanism: each hook is a no-op until a subclass overrides it.

    Built with `(cfg, model)`: the run's config and the unwrapped model (for tables keyed by parameter names).
    """

    name: ClassVar[str] = ""
    resets_optimizer: ClassVar[bool] = False   # a light or deep sleep: at most one such op per schedule
    restarts_lr_cycle: ClassVar[bool] = False  # a fresh LR cycle (warm-up + decay) starts where the op runs

    def __init__(self, cfg: "Config", model: torch.nn.Module | None = None):
        self.cfg = cfg

    @classmethod
    def peak_lr_factor(cls, cfg: "Config", cycle: int) -> float:
        """Multiplies the peak LR of cycle `cycle` (a pure function: the LR schedule is laid out before step 0)."""
        return 1.0

    @classmethod
    def uses_step_batch(cls, cfg: "Config") -> str | None:
        """Why this op needs `on_step_batch` (each step's batch) under `cfg`, or None when it does not. Default:
        whenever the class overrides it. The loop builds a `StepBatch` only for ops that use it; a caller that has
        no batch to give (`SleepCallback` in a Trainer) refuses them with this reason. Override it where the use
        depends on the options (`downscale` needs the batch only for `sleep.importance=fisher_per_sample`)."""
        if cls.on_step_batch is SleepHook.on_step_batch:
            return None
        return f"{cls.__name__} overrides on_step_batch"

    def on_wake_step(self, model: torch.nn.Module) -> None:
        """After the backward pass of every wake step, before the optimizer step (gradients are in `p.grad`)."""

    def on_sleep_step(self, model: torch.nn.Module) -> None:
        """After the backward pass of every sleep (replay) step, before the optimizer step."""

    def on_step_batch(self, model: torch.nn.Module, batch: StepBatch, phase: str) -> None:
        """After the backward of every step (`phase` "wake" or "sleep"), before the optimizer step, with the step's
        batch — for mechanisms that need more than the summed gradient (per-sample gradients)."""

    def on_sleep_start(self, ctx: SleepContext) -> None:
        """When a sleep starts, before any op of it runs."""

    def apply(self, ctx: SleepContext) -> dict[str, Any]:
        """The operation itself, at its boundary; returns what it changed (logged as `event: "sleep_op"`)."""
        return {}

    def on_run_end(self, ctx: SleepContext) -> None:
        """After the last stage, before the final evaluation."""

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON-able values, tensors) to put in every checkpoint; both are handed back to `load_state_dict`."""
        return {}, {}

    def load_state_dict(self, values: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Restore what `state_dict` returned."""

"""The vocabulary continual methods are built from: a method is a list of `Part`s, each called at task boundaries
(as Avalanche's strategy plugins are), never the loop itself.

    moment (task t)                            hook                       what a part may do
    before the task is trained                 before_task(run)           change run.x / run.y (the training set),
                                                                          set run.replay (weighted rehearsal)
    during training (Trainer.fit)              penalty / observe /        a loss term (EWC, SI), a view of every
                                               project                    step (SI's path integral), a projection of
                                                                          the gradients (OWM); at most one each
    right after training                       after_fit(run)             consolidate (EWC's Fisher, SI's Omega)
    after the task's accuracy row              after_train_stage(run)     bookkeeping that sees the trained net
                                                                          (iCaRL's exemplars and NME, kept memory)
    the sleep after the task                   sleep(run) -> dict | None  change the weights (SRC); the dict is the
                                                                          sleep's record, None: no sleep now
    after the sleep's accuracy row             after_sleep_stage(run)     (iCaRL's NME after the sleep)
    training diverged                          diverged_hint(cfg)         what to lower, in one phrase

`sleeptrain.continual.methods` runs the parts in list order at each moment; `METHODS` names the lists
(`rehearsal_src` is rehearsal + SRC sleep). Adding a method is one file with its part(s) and a
`register_method(name, parts)` line (docs/CONTINUAL.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch


@dataclass
class TaskRun:
    """What the parts see at a task boundary: the net, the benchmark, the method's options, the seeded generator
    all parts share, the task and its training set as it stands, and what the run has recorded so far."""

    net: Any                       # BiaslessMLP
    bench: Any                     # Benchmark
    cfg: Any                       # the ContinualConfig
    seed: int
    rng: np.random.Generator
    evaluate_on: str = "test"
    t: int = 0                     # 0-based task index
    task: Any = None
    x: torch.Tensor | None = None  # the training set of this task (parts may extend it)
    y: torch.Tensor | None = None
    replay: tuple | None = None    # (x_old, y_old, weight) for the weighted rehearsal loss
    seen_inputs: list[torch.Tensor] = field(default_factory=list)  # every trained task's inputs, in order
    nme: list[list[float]] = field(default_factory=list)           # per stage, when a part measures it


class Part:
    """One piece of a continual method; every hook is a no-op until a subclass overrides it."""

    penalty: Callable | None = None   # penalty(weights) -> loss term, added to every mini-batch loss
    observe: Callable | None = None   # observe(grads, updates) after every step
    project: Callable | None = None   # project(inputs, grads, progress) -> grads

    def before_task(self, run: TaskRun) -> None:
        """Before task `run.t` is trained (after its training set is set to the task's own)."""

    def after_fit(self, run: TaskRun) -> None:
        """Right after the task's training, on the set it was trained on."""

    def after_train_stage(self, run: TaskRun) -> None:
        """After the task's accuracy row was recorded."""

    def sleep(self, run: TaskRun) -> dict | None:
        """The sleep after the task: change the net's weights and return the sleep's record, or None."""
        return None

    def after_sleep_stage(self, run: TaskRun) -> None:
        """After the sleep's accuracy row was recorded."""

    def diverged_hint(self, cfg) -> str | None:
        """What to lower when training diverged with this part (None: nothing particular)."""
        return None

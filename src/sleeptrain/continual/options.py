"""The options of the continual algorithms themselves — SGD (`mlp.Trainer`) and SRC (`src.src_sleep`) — as the
sections `sgd:` and `src:` of `ContinualConfig`. They are the one schema: the runner, the methods' parts, the search and
a user calling `src_sleep` or `sleep_sequential` on their own network all pass these objects, never a copy."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from sleeptrain.config import check_choice, check_fraction, check_positive, help_field


@dataclass
class SGDSection:
    lr: float = help_field("SGD learning rate", default=0.1)
    momentum: float = help_field("SGD momentum (carried across tasks)", default=0.5)
    batch_size: int = help_field("SGD batch size", default=100)
    epochs: int = help_field("epochs per task", default=2)
    task_epochs: Optional[list[int]] = help_field("epochs of each task (overrides sgd.epochs)", default=None)

    def __post_init__(self) -> None:
        check_positive("sgd.lr", self.lr)
        check_fraction("sgd.momentum", self.momentum, closed_high=False)
        check_positive("sgd.batch_size", self.batch_size)
        check_positive("sgd.epochs", self.epochs)
        for epochs in self.task_epochs or []:
            check_positive("sgd.task_epochs", epochs)


@dataclass
class SRCSection:
    mode: str = help_field("faithful (the authors' sequential loop) | batched (a few noise streams per step: faster, "
                           "a named deviation)", default="faithful")
    streams: int = help_field("batched: noise streams per step (few: each stream needs enough time steps to "
                              "integrate; 4 matched faithful on Split-MNIST at half the time)", default=4)
    iterations: int = help_field("sleep iterations after the first task", default=15_000)
    growth: int = help_field("extra iterations per later task: iterations + (t-1) * growth", default=5_000)
    max_rate: float = help_field("input spike rate scale: P(spike) = 2 dt max_rate x_bar", default=239.515363)
    inc: float = help_field("Hebbian increment", default=0.032064)
    dec: float = help_field("Hebbian decrement", default=0.003344)
    betas: list[float] = help_field("firing threshold of each layer",
                                    default_factory=lambda: [14.548273, 44.560317, 38.046326])
    alpha_scale: float = help_field("multiplies the data-based input scales", default=55.882454)
    decay: float = help_field("membrane decay per step", default=0.999)
    patch: Optional[int] = help_field("drive a random patch x patch window of the input each step (MNIST: 11)",
                                      default=None)
    sleep_after: Optional[list[int]] = help_field("tasks (1-based) followed by a sleep (default: every task)",
                                                  default=None)
    norm_data: str = help_field("data of the layer scales: seen (all seen tasks' training inputs, the authors' code) | "
                                "current (the task just learned; this project's earlier variant)", default="seen")

    def __post_init__(self) -> None:
        check_choice("src.mode", self.mode, ("faithful", "batched"))
        check_positive("src.streams", self.streams)
        check_positive("src.iterations", self.iterations)
        check_positive("src.growth", self.growth, allow_zero=True)
        for key in ("max_rate", "inc", "dec", "alpha_scale"):
            check_positive(f"src.{key}", getattr(self, key), allow_zero=key in ("inc", "dec"))
        check_fraction("src.decay", self.decay, closed_low=False)
        check_positive("src.patch", self.patch, allow_none=True)
        check_choice("src.norm_data", self.norm_data, ("seen", "current"))

    def vector(self) -> list[float]:
        """The paper's x = [max_rate, inc, dec, beta_1..beta_L, alpha_scale]."""
        return [self.max_rate, self.inc, self.dec, *self.betas, self.alpha_scale]

    def with_vector(self, x: list[float], **changes) -> "SRCSection":
        """A copy with the parameter vector `x` (and any other `changes`)."""
        return replace(self, max_rate=x[0], inc=x[1], dec=x[2], betas=list(x[3:-1]), alpha_scale=x[-1], **changes)

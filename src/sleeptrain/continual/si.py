"""Synaptic intelligence (SI; Zenke, Poole & Ganguli, ICML 2017), a regularisation baseline of the SRC paper's Table 1.

While a task trains, each weight's contribution to the drop in loss is summed along the optimisation path,
`omega_k += -g_k * delta_k` (g the gradient the optimiser followed, delta the update it made). When the task ends the
importance grows by `omega_k / (Delta_k^2 + xi)`, Delta_k the weight's total change over the task, omega is reset,
and later training pays `c * sum_k Omega_k (w_k - w*_k)^2` for leaving the weights w* of the end of the last task.
The gradient summed is that of the whole loss, penalty included, as the reference implementations do (van de Ven
et al.'s `continual-learning`); Zenke et al. write the task loss's.
"""

from __future__ import annotations

import torch

from sleeptrain.continual.parts import Part, TaskRun


class SynapticIntelligence:
    """`begin_task(weights)`, `observe(grads, updates)` after every SGD step, `consolidate(weights)` when the task
    ends; calling it on the weights gives the penalty to add to the loss."""

    def __init__(self, strength: float = 1.0, xi: float = 1e-3):
        if strength < 0 or xi <= 0:
            raise ValueError(f"SI needs strength >= 0 and xi > 0, got {strength}, {xi}")
        self.strength, self.xi = strength, xi
        self.importance: list[torch.Tensor] | None = None
        self.anchor: list[torch.Tensor] | None = None
        self.omega: list[torch.Tensor] = []
        self.start: list[torch.Tensor] = []

    def begin_task(self, weights) -> None:
        self.start = [w.detach().clone() for w in weights]
        self.omega = [torch.zeros_like(w) for w in self.start]

    @torch.no_grad()
    def observe(self, grads, updates) -> None:
        for omega, g, d in zip(self.omega, grads, updates):
            omega.add_(-g * d)

    @torch.no_grad()
    def consolidate(self, weights) -> None:
        gained = [omega / ((w.detach() - s).pow(2) + self.xi) for omega, w, s in zip(self.omega, weights, self.start)]
        self.importance = gained if self.importance is None else [a + b for a, b in zip(self.importance, gained)]
        self.anchor = [w.detach().clone() for w in weights]

    def __call__(self, weights) -> torch.Tensor:
        if self.importance is None:
            return torch.zeros(())
        return self.strength * sum((o * (w - a).pow(2)).sum() for o, w, a in zip(self.importance, weights, self.anchor))


class SI(Part):
    """The `si` method's part: the path integral observed during training, Omega consolidated after it."""

    def __init__(self, cfg):
        self.penalty = SynapticIntelligence(cfg.si_strength, cfg.si_xi)
        self.observe = self.penalty.observe

    def before_task(self, run: TaskRun) -> None:
        self.penalty.begin_task(run.net.weights)

    def after_fit(self, run: TaskRun) -> None:
        self.penalty.consolidate(run.net.weights)

    def diverged_hint(self, cfg) -> str:
        return f"lower si_strength (now {cfg.si_strength:g}) or sgd.lr"

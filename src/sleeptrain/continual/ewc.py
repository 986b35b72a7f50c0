"""Elastic weight consolidation (EWC; Kirkpatrick et al., PNAS 2017), in its online form (Schwarz et al. 2018).

The standard regularisation baseline of continual learning, to compare SRC with: after each task, the diagonal of
the Fisher information estimates how much each weight mattered to it, and later training pays
`lambda/2 * sum_i F_i (w_i - w*_i)^2` for moving weights away from their values at the end of the task.
Online EWC keeps one running Fisher (`F <- gamma F + F_task`) and the latest weights as anchor, so memory does not
grow with the number of tasks. The Fisher here is the empirical one (squared per-sample gradients of the training
loss at the true labels), which works for both output kinds of `BiaslessMLP` (ReLU + MSE has no likelihood to sample
labels from). In class-incremental learning with a single head EWC is known to help little (van de Ven et al. 2020);
it is here so users can show that on their data, next to SRC.
"""

from __future__ import annotations

import torch

from sleeptrain.continual.mlp import BiaslessMLP
from sleeptrain.continual.parts import Part, TaskRun


def empirical_fisher(model: BiaslessMLP, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> list[torch.Tensor]:
    """Mean over samples of the squared gradient of each sample's loss, one tensor per weight matrix.

    Evaluated without dropout (the test-time network). A bias-free layer's per-sample gradient is the outer product
    `delta_n h_n^T` of the loss gradient at its pre-activation and its input, so the sum of their squares is one
    matrix product, `(delta^2)^T h^2` — no per-sample gradient is ever materialised."""
    keep = 1.0 - model.dropout if model.dropout else 1.0
    total = [torch.zeros_like(w) for w in model.weights]
    for start in range(0, len(y), chunk):
        xb, yb = x[start:start + chunk], y[start:start + chunk]
        with torch.enable_grad():
            out, hidden = model(xb, return_hidden=True)
            # the batch loss is a mean: times n it is the sum of per-sample losses, whose gradient at a sample's
            # activations is that sample's own
            upstream = torch.autograd.grad(model.loss(out, yb) * len(yb), [*hidden, out])
        inputs = [xb, *[h.detach() for h in hidden]]
        for l, (acc, grad_out) in enumerate(zip(total, upstream)):
            if l < len(hidden):                      # hidden: h = relu(z) * keep
                delta = grad_out * keep * (hidden[l].detach() > 0)
            elif model.output == "relu_mse" and model.output_grad == "exact":  # output: relu(z)
                delta = grad_out * (out.detach() > 0)
            else:                                    # logits z, or the toolbox's ReLU output (identity backward)
                delta = grad_out
            acc += delta.pow(2).T @ inputs[l].pow(2)
    return [acc / max(1, len(y)) for acc in total]


class EWCPenalty:
    """Online EWC: `consolidate` after each task, then call it on the weights to get the penalty for the loss."""

    def __init__(self, strength: float, gamma: float = 1.0):
        if strength < 0:
            raise ValueError(f"EWC strength must be >= 0, got {strength}")
        if not 0 < gamma <= 1:
            raise ValueError(f"EWC gamma must be in (0, 1], got {gamma}")
        self.strength, self.gamma = strength, gamma
        self.fisher: list[torch.Tensor] | None = None
        self.anchor: list[torch.Tensor] | None = None

    def consolidate(self, model: BiaslessMLP, x: torch.Tensor, y: torch.Tensor) -> None:
        fisher = empirical_fisher(model, x, y)
        if self.fisher is not None:
            fisher = [self.gamma * old + new for old, new in zip(self.fisher, fisher)]
        self.fisher = fisher
        self.anchor = [w.detach().clone() for w in model.weights]

    def __call__(self, weights) -> torch.Tensor:
        if self.fisher is None:
            return torch.zeros(())
        total = sum((f * (w - a).pow(2)).sum() for f, w, a in zip(self.fisher, weights, self.anchor))
        return 0.5 * self.strength * total


class EWC(Part):
    """The `ewc` method's part: the penalty during training, the Fisher consolidated on the task's training set."""

    def __init__(self, cfg):
        self.penalty = EWCPenalty(cfg.ewc_strength, cfg.ewc_gamma)

    def after_fit(self, run: TaskRun) -> None:
        self.penalty.consolidate(run.net, run.x, run.y)

    def diverged_hint(self, cfg) -> str:
        return (f"lower ewc_strength (now {cfg.ewc_strength:g}: the penalty's curvature, strength x Fisher, must stay "
                f"below 2/sgd.lr) or sgd.lr")

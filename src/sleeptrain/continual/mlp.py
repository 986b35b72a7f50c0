"""The networks SRC works on: fully connected, ReLU, no biases (Tadros et al. 2022).

Dropout is the non-inverted kind of the authors' code: units are dropped during training and activations are
multiplied by (1 - p) at test time. The output is either ReLU + MSE against one-hot targets (the published MNIST
setting) or softmax + cross-entropy (Patches). Training is plain SGD with momentum; the momentum buffer is carried
across tasks, as in the authors' code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sleeptrain.continual.options import SGDSection


INITS = ("uniform", "glorot")
OUTPUT_GRADS = ("toolbox", "exact")


class BiaslessMLP(torch.nn.Module):
    """`init`: `uniform` draws U(-init_range, init_range), the authors' `(rand - 0.5) * 0.01 * 2` (every script
    replaces the toolbox's initialisation with it); `glorot` is Glorot-uniform, U(+-sqrt(6 / (n_in + n_out))), this
    project's earlier default (the toolbox's own `nnsetup` draws 4x wider, a sigmoid init the scripts overwrite).
    `output_grad` (relu_mse only): `toolbox` back-propagates the output error as the toolbox's `nnbp` does,
    `d = -(y - a)` with no ReLU derivative at the output (an output stuck at 0 still learns), `exact` through the
    ReLU (autograd)."""

    def __init__(self, sizes: list[int], output: str = "relu_mse", dropout: float = 0.0, init: str = "uniform",
                 init_range: float = 0.01, output_grad: str = "toolbox", generator: torch.Generator | None = None):
        super().__init__()
        if output not in ("relu_mse", "softmax_ce"):
            raise ValueError(f"output must be relu_mse or softmax_ce, got {output!r}")
        if init not in INITS or output_grad not in OUTPUT_GRADS:
            raise ValueError(f"init must be one of {INITS} and output_grad one of {OUTPUT_GRADS}")
        self.sizes, self.output, self.dropout, self.output_grad = list(sizes), output, dropout, output_grad
        self.weights = torch.nn.ParameterList()
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            bound = init_range if init == "uniform" else (6.0 / (n_in + n_out)) ** 0.5
            self.weights.append(torch.nn.Parameter((torch.rand(n_out, n_in, generator=generator) * 2 - 1) * bound))

    def forward(self, x: torch.Tensor, train: bool = False, generator: torch.Generator | None = None,
                return_hidden: bool = False):
        hidden = []
        h = x
        for i, w in enumerate(self.weights):
            z = h @ w.T
            last = i == len(self.weights) - 1
            if last:
                if self.output == "softmax_ce":
                    h = z  # logits; the loss applies the softmax
                elif self.output_grad == "toolbox":
                    h = z + (torch.relu(z) - z).detach()  # ReLU forward, identity backward (nnbp: d{n} = -e)
                else:
                    h = torch.relu(z)
            else:
                h = torch.relu(z)
                if self.dropout:
                    if train:
                        keep = torch.rand(h.shape, generator=generator) >= self.dropout
                        h = h * keep
                    else:
                        h = h * (1.0 - self.dropout)
                hidden.append(h)
        return (h, hidden) if return_hidden else h

    @torch.no_grad()
    def activation_maxima(self, x: torch.Tensor, chunk: int = 8192) -> list[float]:
        """max over `x` of every layer's activations as the toolbox's `nnff` computes them in testing mode (the
        input to `normalize_nn_data`): hidden ReLU x (1 - dropout), the output after its output function (ReLU,
        or softmax probabilities)."""
        maxima = [0.0] * len(self.weights)
        for start in range(0, len(x), chunk):
            out, hidden = self.forward(x[start:start + chunk], return_hidden=True)
            if self.output == "softmax_ce":
                out = torch.softmax(out, dim=1)
            for l, a in enumerate([*hidden, out]):
                maxima[l] = max(maxima[l], float(a.max()) if a.numel() else 0.0)
        return maxima

    def loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """`labels`: class indices, or rows of target values (soft targets: iCaRL's distillation)."""
        if self.output == "softmax_ce":
            return F.cross_entropy(out, labels)
        target = labels if labels.dim() == 2 else F.one_hot(labels, out.shape[1]).float()
        return 0.5 * ((out - target) ** 2).sum(dim=1).mean()

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).argmax(dim=1)

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        if len(labels) == 0:
            return float("nan")
        return float((self.predict(x) == labels).float().mean())


# the SGD options are the `sgd:` section of the continual config (one schema); SGDConfig is its name here
SGDConfig = SGDSection


class Trainer:
    """SGD with momentum whose buffers live as long as the network (carried across tasks)."""

    def __init__(self, model: BiaslessMLP, seed: int = 0):
        self.model = model
        self.velocity = [torch.zeros_like(w) for w in model.weights]
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng([seed, 0x5C])

    def fit(self, x: torch.Tensor, y: torch.Tensor, cfg: SGDConfig,
            penalty: Callable[[Sequence[torch.Tensor]], torch.Tensor] | None = None,
            observe: Callable[[list[torch.Tensor], list[torch.Tensor]], None] | None = None,
            project=None, replay: tuple[torch.Tensor, torch.Tensor, float] | None = None,
            on_step: Callable[[], None] | None = None) -> list[float]:
        """`penalty(weights)`, if given, is added to every mini-batch loss (EWC, SI); `observe(grads, updates)` sees
        every step's gradients and the weight changes they caused (SI's path integral); `project(inputs, grads,
        progress)` may replace the gradients before the update, given each layer's batch input and the fraction of
        the task done (OWM). `replay=(x_old, y_old, w)`: every mini-batch of `x` is paired with a mini-batch of the
        same size drawn at random from the stored `x_old` (all of them when fewer), and the loss is
        `(1 - w) * loss(new) + w * loss(old)` (the weighted rehearsal loss; epochs count passes over `x`).
        `on_step()` after every update (continual evaluation; it must not draw from the trainer's generators)."""
        losses = []
        n = len(y)
        steps_per_epoch = -(-n // cfg.batch_size)
        for epoch in range(cfg.epochs):
            order = torch.from_numpy(self.rng.permutation(n))
            for b, i in enumerate(range(0, n, cfg.batch_size)):
                idx = order[i:i + cfg.batch_size]
                xb, yb = x[idx], y[idx]
                if replay is not None:
                    x_old, y_old, weight = replay
                    pick = torch.from_numpy(self.rng.permutation(len(y_old))[:len(idx)])
                    xb, yb = torch.cat([xb, x_old[pick]]), torch.cat([yb, y_old[pick]])
                out, hidden = self.model(xb, train=True, generator=self.generator, return_hidden=True)
                if replay is None:
                    loss = self.model.loss(out, yb)
                else:
                    k = len(idx)
                    loss = (1 - weight) * self.model.loss(out[:k], yb[:k]) + weight * self.model.loss(out[k:], yb[k:])
                if penalty is not None:
                    loss = loss + penalty(self.model.weights)
                grads = torch.autograd.grad(loss, list(self.model.weights))
                if project is not None:
                    progress = (epoch * steps_per_epoch + b) / (cfg.epochs * steps_per_epoch)
                    grads = project([xb, *[h.detach() for h in hidden]], list(grads), progress)
                with torch.no_grad():
                    for w, v, g in zip(self.model.weights, self.velocity, grads):
                        v.mul_(cfg.momentum).add_(g, alpha=-cfg.lr)
                        w.add_(v)
                if observe is not None:
                    observe(list(grads), [v.clone() for v in self.velocity])
                losses.append(float(loss.detach()))
                if not math.isfinite(losses[-1]):
                    raise FloatingPointError(f"training diverged: loss {losses[-1]} in epoch {epoch + 1}")
                if on_step is not None:
                    on_step()
        return losses

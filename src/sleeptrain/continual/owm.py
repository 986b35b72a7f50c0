"""Orthogonal weights modification (OWM; Zeng, Chen, Cui & Yu, Nature Machine Intelligence 2019), the baseline of the
SRC paper's Table 1 that works without old data in class-incremental learning.

Each layer keeps a projector P (n_in x n_in, identity at the start), which after every batch is shrunk along the
batch-mean input r of that layer by recursive least squares, `k = P r; P -= k k^T / (alpha + r^T k)`, and the layer's
gradient is projected, `G <- G P`, so updates lie (approximately) orthogonal to the input space of everything learned
so far. As the authors' code (`beijixiong3510/OWM`, `Disjointed MNIST/OWM/OWMLayer_2Layers.py`,
`run_dis_mnist_2Layers.py`): P is updated from the current batch before its gradient is projected, the first layer's
alpha decays within each task as `alpha_1 * 0.001 ** progress`, the others stay fixed (0.9 and 0.6 there). Kept from
the project's own training, not OWM's: no bias column (the nets are bias-free), the benchmark's SGD (the OWM code
uses lr 0.2, momentum 0.9, batch 40, 20 epochs and clips each gradient to norm 10).
"""

from __future__ import annotations

import torch

from sleeptrain.continual.parts import Part


class OrthogonalProjection:
    """`project(inputs, grads, progress)` for `Trainer.fit`: updates the projectors, returns the projected gradients."""

    def __init__(self, sizes: list[int], alphas: list[float]):
        n_layers = len(sizes) - 1
        if len(alphas) != n_layers or any(a <= 0 for a in alphas):
            raise ValueError(f"OWM needs one alpha > 0 per layer ({n_layers}), got {alphas}")
        self.alphas = list(alphas)
        self.P = [torch.eye(n) for n in sizes[:-1]]

    @torch.no_grad()
    def __call__(self, inputs: list[torch.Tensor], grads: list[torch.Tensor], progress: float) -> list[torch.Tensor]:
        projected = []
        for l, (P, x, g) in enumerate(zip(self.P, inputs, grads)):
            alpha = self.alphas[l] * (0.001 ** progress if l == 0 else 1.0)
            r = x.mean(dim=0, keepdim=True).T            # (n_in, 1)
            k = P @ r
            P -= (k @ k.T) / (alpha + float(r.T @ k))
            projected.append(g @ P)
        return projected


class OWM(Part):
    """The `owm` method's part: every gradient projected away from the earlier tasks' inputs."""

    def __init__(self, cfg, net):
        n_layers = len(net.weights)
        self.project = OrthogonalProjection(net.sizes, cfg.owm_alphas or [0.9] + [0.6] * (n_layers - 1))

"""The cross-modal "control" of the SRC authors' summary script, which the paper's 47 % comes from.

    .venv/bin/python tools/src_crossmodal_control.py --seeds 3 ../shared/data/mnist ../shared/data/fashion-mnist

`CrossModalMNIST/run_cross_modal_summary.m` trains its control as `control_nn2 = nntrain(nn, train_x2, ...)` from the
initial net: on Fashion-MNIST only, never on MNIST, then tests it on both test sets. This reruns that net (the
benchmark's 784-1200-1200-10 ReLU/MSE net and SGD) and prints its accuracy on MNIST, on Fashion-MNIST and overall.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sleeptrain.continual.data import cross_modal  # noqa: E402
from sleeptrain.continual.mlp import BiaslessMLP, SGDConfig, Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mnist")
    parser.add_argument("fashion")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    bench = cross_modal(args.mnist, args.fashion)
    for seed in range(args.seeds):
        net = BiaslessMLP([784, 1200, 1200, 10], "relu_mse", 0.25, generator=torch.Generator().manual_seed(seed))
        Trainer(net, seed).fit(bench.tasks[1].x_train, bench.tasks[1].y_train, SGDConfig(0.1, 0.5, 100, 2))
        mnist, fashion = (net.accuracy(t.x_test, t.y_test) for t in bench.tasks)
        print(f"seed {seed}: MNIST {mnist:.3f}, Fashion-MNIST {fashion:.3f}, both {(mnist + fashion) / 2:.3f}")


if __name__ == "__main__":
    main()

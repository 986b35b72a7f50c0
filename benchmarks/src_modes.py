"""SRC batched vs faithful: sleep time and the accuracy each leaves, on the same trained network.

    python -m benchmarks.src_modes [--benchmark split_digits|split_mnist] [--data-path DIR] [--iterations N]
Trains `sequential` on the first two tasks of the benchmark, then runs one sleep in each mode from the same weights
and prints seconds, the speed ratio and the accuracy on both tasks afterwards.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from benchmarks.common import write_json
from sleeptrain.continual.data import Benchmark, split_digits, split_mnist
from sleeptrain.continual.mlp import BiaslessMLP, SGDConfig, Trainer
from sleeptrain.continual.src import SRCParams, src_sleep


def run(bench: Benchmark, hidden: list[int], iterations: int, streams: int, patch: int | None) -> dict:
    gen = torch.Generator().manual_seed(0)
    net = BiaslessMLP([bench.n_inputs, *hidden, bench.n_classes], "relu_mse", 0.25,
                      init="uniform" if bench.name == "split_mnist" else "glorot", generator=gen)
    trainer = Trainer(net, 0)
    for task in bench.tasks[:2]:
        trainer.fit(task.x_train, task.y_train, SGDConfig(0.1, 0.5, 100, 2))
    seen = torch.cat([t.seen for t in bench.tasks[:2]])
    mean_input, maxima = seen.mean(0), net.activation_maxima(seen)
    before = [net.accuracy(t.x_test, t.y_test) for t in bench.tasks[:2]]
    out = {"benchmark": bench.name, "iterations": iterations, "streams": streams, "before": before}
    for mode in ("faithful", "batched"):
        trial = copy.deepcopy(net)
        params = SRCParams(iterations=iterations, mode=mode, streams=streams, patch=patch,
                           betas=SRCParams().betas[:len(hidden) + 1])
        start = time.perf_counter()
        src_sleep([w.data for w in trial.weights], mean_input, maxima, params, seed=0, image_shape=bench.image_shape)
        out[f"{mode}_seconds"] = time.perf_counter() - start
        out[f"{mode}_accuracy"] = [trial.accuracy(t.x_test, t.y_test) for t in bench.tasks[:2]]
    out["speedup"] = out["faithful_seconds"] / out["batched_seconds"]
    print(f"{bench.name}: {iterations} sleep iterations; accuracy on tasks 1-2 before sleep {before}")
    for mode in ("faithful", "batched"):
        print(f"  {mode:<9} {out[f'{mode}_seconds']:7.2f} s   accuracy {out[f'{mode}_accuracy']}")
    print(f"  batched is {out['speedup']:.1f} x faster ({streams} streams)")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--benchmark", default="split_digits", choices=["split_digits", "split_mnist"])
    parser.add_argument("--data-path", default="../shared/data/mnist")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--streams", type=int, default=4)
    args = parser.parse_args()
    if args.benchmark == "split_mnist":
        bench, hidden, patch = split_mnist(args.data_path), [1200, 1200], 11
    else:
        bench, hidden, patch = split_digits(), [256, 256], None
    print(write_json(f"src_modes_{args.benchmark}", run(bench, hidden, args.iterations, args.streams, patch)))

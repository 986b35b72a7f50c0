"""Fit SRC to a new dataset: random search over the paper's parameter vector x = [max_rate, inc, dec, beta_1..L,
alpha_scale], scored on *training* accuracy only (as the paper did: test data is never looked at).

Each trial draws every entry log-uniformly within a factor `spread` of the starting vector; the score is the
average training accuracy over all tasks after the last sleep of the `src` method. Results are sorted best first.
"""

from __future__ import annotations

import math

import numpy as np

from sleeptrain.continual.data import Benchmark
from sleeptrain.continual.methods import MethodConfig, run_method
from sleeptrain.continual.src import SRCParams


def random_search(bench: Benchmark, cfg: MethodConfig, trials: int, seed: int = 0, spread: float = 4.0,
                  method: str = "src") -> list[dict]:
    rng = np.random.default_rng([seed, 0x5EA6C])
    start = np.asarray(cfg.src.vector(), dtype=np.float64)
    results = []
    for trial in range(trials):
        x = start if trial == 0 else start * np.exp(rng.uniform(-math.log(spread), math.log(spread), start.shape))
        params = SRCParams.from_vector(x.tolist(), iterations=cfg.src.iterations, decay=cfg.src.decay,
                                       patch=cfg.src.patch, image_shape=cfg.src.image_shape, mode=cfg.src.mode,
                                       streams=cfg.src.streams)
        trial_cfg = MethodConfig(**{**cfg.__dict__, "src": params})
        result = run_method(bench, method, trial_cfg, seed, evaluate_on="train")
        results.append({"trial": trial, "x": x.tolist(), "train_accuracy": float(result.matrix[-1].mean())})
    return sorted(results, key=lambda r: -r["train_accuracy"])

"""Replay-buffer selection time for 10^6 and 10^7 candidates, per strategy (target: < 1 s at 10^7).

    python -m benchmarks.replay_selection [--sizes 1000000 10000000]
Baseline in the same process: one `np.argsort` of the same scores (a full sort), printed as a ratio.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.common import best_of, write_json
from sleeptrain.config import ReplayConfig
from sleeptrain.sleep.registry import STRATEGIES
from sleeptrain.sleep.scores import ScoreBook
from sleeptrain.sleep.strategies import select_buffer


def run(sizes: list[int], ratio: float = 0.2) -> dict:
    rows = []
    for n in sizes:
        rng = np.random.default_rng(0)
        book = ScoreBook(n)
        book.record(np.arange(n), torch.from_numpy(rng.gamma(2.0, 1.0, n).astype(np.float32)), cycle=0, step=0)
        book.flush()
        book.last_seen_step[:] = rng.integers(0, 10_000, n)
        k = int(ratio * n)
        baseline = best_of(lambda: np.argsort(book.scores), repeats=2)
        for name in STRATEGIES:
            cfg = ReplayConfig(strategy=name)
            seconds = best_of(lambda: select_buffer(book, k, cycle=1, step=10_000, cfg=cfg,
                                                    rng=np.random.default_rng(1)), repeats=2)
            rows.append({"candidates": n, "buffer": k, "strategy": name, "seconds": seconds,
                         "vs_full_argsort": seconds / baseline})
            print(f"{n:>11,} candidates  {name:<9} {seconds:7.3f} s   ({seconds / baseline:4.2f} x one np.argsort)")
    return {"benchmark": "replay_selection", "rows": rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args()
    print(write_json("replay_selection", run(args.sizes)))

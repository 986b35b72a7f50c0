"""Which samples each optimizer step sees: a pure function of (seed, step), so runs are reproducible and resumable.

Baselines: `single_pass` (each sample exactly once) and `epochs` (N passes, a fresh seeded permutation each pass).
Within a pass, steps take consecutive slices of the permutation; the last slice may be smaller, so no sample is
dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=4)
def pass_permutation(n_samples: int, seed: int, pass_index: int) -> np.ndarray:
    return np.random.default_rng([seed, 0xDA7A, pass_index]).permutation(n_samples)


@dataclass(frozen=True)
class EpochPlan:
    n_samples: int
    batch_size: int
    passes: int
    seed: int
    max_steps: int | None = None

    @property
    def steps_per_pass(self) -> int:
        return math.ceil(self.n_samples / self.batch_size)

    @property
    def total_steps(self) -> int:
        planned = self.passes * self.steps_per_pass
        return min(planned, self.max_steps) if self.max_steps else planned

    def indices(self, step: int) -> np.ndarray:
        """Sample indices for optimizer step `step` (0-based)."""
        if not 0 <= step < self.passes * self.steps_per_pass:
            raise IndexError(f"step {step} outside the plan of {self.passes * self.steps_per_pass} steps")
        pass_index, position = divmod(step, self.steps_per_pass)
        perm = pass_permutation(self.n_samples, self.seed, pass_index)
        return perm[position * self.batch_size:(position + 1) * self.batch_size]

    def pass_of(self, step: int) -> int:
        return step // self.steps_per_pass

"""Per-sample replay scores: the mean token loss of each sample, taken from the training forward pass itself (no
second forward; CLIMB-Sleep's SleepSampler scored by loss too). They accumulate over cycles and decay with age:
`decayed = score * max(decay_rate ** age_in_cycles, min_decay)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from sleeptrain.config import ReplayConfig


class ScoreBook:
    """Scores and ages of every training sample. Device tensors are queued and copied to the host in one
    transfer per flush (once per log interval / phase boundary), so the step itself never syncs.

    With several processes each one records the samples of its own shard; `gather` (an all-gather of Python
    objects, e.g. accelerate's `gather_object`) merges the queues at every flush, so every process holds the same
    book and selects the same buffer. Flushes are therefore collective: every process calls them at the same points.
    """

    def __init__(self, n_samples: int, gather=None):
        self.scores = np.full(n_samples, np.nan, dtype=np.float32)
        self.scored_cycle = np.full(n_samples, -1, dtype=np.int32)
        self.last_seen_step = np.full(n_samples, -1, dtype=np.int64)
        self.gather = gather
        self._pending: list[tuple[np.ndarray, torch.Tensor, int, int]] = []

    def record(self, indices: np.ndarray, values: torch.Tensor, cycle: int, step: int) -> None:
        self._pending.append((np.asarray(indices), values.detach(), cycle, step))

    def mark_seen(self, indices: np.ndarray, step: int) -> None:
        self.last_seen_step[indices] = step

    def flush(self) -> None:
        if self._pending:
            values = torch.cat([v.reshape(-1).float() for _, v, _, _ in self._pending]).cpu().numpy()
            indices = np.concatenate([i for i, _, _, _ in self._pending])
            cycles = np.concatenate([np.full(len(i), c, dtype=np.int32) for i, _, c, _ in self._pending])
            steps = np.concatenate([np.full(len(i), s, dtype=np.int64) for i, _, _, s in self._pending])
        else:
            values, indices = np.zeros(0, np.float32), np.zeros(0, np.int64)
            cycles, steps = np.zeros(0, np.int32), np.zeros(0, np.int64)
        self._pending.clear()
        parts = [(indices, values, cycles, steps)]
        if self.gather is not None:
            parts = self.gather(parts)
        for indices, values, cycles, steps in parts:
            self.scores[indices] = values
            self.scored_cycle[indices] = cycles
            self.last_seen_step[indices] = np.maximum(self.last_seen_step[indices], steps)

    def candidates(self) -> np.ndarray:
        """Indices of every sample scored so far."""
        return np.flatnonzero(self.scored_cycle >= 0)

    def decayed_scores(self, indices: np.ndarray, cycle: int, cfg: "ReplayConfig") -> np.ndarray:
        age = np.maximum(cycle - self.scored_cycle[indices], 0)
        factor = np.maximum(np.power(cfg.decay_rate, age, dtype=np.float64), cfg.min_decay)
        return (self.scores[indices] * factor).astype(np.float64)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors (for `torch.save`/`torch.load(weights_only=True)`); flush first (collectively)."""
        if self._pending:
            raise RuntimeError("ScoreBook.state_dict: flush() first")
        return {"scores": torch.from_numpy(self.scores.copy()),
                "scored_cycle": torch.from_numpy(self.scored_cycle.copy()),
                "last_seen_step": torch.from_numpy(self.last_seen_step.copy())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("scores", "scored_cycle", "last_seen_step"):
            value = state[name].numpy()
            if value.shape != getattr(self, name).shape:
                raise ValueError(f"replay scores for {value.shape[0]} samples, this run has "
                                 f"{getattr(self, name).shape[0]}")
            setattr(self, name, value.copy())
        self._pending.clear()

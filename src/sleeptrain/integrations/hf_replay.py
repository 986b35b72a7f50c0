"""Replay in a `transformers.Trainer`: the training data as a wake/sleep stream, and where its sleeps fall.

`SleepCallback.replay_stream(dataset, samples_per_step)` wraps a map-style dataset into `ReplayStream`, an
IterableDataset the Trainer consumes in order (so `max_steps` must be set, as for any IterableDataset): `wake_steps`
optimizer steps of fresh samples (seeded reshuffled passes over the dataset), then a sleep of `sleep_length(k)` steps
replaying a buffer of `replay.ratio` × the samples seen so far, chosen by `replay.strategy` — `random` or `recency`
(steps since a sample was last seen); the score-based strategies need per-sample training losses, which no Trainer
callback sees — and read as reshuffled passes over the buffer (`sleep.contexts.sleep_order`), then wake again.

The stream is a pure function of the seed, so a resumed Trainer (which re-reads and skips the batches it had
trained) sees exactly the samples of the interrupted run; the callback finds the sleep steps with `windows`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from sleeptrain.errors import ConfigError
from sleeptrain.sleep.contexts import sleep_order
from sleeptrain.sleep.registry import STRATEGIES

if TYPE_CHECKING:
    from sleeptrain.config import Config

SCORE_FREE = ("random", "recency")  # strategies that need no per-sample losses


class SleepPlan:
    """Wake phases of `wake_steps` optimizer steps, each followed by sleep k of `sleep_length(k)` steps."""

    def __init__(self, cfg: "Config", wake_steps: int, samples_per_step: int, n_samples: int):
        self.cfg, self.wake_steps, self.samples_per_step = cfg, wake_steps, samples_per_step
        self.n_samples = n_samples

    def buffer_size(self, k: int) -> int:
        seen = min((k + 1) * self.wake_steps * self.samples_per_step, self.n_samples)
        return max(1, round(self.cfg.replay.ratio * seen))

    def sleep_length(self, k: int) -> int:
        repeats = self.cfg.schedule.replay_repeats
        if repeats is not None:
            return max(1, round(repeats * self.buffer_size(k) / self.samples_per_step))
        return max(1, round(self.cfg.schedule.sleep_wake_ratio * self.wake_steps))

    def windows(self, max_steps: int) -> list[tuple[int, int]]:
        """(first step, end step) of every sleep that starts before `max_steps` (the end may be cut by it)."""
        out, step, k = [], self.wake_steps, 0
        while step < max_steps or (step == max_steps and self.cfg.schedule.sleep_after_last):
            out.append((step, min(step + self.sleep_length(k), max_steps)))
            step, k = step + self.sleep_length(k) + self.wake_steps, k + 1
        return out


class ReplayStream(torch.utils.data.IterableDataset):
    """`dataset`'s items in wake/sleep order (see the module docstring), without end: the Trainer stops at
    `max_steps`."""

    def __init__(self, dataset, plan: SleepPlan, seed: int):
        self.dataset, self.plan, self.seed = dataset, plan, seed

    def indices(self) -> Iterator[int]:
        """The dataset indices in training order, sleeps included."""
        plan, n, per_step = self.plan, len(self.dataset), self.plan.samples_per_step
        last_seen = np.full(n, -1, dtype=np.int64)
        epoch, cursor, order, step = 0, 0, np.random.default_rng([self.seed, 0xA11E, 0]).permutation(n), 0
        for k in range(np.iinfo(np.int64).max):
            for _ in range(plan.wake_steps):
                for _ in range(per_step):
                    if cursor == n:
                        epoch, cursor = epoch + 1, 0
                        order = np.random.default_rng([self.seed, 0xA11E, epoch]).permutation(n)
                    last_seen[order[cursor]] = step
                    yield int(order[cursor])
                    cursor += 1
                step += 1
            candidates = np.flatnonzero(last_seen >= 0)
            rng = np.random.default_rng([self.seed, 0x51EE9, k])
            ages = step - last_seen[candidates]
            chosen = STRATEGIES[plan.cfg.replay.strategy](min(plan.buffer_size(k), candidates.size),
                                                          np.zeros(candidates.size), ages, rng, plan.cfg.replay)
            buffer = candidates[chosen]
            last_seen[buffer] = step
            length = plan.sleep_length(k)
            for position in sleep_order(buffer.size, length * per_step, rng):
                yield int(buffer[position])
            step += length

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        if info is not None and info.num_workers > 1:
            raise ConfigError("dataloader_num_workers: the replay stream is one ordered sequence; use 0 or 1 worker")
        return (self.dataset[i] for i in self.indices())

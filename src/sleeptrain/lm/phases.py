"""The phase plan: a list of wake and sleep stages, and `lookup(step)` (modded-nanogpt style).

Every schedule is one plan. Per pass over the data (`schedule.epochs` passes), a seeded permutation of the sample
indices is cut into `schedule.n_cycles` contiguous folds whose sizes differ by at most one; no sample is dropped
(the reference implementation silently never visited the leftover fold). Wake stage k streams fold k, each sample
exactly once; sleep stage k (sleep schedules only) replays a buffer chosen from the samples seen so far.
Baselines are plans too: `single_pass` = one pass, one fold, no sleep; `epochs` = N passes, one fold each.
FORGETTER's epochs (`build_epoch_plan`) are wake stages of a fixed number of steps over windows drawn fresh for each
epoch (`data.samples.EpochWindows`), visited in the order they were drawn.

The plan is a pure function of the config and the sample count, so any step can be located without running the
ones before it (resume, plots, tests).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Stage:
    phase: str            # "wake" | "sleep"
    cycle: int            # 0-based, counted over the whole run (passes included)
    pass_index: int
    start: int            # first optimizer step of the stage
    steps: int            # may be 0 for a sleep that only runs boundary operations
    fold: tuple[int, int]  # wake: [lo, hi) into the pass permutation; sleep: the fold just learned
    buffer_size: int = 0  # sleep: samples chosen for replay
    candidates: int = 0   # sleep: distinct samples seen so far (the pool replay chooses from)

    @property
    def end(self) -> int:
        return self.start + self.steps


@dataclass(frozen=True)
class Position:
    stage: Stage
    index: int            # position of the stage in the plan
    offset: int           # step within the stage


@lru_cache(maxsize=4)
def pass_permutation(n_samples: int, seed: int, pass_index: int) -> np.ndarray:
    return np.random.default_rng([seed, 0xDA7A, pass_index]).permutation(n_samples)


def fold_bounds(n_samples: int, n_folds: int) -> list[int]:
    """Boundaries of `n_folds` contiguous folds of sizes differing by at most one, covering every index."""
    return [(k * n_samples) // n_folds for k in range(n_folds + 1)]


@dataclass
class PhasePlan:
    stages: list[Stage]
    n_samples: int
    batch_size: int
    seed: int
    n_cycles: int
    ordered: bool = False  # wake stages visit their fold in index order (the samples are already a random draw)
    truncated: dict | None = None  # set when train.max_steps cut the schedule short (`truncation`)

    @property
    def total_steps(self) -> int:
        return self.stages[-1].end if self.stages else 0

    def lookup(self, step: int) -> Position:
        """The stage holding optimizer step `step` (0-based). Zero-step stages are never returned."""
        starts = self._starts()
        i = bisect.bisect_right(starts, step) - 1
        while i >= 0 and self.stages[i].steps == 0:
            i -= 1
        if i < 0 or not 0 <= step < self.total_steps:
            raise IndexError(f"step {step} outside the plan of {self.total_steps} steps")
        stage = self.stages[i]
        if step >= stage.end:  # inside a gap can't happen: stages are contiguous
            raise IndexError(f"step {step} not covered by the plan")
        return Position(stage, i, step - stage.start)

    def _starts(self) -> list[int]:
        if not hasattr(self, "_cached_starts"):
            self._cached_starts = [s.start for s in self.stages]
        return self._cached_starts

    def wake_indices(self, stage: Stage, offset: int) -> np.ndarray:
        """Sample indices of wake step `offset` of `stage`: consecutive slices of the fold."""
        lo, hi = stage.fold
        a = lo + offset * self.batch_size
        if self.ordered:
            return np.arange(a, min(a + self.batch_size, hi), dtype=np.int64)
        perm = pass_permutation(self.n_samples, self.seed, stage.pass_index)
        return perm[a:min(a + self.batch_size, hi)]

    def fold_indices(self, stage: Stage) -> np.ndarray:
        if self.ordered:
            return np.arange(stage.fold[0], stage.fold[1], dtype=np.int64)
        perm = pass_permutation(self.n_samples, self.seed, stage.pass_index)
        return perm[stage.fold[0]:stage.fold[1]]


def sleep_length(candidates: int, wake_steps: int, batch_size: int, replay_ratio: float,
                 sleep_wake_ratio: float | None, replay_repeats: float | None) -> tuple[int, int]:
    """(replay buffer size, sleep steps) of a sleep after `wake_steps` steps with `candidates` samples seen:
    `replay_repeats` x buffer / batch when set, else `sleep_wake_ratio` x the wake steps; 0 steps without replay."""
    buffer = min(candidates, max(1, round(replay_ratio * candidates))) if replay_ratio > 0 else 0
    if not buffer:
        return 0, 0
    if replay_repeats is not None:
        return buffer, math.ceil(replay_repeats * buffer / batch_size)
    return buffer, math.ceil((sleep_wake_ratio or 0.0) * wake_steps)


def build_plan(n_samples: int, batch_size: int, seed: int, *, passes: int = 1, n_cycles: int = 1,
               sleep: bool = False, replay_ratio: float = 0.0, sleep_wake_ratio: float | None = None,
               replay_repeats: float | None = None, sleep_after_last: bool = True,
               max_steps: int | None = None) -> PhasePlan:
    """Lay out wake/sleep stages. Sleep length: `replay_repeats` x buffer / batch when set, else
    `sleep_wake_ratio` x the wake steps before it (0 when neither: a sleep of boundary operations only)."""
    if n_cycles > n_samples:
        raise ValueError(f"{n_cycles} cycles need at least as many samples, got {n_samples}")
    bounds = fold_bounds(n_samples, n_cycles)
    stages: list[Stage] = []
    step, cycle = 0, 0
    for p in range(passes):
        for k in range(n_cycles):
            fold = (bounds[k], bounds[k + 1])
            wake_steps = math.ceil((fold[1] - fold[0]) / batch_size)
            stages.append(Stage("wake", cycle, p, step, wake_steps, fold))
            step += wake_steps
            last = p == passes - 1 and k == n_cycles - 1
            if sleep and (sleep_after_last or not last):
                candidates = n_samples if p > 0 else fold[1]
                buffer, sleep_steps = sleep_length(candidates, wake_steps, batch_size, replay_ratio,
                                                   sleep_wake_ratio, replay_repeats)
                stages.append(Stage("sleep", cycle, p, step, sleep_steps, fold, buffer, candidates))
                step += sleep_steps
            cycle += 1
    cut = truncate(stages, max_steps) if max_steps is not None else stages
    return PhasePlan(cut, n_samples, batch_size, seed, n_cycles, truncated=truncation(stages, cut))


def build_epoch_plan(steps_per_epoch: int, batch_size: int, seed: int, *, epochs: int, sleep: bool = False,
                     replay_ratio: float = 0.0, sleep_wake_ratio: float | None = None,
                     replay_repeats: float | None = None, sleep_after_last: bool = True,
                     max_steps: int | None = None) -> PhasePlan:
    """FORGETTER's layout: epoch e is a wake stage of `steps_per_epoch` steps over samples
    [e * steps_per_epoch * batch, (e + 1) * steps_per_epoch * batch) in order (its freshly drawn windows), then a
    sleep (its length as in `build_plan`; 0 steps without replay: the sleep's ops only)."""
    per_epoch = steps_per_epoch * batch_size
    stages: list[Stage] = []
    step = 0
    for e in range(epochs):
        fold = (e * per_epoch, (e + 1) * per_epoch)
        stages.append(Stage("wake", e, e, step, steps_per_epoch, fold))
        step += steps_per_epoch
        if sleep and (sleep_after_last or e < epochs - 1):
            candidates = fold[1]
            buffer, sleep_steps = sleep_length(candidates, steps_per_epoch, batch_size, replay_ratio,
                                               sleep_wake_ratio, replay_repeats)
            stages.append(Stage("sleep", e, e, step, sleep_steps, fold, buffer, candidates))
            step += sleep_steps
    cut = truncate(stages, max_steps) if max_steps is not None else stages
    return PhasePlan(cut, per_epoch * epochs, batch_size, seed, 1, ordered=True, truncated=truncation(stages, cut))


def truncation(full: list[Stage], cut: list[Stage]) -> dict | None:
    """What `train.max_steps` cut away: planned vs kept steps, whole cycles (wake + its sleep) completed, and the
    share of the planned wake steps (the training data) kept. None when nothing was cut."""
    planned, kept = (full[-1].end if full else 0), (cut[-1].end if cut else 0)
    if kept >= planned:
        return None
    cycles = sorted({(s.pass_index, s.cycle) for s in full})
    done = sum(all(c.end <= kept for c in full if (c.pass_index, c.cycle) == key) for key in cycles)
    wake_planned = sum(s.steps for s in full if s.phase == "wake")
    wake_kept = sum(s.steps for s in cut if s.phase == "wake")
    return {"planned_steps": planned, "steps": kept, "cycles_planned": len(cycles), "cycles_completed": done,
            "wake_share": wake_kept / wake_planned if wake_planned else 1.0}


def describe_truncation(t: dict) -> str:
    return (f"train.max_steps={t['steps']} cuts the schedule short: {t['steps']} of {t['planned_steps']} planned "
            f"steps, {t['cycles_completed']} of {t['cycles_planned']} wake/sleep cycles complete, "
            f"{t['wake_share']:.0%} of the planned training data seen")


def truncate(stages: list[Stage], max_steps: int) -> list[Stage]:
    """Cut the plan at `max_steps` optimizer steps (the stage holding the cap is shortened)."""
    out = []
    for s in stages:
        if s.start >= max_steps and not (s.steps == 0 and s.start == max_steps and out and out[-1].phase == "wake"):
            break
        if s.end > max_steps:
            s = Stage(s.phase, s.cycle, s.pass_index, s.start, max_steps - s.start, s.fold, s.buffer_size,
                      s.candidates)
        out.append(s)
    return out

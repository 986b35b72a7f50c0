"""A validation split held out of a benchmark's training images, for choosing a method's settings (`validation=N`).

N images of every class of a task are drawn (seeded by the run's seed) and removed from everything the run trains
on or sleeps on: the task's SGD set (`x_train`) and the set SRC takes its mean input and scaling from (`x_seen`).
When the task trains on a prefix of its images (Split-MNIST / Split-Fashion: the first `train_per_task` in file
order, as the authors' scripts) and enough images lie beyond it, the validation images are drawn from those unused
ones, so the SGD set stays the authors' exactly; otherwise they are drawn from the SGD set itself. The test set is
never touched. Choices are made on validation accuracy; test accuracy is reported only at the chosen settings.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from sleeptrain.continual.data import Benchmark, Task
from sleeptrain.errors import ConfigError


def _draw(labels: np.ndarray, classes: list[int], per_class: int, rng: np.random.Generator, offset: int,
          name: str) -> np.ndarray:
    picked = []
    for c in classes:
        pool = np.flatnonzero(labels == c)
        if len(pool) <= per_class:
            raise ConfigError(f"validation: {per_class} images per class leaves none of class {c} to train on in "
                              f"task {name} ({len(pool)} available); choose fewer")
        picked.append(np.sort(rng.choice(pool, per_class, replace=False)) + offset)
    return np.sort(np.concatenate(picked))


def split_task(task: Task, per_class: int, rng: np.random.Generator) -> Task:
    """The task without its validation images, which become `x_val` / `y_val`."""
    seen_x, seen_y = task.seen, task.seen_labels
    n_train = len(task.y_train)
    prefix = (task.x_seen is not None and len(seen_y) > n_train
              and torch.equal(seen_x[:n_train], task.x_train) and torch.equal(seen_y[:n_train], task.y_train))
    rest = seen_y[n_train:].numpy() if prefix else None
    if prefix and all((rest == c).sum() > per_class for c in task.classes):
        val = _draw(rest, task.classes, per_class, rng, n_train, task.name)       # indices into x_seen
        keep_seen = np.setdiff1d(np.arange(len(seen_y)), val)
        return replace(task, x_seen=seen_x[keep_seen], y_seen=seen_y[keep_seen], x_val=seen_x[val], y_val=seen_y[val])
    val = _draw(task.y_train.numpy(), task.classes, per_class, rng, 0, task.name)  # indices into x_train
    keep = np.setdiff1d(np.arange(n_train), val)
    out = replace(task, x_train=task.x_train[keep], y_train=task.y_train[keep],
                  x_val=task.x_train[val], y_val=task.y_train[val])
    if task.x_seen is None:
        return out
    if len(seen_y) >= n_train and torch.equal(seen_x[:n_train], task.x_train):  # x_train leads x_seen: same indices
        keep_seen = np.setdiff1d(np.arange(len(seen_y)), val)
    else:  # unrelated orders: match by value
        drop = {tuple(row) for row in task.x_train[val].numpy().round(6).tolist()}
        keep_seen = np.flatnonzero([tuple(row) not in drop for row in seen_x.numpy().round(6).tolist()])
    return replace(out, x_seen=seen_x[keep_seen], y_seen=seen_y[keep_seen])


def hold_out_validation(bench: Benchmark, per_class: int, seed: int) -> Benchmark:
    """The benchmark with `per_class` images of every class of every task held out as its validation set."""
    if bench.name == "patches":
        raise ConfigError("validation: patches has one image per class, none to hold out; use a split benchmark")
    rng = np.random.default_rng([seed, 0x7A11D])
    tasks = [split_task(task, per_class, rng) for task in bench.tasks]
    note = (f"; validation: {per_class} training images per class held out (seeded), never trained or slept on")
    return replace(bench, tasks=tasks, notes=bench.notes + note)

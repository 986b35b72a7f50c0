"""`rehearsal`: old tasks' images mixed into each new task's training set (the SRC authors'
`MNIST/run_sleep_with_replay.m`), or paired with every mini-batch under the paper's weighted loss."""

from __future__ import annotations

import torch

from sleeptrain.continual.parts import Part, TaskRun


def rehearsal_samples(old_tasks, kept_x, kept_y, cfg, rng) -> tuple[torch.Tensor, torch.Tensor]:
    """The old images mixed into a new task's training set. `fresh` (`MNIST/run_sleep_with_replay.m`): a new random
    draw of `round(fraction x n_old, -2)` images from all old tasks' training images (`x_seen`), where the code
    rounds to hundreds (below 50 images: to the nearest integer, at least 1, so small data still rehearse);
    `kept`: the `fraction` of each old task's training images chosen once when it ended (this project's earlier
    rule, a fixed memory)."""
    if cfg.rehearsal_draw == "kept":
        return torch.cat(kept_x), torch.cat(kept_y)
    pool_x = torch.cat([t.seen for t in old_tasks])
    pool_y = torch.cat([t.seen_labels for t in old_tasks])
    n = cfg.rehearsal_fraction * len(pool_y)
    n = int(round(n, -2)) or max(1, int(round(n)))
    pick = torch.from_numpy(rng.permutation(len(pool_y))[:n])
    return pool_x[pick], pool_y[pick]


class Rehearsal(Part):
    """`rehearsal_fraction` of the old tasks' images (`rehearsal_draw`, `rehearsal_loss`)."""

    def __init__(self):
        self.kept_x: list[torch.Tensor] = []
        self.kept_y: list[torch.Tensor] = []

    def before_task(self, run: TaskRun) -> None:
        if run.t == 0:
            return
        old_x, old_y = rehearsal_samples(run.bench.tasks[:run.t], self.kept_x, self.kept_y, run.cfg, run.rng)
        if run.cfg.rehearsal_loss == "weighted":  # the paper's loss: old tasks weigh (t - 1) / t of it
            run.replay = (old_x, old_y, run.t / (run.t + 1))
        else:
            run.x, run.y = torch.cat([run.x, old_x]), torch.cat([run.y, old_y])

    def after_train_stage(self, run: TaskRun) -> None:
        if run.cfg.rehearsal_draw != "kept":
            return
        task = run.task
        n_keep = max(1, int(round(run.cfg.rehearsal_fraction * len(task.y_train))))
        keep = torch.from_numpy(run.rng.choice(len(task.y_train), n_keep, replace=False))
        self.kept_x.append(task.x_train[keep])
        self.kept_y.append(task.y_train[keep])

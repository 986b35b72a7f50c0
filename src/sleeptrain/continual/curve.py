"""Continual evaluation (`eval_every=K`): accuracy on every task seen so far during training, and the worst-case
metrics of De Lange, van de Ven & Tuytelaars (ICLR 2023, "Continual evaluation for lifelong learning: identifying
the stability gap", Sec. 3).

Points: every K SGD iterations of a task's training (iterations count across tasks), the end of each task's
training and the end of each sleep (a sleep takes no SGD iteration: its points share the iteration of the training
end before it and are marked `after_sleep`). Each point holds the accuracy on tasks 1..t (t: the task being trained).

With T tasks and a_k(n) the accuracy on task k at point n, the paper's definitions, followed as written:
- min-ACC = 1/(T-1) Σ_{k<T} min_{n after task k is learned} a_k(n) — the average over the earlier tasks of the
  lowest accuracy seen on each after its own training ended, up to the end; "after" is every later point,
  sleeps included (the sleep after task k itself too: a sleep that costs task k accuracy widens its gap);
- WC-ACC = 1/T a_T(end) + (1 - 1/T) min-ACC — the last task's final accuracy and the earlier tasks' worst cases;
- the stability gap of task k: its accuracy at the end of its training minus its min after it.
The paper evaluates with every iteration (ρ_eval = 1) on subsampled test sets; here every K iterations on the
whole split (Avalanche's periodic evaluation, `eval_every` with `peval_mode="iteration"`, is the same mechanism).
"""

from __future__ import annotations

import numpy as np


class Curve:
    """Collects the points while `run_method` trains; `evaluate(t)` gives the accuracies on tasks 0..t."""

    def __init__(self, every: int, evaluate):
        self.every, self.evaluate = every, evaluate
        self.iteration, self.task, self.points = 0, 0, []

    def step(self) -> None:
        """One SGD iteration of the current task (Trainer.fit's `on_step`)."""
        self.iteration += 1
        if self.iteration % self.every == 0:
            self.add("train")

    def add(self, kind: str) -> None:
        self.points.append({"iteration": self.iteration, "task": self.task, "kind": kind,
                            "accuracy": [float(a) for a in self.evaluate(self.task + 1)]})


def learned_index(points: list[dict], k: int) -> int:
    """The index of the point that ends task k's training."""
    return next(i for i, p in enumerate(points) if p["kind"] == "after_train" and p["task"] == k)


def worst_case(points: list[dict], n_tasks: int) -> dict:
    """min-ACC, WC-ACC and each earlier task's stability gap from a run's points."""
    if n_tasks < 2:
        return {"min_acc": None, "wc_acc": None, "gap": []}
    mins, gaps = [], []
    for k in range(n_tasks - 1):
        start = learned_index(points, k)
        after = [p["accuracy"][k] for p in points[start + 1:]]
        mins.append(min(after))
        gaps.append(points[start]["accuracy"][k] - mins[-1])
    min_acc = float(np.mean(mins))
    last = points[-1]["accuracy"][n_tasks - 1]
    return {"min_acc": min_acc, "wc_acc": float(last / n_tasks + (1 - 1 / n_tasks) * min_acc),
            "min_by_task": mins, "gap": gaps}

"""iCaRL's exemplar memory (Rebuffi et al. 2017) as the SRC authors ran it on Split-MNIST (`MNIST/run_icarl_mnist.m`).

- **Memory.** `K` stored images in all, `round(K / n)` per class once `n` classes are seen (`construct_exemplar_set2`
  after each task for its two classes, `reduce_example_set` keeps the first `m` of each older set — herding orders
  a set best-first, so the prefix is the best smaller set). A class never stores more images than it has (the code
  special-cases `memory == 20000` for that).
- **Selection.** `herding` picks, one at a time, the image whose feature brings the running mean of the chosen
  features closest to the class mean (features: the last hidden layer). The authors' code starts from the image with
  the *smallest* dot product with the class mean (`sort(activations * mu')` ascending, then `index(1)`) — a slip
  against iCaRL's rule, which its own loop follows from the second pick on; this module applies the rule from the
  first pick (the closest image to the mean). `random` (`construct_exemplar_set_random`) draws the set at random.
- **Features.** As the code: the exemplar and herding passes run `nnff` in training mode, so the hidden layers are
  dropout-masked (`features(..., train=True)`); the test images' pass in `nnpredict_iCarl` is in testing mode.
- **Classification.** `nme_predict`: nearest mean of exemplars (Euclidean, unnormalised features, as
  `nnpredict_iCarl`). The authors' summary script (`run_icarl_sleep.m`) stores the *network's own* accuracy
  (`run_icarl_mnist`'s first output), so both are reported.
- **Targets.** Old classes' exemplars train with one-hot targets, or with `distillation` with the current network's
  softmax output on them (soft targets, computed in training mode as the code's `nnff`).
"""

from __future__ import annotations

import numpy as np
import torch

from sleeptrain.continual.mlp import BiaslessMLP
from sleeptrain.continual.parts import Part, TaskRun

SELECTIONS = ("herding", "random")


@torch.no_grad()
def features(net: BiaslessMLP, x: torch.Tensor, train: bool = False,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """The last hidden layer's activations (`nn.a{end-1}`): dropout-masked with `train`, scaled by (1 - dropout)
    without, as the toolbox's `nnff`."""
    _, hidden = net(x, train=train, generator=generator, return_hidden=True)
    return hidden[-1]


def herding_selection(feats: torch.Tensor, m: int) -> list[int]:
    """Indices of `m` rows of `feats` chosen by herding: row k minimises || mu - (sum of chosen + row) / k ||."""
    mu = feats.mean(dim=0)
    chosen: list[int] = []
    running = torch.zeros_like(mu)
    available = torch.ones(len(feats), dtype=torch.bool)
    for k in range(1, min(m, len(feats)) + 1):
        dist = ((mu - (running + feats) / k) ** 2).sum(dim=1)
        dist[~available] = float("inf")
        i = int(dist.argmin())
        chosen.append(i)
        available[i] = False
        running += feats[i]
    return chosen


def random_selection(n: int, m: int, rng: np.random.Generator) -> list[int]:
    return rng.permutation(n)[:min(m, n)].tolist()


def class_means(feats: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> torch.Tensor:
    return torch.stack([feats[labels == c].mean(dim=0) for c in classes])


def nme_predict(feats: torch.Tensor, means: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """The class whose exemplar mean is nearest (Euclidean) to each row of `feats`."""
    return torch.tensor(classes)[torch.cdist(feats, means).argmin(dim=1)]


class ExemplarMemory:
    """Up to `capacity` stored training images, split evenly over the classes seen so far."""

    def __init__(self, capacity: int, selection: str = "herding", seed: int = 0):
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        self.capacity, self.selection = capacity, selection
        self.sets: dict[int, torch.Tensor] = {}
        self.rng = np.random.default_rng([seed, 0x1CA])
        self.generator = torch.Generator().manual_seed(seed * 7919 + 17)

    def per_class(self, n_classes: int) -> int:
        return int(np.floor(self.capacity / n_classes + 0.5))  # MATLAB's round: halves away from zero

    def add_classes(self, net: BiaslessMLP, x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> None:
        """Store exemplars of the new `classes` (from all their training images `x`, `y`), then shrink every set to
        the new per-class size."""
        m = self.per_class(len(self.sets) + len(classes))
        for c in classes:
            images = x[y == c]
            if self.selection == "herding":
                pick = herding_selection(features(net, images, train=True, generator=self.generator), m)
            else:
                pick = random_selection(len(images), m, self.rng)
            self.sets[c] = images[pick]
        for c in self.sets:
            self.sets[c] = self.sets[c][:m]

    def training_set(self, net: BiaslessMLP, n_classes: int, distillation: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Every stored image with its target row: one-hot, or the network's softmax output (`distillation`)."""
        x = torch.cat(list(self.sets.values()))
        if distillation:
            with torch.no_grad():
                out = net(x, train=True, generator=self.generator)
                return x, torch.softmax(out, dim=1) if net.output == "softmax_ce" else out
        labels = torch.cat([torch.full((len(s),), c) for c, s in self.sets.items()])
        return x, torch.nn.functional.one_hot(labels, n_classes).float()

    def nme_accuracy(self, net: BiaslessMLP, x: torch.Tensor, y: torch.Tensor) -> float:
        """Nearest-mean-of-exemplars accuracy on (`x`, `y`) over the stored classes (`nnpredict_iCarl`)."""
        if not self.sets or len(y) == 0:
            return float("nan")
        classes = sorted(self.sets)
        exemplar_x = torch.cat([self.sets[c] for c in classes])
        exemplar_y = torch.cat([torch.full((len(self.sets[c]),), c) for c in classes])
        means = class_means(features(net, exemplar_x, train=True, generator=self.generator), exemplar_y, classes)
        return float((nme_predict(features(net, x), means, classes) == y).float().mean())

    def __len__(self) -> int:
        return sum(len(s) for s in self.sets.values())


def icarl_training_set(task, exemplars: tuple[torch.Tensor, torch.Tensor], n_classes: int,
                       batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A new task's images with one-hot targets, then the stored exemplars with theirs, padded to whole batches
    with the task's next training images (`run_icarl_mnist.m`: `train_x(indices(5000:5000 + 99 - rem))`)."""
    ex_x, ex_y = exemplars
    x = torch.cat([task.x_train, ex_x])
    y = torch.cat([torch.nn.functional.one_hot(task.y_train, n_classes).float(), ex_y])
    pad = -len(x) % batch_size
    if pad:
        start = len(task.x_train) - 1  # the code's 1-based indices(5000:...) starts at the task's 5000th image
        extra_x, extra_y = task.seen[start:start + pad], task.seen_labels[start:start + pad]
        x = torch.cat([x, extra_x])
        y = torch.cat([y, torch.nn.functional.one_hot(extra_y, n_classes).float()])
    return x, y


class ICaRL(Part):
    """The `icarl` method's part: an exemplar memory of `memory` images; from task 2 on the training set is the
    task's images plus the exemplars (distillation targets); nearest-mean-of-exemplars accuracy after every stage."""

    def __init__(self, cfg, seed: int):
        self.memory = ExemplarMemory(cfg.memory, cfg.exemplar_selection, seed)

    def before_task(self, run: TaskRun) -> None:
        if run.t > 0:
            run.x, run.y = icarl_training_set(
                run.task, self.memory.training_set(run.net, run.bench.n_classes, run.cfg.distillation),
                run.bench.n_classes, run.cfg.sgd.batch_size)

    def after_train_stage(self, run: TaskRun) -> None:
        # the new classes' exemplars come from the net before its sleep, as the code
        self.memory.add_classes(run.net, run.task.seen, run.task.seen_labels, run.task.classes)
        self.after_sleep_stage(run)

    def after_sleep_stage(self, run: TaskRun) -> None:
        on_train = run.evaluate_on == "train"
        run.nme.append([self.memory.nme_accuracy(run.net, t.x_train, t.y_train) if on_train else
                        self.memory.nme_accuracy(run.net, t.x_test, t.y_test) for t in run.bench.tasks])

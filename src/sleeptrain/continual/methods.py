"""Continual-learning methods on a benchmark: sequential, joint, src, rehearsal, rehearsal_src.

Each returns the stage names and the accuracy matrix (stage x task). `sequential` is the lower bound (fine-tune
task after task), `joint` the upper bound (all tasks' data at once), `src` sleeps after every task with the mean
input of all tasks so far, `rehearsal` mixes a kept fraction of old samples into each new task's training, `ewc`
penalises moving the weights that mattered to earlier tasks (online EWC, `sleeptrain.continual.ewc`), `si` the same
with path-integral importances (synaptic intelligence, `sleeptrain.continual.si`), `owm` projects every gradient
away from the inputs of earlier tasks (orthogonal weights modification, `sleeptrain.continual.owm`), `icarl` keeps
an exemplar memory of `memory` images (herding, distillation targets, nearest-mean-of-exemplars accuracy beside the
network's own: `sleeptrain.continual.icarl`) and `icarl_src` sleeps after every task on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from sleeptrain.continual.data import Benchmark
from sleeptrain.continual.ewc import EWCPenalty
from sleeptrain.continual.icarl import ExemplarMemory
from sleeptrain.continual.owm import OrthogonalProjection
from sleeptrain.continual.si import SynapticIntelligence
from sleeptrain.continual.mlp import BiaslessMLP, SGDConfig, Trainer
from sleeptrain.continual.src import SRCParams, src_sleep
from sleeptrain.errors import ConfigError

METHODS = ("sequential", "joint", "src", "rehearsal", "rehearsal_src", "ewc", "si", "owm", "icarl", "icarl_src")
SLEEPING = ("src", "rehearsal_src", "icarl_src")
ICARL = ("icarl", "icarl_src")


@dataclass
class MethodConfig:
    hidden: list[int] = field(default_factory=lambda: [1200, 1200])
    output: str = "relu_mse"
    dropout: float = 0.25
    init: str = "uniform"                     # uniform (the authors' U(-0.01, 0.01)) | glorot
    init_range: float = 0.01
    output_grad: str = "toolbox"              # relu_mse: toolbox (no ReLU derivative at the output) | exact
    sgd: SGDConfig = field(default_factory=SGDConfig)
    task_epochs: list[int] | None = None      # per-task epochs (Patches: [4, 2]); default sgd.epochs for all
    src: SRCParams = field(default_factory=SRCParams)
    src_growth: int = 5000                    # sleep iterations after task t: src.iterations + (t-1) * growth
    src_norm_data: str = "seen"               # seen: all seen tasks' inputs (the code) | current: this task's only
    rehearsal_fraction: float = 0.1           # fraction of each old task's samples kept
    rehearsal_draw: str = "fresh"             # fresh: drawn anew from all old tasks' images per task (the code) | kept
    rehearsal_loss: str = "concat"            # concat: old images mixed into the set, plain loss (the code) | weighted
    sleep_after: list[int] | None = None      # 1-based tasks followed by a sleep (default: every task)
    ewc_strength: float = 100.0               # ewc: lambda of the penalty lambda/2 sum F (w - w*)^2
    ewc_gamma: float = 1.0                    # ewc: decay of the running Fisher (1 = sum over tasks)
    si_strength: float = 0.1                  # si: c of the penalty c sum Omega (w - w*)^2
    si_xi: float = 1e-3                       # si: damping xi of Omega += omega / (Delta^2 + xi)
    owm_alphas: list[float] | None = None     # owm: alpha per layer (default: 0.9, then 0.6 for the others)
    memory: int = 100                         # icarl: K, the stored images in all
    exemplar_selection: str = "herding"       # icarl: herding | random
    distillation: bool = True                 # icarl: old exemplars train on the network's outputs (soft targets)


@dataclass
class MethodResult:
    stages: list[str]
    matrix: np.ndarray            # (stages, tasks)
    learned: list[int]            # stage index that finished training each task
    sleep_info: list[dict]
    probe: list[list[float]] = field(default_factory=list)  # per stage: output-layer input for task 1's first test image
    nme: list[list[float]] = field(default_factory=list)    # icarl: per stage, nearest-mean-of-exemplars accuracy


@torch.no_grad()
def _probe(net: BiaslessMLP, bench: Benchmark) -> list[float]:
    """The input each output neuron gets from task 1's first test image (the paper's Fig. 1C)."""
    h = bench.tasks[0].x_test[:1]
    for i, w in enumerate(net.weights):
        z = h @ w.T
        h = torch.relu(z) * (1.0 - net.dropout if net.dropout else 1.0) if i < len(net.weights) - 1 else z
    return z[0].tolist()


def _evaluate(net: BiaslessMLP, bench: Benchmark, on: str = "test") -> list[float]:
    if on == "train":
        return [net.accuracy(t.x_train, t.y_train) for t in bench.tasks]
    return [net.accuracy(t.x_test, t.y_test) for t in bench.tasks]


def _evaluate_nme(memory: ExemplarMemory, net: BiaslessMLP, bench: Benchmark, on: str) -> list[float]:
    if on == "train":
        return [memory.nme_accuracy(net, t.x_train, t.y_train) for t in bench.tasks]
    return [memory.nme_accuracy(net, t.x_test, t.y_test) for t in bench.tasks]


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


def rehearsal_samples(old_tasks, kept_x, kept_y, cfg: MethodConfig, rng) -> tuple[torch.Tensor, torch.Tensor]:
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


def run_method(bench: Benchmark, method: str, cfg: MethodConfig, seed: int, evaluate_on: str = "test") -> MethodResult:
    """Train (and sleep) through the tasks; accuracies on the test sets, or on the training sets for
    parameter search (which must never see test data)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    gen = torch.Generator().manual_seed(seed)
    net = BiaslessMLP([bench.n_inputs, *cfg.hidden, bench.n_classes], cfg.output, cfg.dropout, init=cfg.init,
                      init_range=cfg.init_range, output_grad=cfg.output_grad, generator=gen)
    trainer = Trainer(net, seed)
    stages, rows, learned, sleeps, probe, nme = [], [], [], [], [], []
    rng = np.random.default_rng([seed, 0x4E4])

    if method == "joint":  # all training data at once (the authors' "ideal" net: the whole training set)
        x = torch.cat([t.seen for t in bench.tasks])
        y = torch.cat([t.seen_labels for t in bench.tasks])
        trainer.fit(x, y, cfg.sgd)
        row = _evaluate(net, bench, evaluate_on)
        return MethodResult(["train_joint"], np.array([row]), [0] * len(bench.tasks), [], [_probe(net, bench)])

    kept_x: list[torch.Tensor] = []
    kept_y: list[torch.Tensor] = []
    seen_inputs: list[torch.Tensor] = []
    ewc = EWCPenalty(cfg.ewc_strength, cfg.ewc_gamma) if method == "ewc" else None
    si = SynapticIntelligence(cfg.si_strength, cfg.si_xi) if method == "si" else None
    memory = ExemplarMemory(cfg.memory, cfg.exemplar_selection, seed) if method in ICARL else None
    owm = None
    if method == "owm":
        n_layers = len(net.weights)
        owm = OrthogonalProjection(net.sizes, cfg.owm_alphas or [0.9] + [0.6] * (n_layers - 1))
    for t, task in enumerate(bench.tasks):
        x, y = task.x_train, task.y_train
        replay = None
        if memory is not None and t > 0:
            x, y = icarl_training_set(task, memory.training_set(net, bench.n_classes, cfg.distillation),
                                      bench.n_classes, cfg.sgd.batch_size)
        if method in ("rehearsal", "rehearsal_src") and t > 0:
            old_x, old_y = rehearsal_samples(bench.tasks[:t], kept_x, kept_y, cfg, rng)
            if cfg.rehearsal_loss == "weighted":  # the paper's loss: old tasks weigh (t - 1) / t of it
                replay = (old_x, old_y, t / (t + 1))
            else:
                x, y = torch.cat([x, old_x]), torch.cat([y, old_y])
        sgd = cfg.sgd if cfg.task_epochs is None else SGDConfig(cfg.sgd.lr, cfg.sgd.momentum, cfg.sgd.batch_size,
                                                                 cfg.task_epochs[t])
        if si is not None:
            si.begin_task(net.weights)
        try:
            trainer.fit(x, y, sgd, penalty=ewc or si, observe=si.observe if si is not None else None, project=owm,
                        replay=replay)
        except FloatingPointError:
            hint = (f"lower ewc_strength (now {cfg.ewc_strength:g}: the penalty's curvature, strength x Fisher, must "
                    f"stay below 2/sgd.lr) or sgd.lr" if ewc is not None else
                    f"lower si_strength (now {cfg.si_strength:g}) or sgd.lr" if si is not None else "lower sgd.lr")
            raise ConfigError(f"sgd.lr: training diverged (non-finite loss) on {task.name} with lr {sgd.lr:g}; "
                              f"{hint}") from None
        if ewc is not None:
            ewc.consolidate(net, x, y)
        if si is not None:
            si.consolidate(net.weights)
        stages.append(f"train_{task.name}")
        rows.append(_evaluate(net, bench, evaluate_on))
        probe.append(_probe(net, bench))
        if memory is not None:  # the new classes' exemplars come from the net before its sleep, as the code
            memory.add_classes(net, task.seen, task.seen_labels, task.classes)
            nme.append(_evaluate_nme(memory, net, bench, evaluate_on))
        learned.append(len(rows) - 1)
        seen_inputs.append(task.seen)
        if method in ("rehearsal", "rehearsal_src") and cfg.rehearsal_draw == "kept":
            n_keep = max(1, int(round(cfg.rehearsal_fraction * len(task.y_train))))
            keep = torch.from_numpy(rng.choice(len(task.y_train), n_keep, replace=False))
            kept_x.append(task.x_train[keep])
            kept_y.append(task.y_train[keep])
        if method in SLEEPING and (cfg.sleep_after is None or t + 1 in cfg.sleep_after):
            params = SRCParams(**{**cfg.src.__dict__, "iterations": cfg.src.iterations + t * cfg.src_growth})
            sleep_data = seen_inputs[0] if bench.sleep_source == "first" else torch.cat(seen_inputs)
            norm_data = sleep_data if cfg.src_norm_data == "seen" else task.x_train
            weights = [w.data for w in net.weights]
            info = src_sleep(weights, sleep_data.mean(dim=0), net.activation_maxima(norm_data), params,
                             seed=seed * 1000 + t)
            sleeps.append({"task": task.name, **{k: v for k, v in info.items() if k != "alphas"},
                           "alphas": [float(a) for a in info["alphas"]]})
            stages.append(f"sleep_{task.name}")
            rows.append(_evaluate(net, bench, evaluate_on))
            probe.append(_probe(net, bench))
            if memory is not None:
                nme.append(_evaluate_nme(memory, net, bench, evaluate_on))
    return MethodResult(stages, np.array(rows), learned, sleeps, probe, nme)

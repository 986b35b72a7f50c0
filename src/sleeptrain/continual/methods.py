"""Continual-learning methods on a benchmark: each one a list of parts (`continual/parts.py`) called at the task
boundaries, named in `METHODS` — sequential (no part: fine-tune task after task, the lower bound), joint (all
tasks' data at once, the upper bound; no task loop), src (SRC sleep after every task: `src_sleep.py`), rehearsal
(`rehearsal.py`), rehearsal_src (both), ewc (`ewc.py`), si (`si.py`), owm (`owm.py`), icarl (`icarl.py`), icarl_src
(iCaRL + SRC sleep). `run_method` returns the stage names and the accuracy matrix (stage x task).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from sleeptrain.continual.data import Benchmark
from sleeptrain.continual.ewc import EWC
from sleeptrain.continual.icarl import ICaRL
from sleeptrain.continual.mlp import BiaslessMLP, SGDConfig, Trainer
from sleeptrain.continual.owm import OWM
from sleeptrain.continual.parts import Part, TaskRun
from sleeptrain.continual.rehearsal import Rehearsal, rehearsal_samples  # noqa: F401  (rehearsal_samples: re-export)
from sleeptrain.continual.si import SI
from sleeptrain.continual.src import SRCParams
from sleeptrain.continual.src_sleep import SRCSleep
from sleeptrain.errors import ConfigError



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


def run_method(bench: Benchmark, method: str, cfg: MethodConfig, seed: int, evaluate_on: str = "test") -> MethodResult:
    """Train (and sleep) through the tasks with the parts of `method`; accuracies on the test sets, or on the
    training sets for parameter search (which must never see test data)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    gen = torch.Generator().manual_seed(seed)
    net = BiaslessMLP([bench.n_inputs, *cfg.hidden, bench.n_classes], cfg.output, cfg.dropout, init=cfg.init,
                      init_range=cfg.init_range, output_grad=cfg.output_grad, generator=gen)
    trainer = Trainer(net, seed)
    if METHODS[method] is None:  # joint: all training data at once (the authors' "ideal" net: the whole set)
        trainer.fit(torch.cat([t.seen for t in bench.tasks]), torch.cat([t.seen_labels for t in bench.tasks]), cfg.sgd)
        row = _evaluate(net, bench, evaluate_on)
        return MethodResult(["train_joint"], np.array([row]), [0] * len(bench.tasks), [], [_probe(net, bench)])
    parts = METHODS[method](cfg, net, seed)
    run = TaskRun(net, bench, cfg, seed, np.random.default_rng([seed, 0x4E4]), evaluate_on)
    result = MethodResult([], np.zeros(0), [], [])
    rows: list[list[float]] = []
    for t, task in enumerate(bench.tasks):
        run.t, run.task, run.x, run.y, run.replay = t, task, task.x_train, task.y_train, None
        for part in parts:
            part.before_task(run)
        fit_task(trainer, run, parts)
        for part in parts:
            part.after_fit(run)
        record_stage(result, rows, run, f"train_{task.name}")
        result.learned.append(len(rows) - 1)
        run.seen_inputs.append(task.seen)
        for part in parts:
            part.after_train_stage(run)
        for part in parts:
            info = part.sleep(run)
            if info is not None:
                result.sleep_info.append(info)
                record_stage(result, rows, run, f"sleep_{task.name}")
                for other in parts:
                    other.after_sleep_stage(run)
    result.matrix, result.nme = np.array(rows), run.nme
    return result


def fit_task(trainer: Trainer, run: TaskRun, parts: list[Part]) -> None:
    """Train the task's set with the parts' penalty, observer and projection (at most one of each); a diverged run
    is a one-line error saying what to lower."""
    cfg = run.cfg
    sgd = cfg.sgd if cfg.task_epochs is None else SGDConfig(cfg.sgd.lr, cfg.sgd.momentum, cfg.sgd.batch_size,
                                                             cfg.task_epochs[run.t])
    first = lambda attr: next((getattr(p, attr) for p in parts if getattr(p, attr) is not None), None)  # noqa: E731
    try:
        trainer.fit(run.x, run.y, sgd, penalty=first("penalty"), observe=first("observe"), project=first("project"),
                    replay=run.replay)
    except FloatingPointError:
        hint = next((h for h in (p.diverged_hint(cfg) for p in parts) if h), "lower sgd.lr")
        raise ConfigError(f"sgd.lr: training diverged (non-finite loss) on {run.task.name} with lr {sgd.lr:g}; "
                          f"{hint}") from None


def record_stage(result: MethodResult, rows: list, run: TaskRun, name: str) -> None:
    result.stages.append(name)
    rows.append(_evaluate(run.net, run.bench, run.evaluate_on))
    result.probe.append(_probe(run.net, run.bench))


# name -> the parts of the method, built per run as parts(cfg, net, seed); None: joint training (no task loop)
METHODS: dict[str, Callable[[MethodConfig, BiaslessMLP, int], list[Part]] | None] = {
    "sequential": lambda cfg, net, seed: [],
    "joint": None,
    "src": lambda cfg, net, seed: [SRCSleep()],
    "rehearsal": lambda cfg, net, seed: [Rehearsal()],
    "rehearsal_src": lambda cfg, net, seed: [Rehearsal(), SRCSleep()],
    "ewc": lambda cfg, net, seed: [EWC(cfg)],
    "si": lambda cfg, net, seed: [SI(cfg)],
    "owm": lambda cfg, net, seed: [OWM(cfg, net)],
    "icarl": lambda cfg, net, seed: [ICaRL(cfg, seed)],
    "icarl_src": lambda cfg, net, seed: [ICaRL(cfg, seed), SRCSleep()],
}
BUILT_IN_METHODS = tuple(METHODS)


def register_method(name: str, parts: Callable[[MethodConfig, BiaslessMLP, int], list[Part]]) -> None:
    """Make `method=name` a choice of `sleeptrain continual`: `parts(cfg, net, seed)` builds its parts per run."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"continual method name {name!r}: use letters, digits and underscores")
    if name in METHODS:
        raise ValueError(f"continual method {name!r} is already registered")
    METHODS[name] = parts


def unregister_method(name: str) -> None:
    """Remove a method registered from outside (tests, notebooks)."""
    if name not in BUILT_IN_METHODS:
        METHODS.pop(name, None)

"""Continual-learning methods on a benchmark: each one a list of parts (`continual/parts.py`) called at the task
boundaries, named in `METHODS` — sequential (no part: fine-tune task after task, the lower bound), joint (all
tasks' data at once, the upper bound; no task loop), src (SRC sleep after every task: `src_sleep.py`), rehearsal
(`rehearsal.py`), rehearsal_src (both), ewc (`ewc.py`), si (`si.py`), owm (`owm.py`), icarl (`icarl.py`), icarl_src
(iCaRL + SRC sleep). `run_method` returns the stage names and the accuracy matrix (stage x task).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from sleeptrain.continual.curve import Curve
from sleeptrain.continual.data import Benchmark
from sleeptrain.continual.ewc import EWC
from sleeptrain.continual.icarl import ICaRL
from sleeptrain.continual.mlp import BiaslessMLP, Trainer
from sleeptrain.continual.owm import OWM
from sleeptrain.continual.parts import Part, TaskRun
from sleeptrain.continual.rehearsal import Rehearsal, rehearsal_samples  # noqa: F401  (rehearsal_samples: re-export)
from sleeptrain.continual.si import SI
from sleeptrain.continual.src_sleep import SRCSleep
from sleeptrain.errors import ConfigError

if TYPE_CHECKING:  # the schema imports this registry for its `method` choice
    from sleeptrain.continual.config import ContinualConfig

@dataclass
class MethodResult:
    stages: list[str]
    matrix: np.ndarray            # (stages, tasks)
    learned: list[int]            # stage index that finished training each task
    sleep_info: list[dict]
    probe: list[list[float]] = field(default_factory=list)  # per stage: output-layer input for task 1's first test image
    nme: list[list[float]] = field(default_factory=list)    # icarl: per stage, nearest-mean-of-exemplars accuracy
    curve: list[dict] = field(default_factory=list)         # eval_every: the continual evaluation's points (curve.py)


@torch.no_grad()
def _probe(net: BiaslessMLP, bench: Benchmark) -> list[float]:
    """The input each output neuron gets from task 1's first test image (the paper's Fig. 1C)."""
    h = bench.tasks[0].x_test[:1]
    for i, w in enumerate(net.weights):
        z = h @ w.T
        h = torch.relu(z) * (1.0 - net.dropout if net.dropout else 1.0) if i < len(net.weights) - 1 else z
    return z[0].tolist()


def _evaluate(net: BiaslessMLP, bench: Benchmark, on: str = "test", tasks: int | None = None) -> list[float]:
    """Accuracy on each task's `on` split (test | train | validation), the first `tasks` tasks only when given."""
    chosen = bench.tasks[:tasks] if tasks is not None else bench.tasks
    if on == "train":
        return [net.accuracy(t.x_train, t.y_train) for t in chosen]
    if on == "validation":
        if any(t.x_val is None for t in chosen):
            raise ValueError("evaluate_on='validation' needs a benchmark with a validation split (validation=N)")
        return [net.accuracy(t.x_val, t.y_val) for t in chosen]
    return [net.accuracy(t.x_test, t.y_test) for t in chosen]


def run_method(bench: Benchmark, method: str, cfg: ContinualConfig, seed: int, evaluate_on: str = "test") -> MethodResult:
    """Train (and sleep) through the tasks with the parts of `method`; accuracies on the test sets, or on the
    training sets for parameter search (which must never see test data)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    gen = torch.Generator().manual_seed(seed)
    net = build_net(cfg, bench, gen)
    trainer = Trainer(net, seed)
    if METHODS[method] is None:  # joint: all training data at once (the authors' "ideal" net: the whole set)
        trainer.fit(torch.cat([t.seen for t in bench.tasks]), torch.cat([t.seen_labels for t in bench.tasks]), cfg.sgd)
        row = _evaluate(net, bench, evaluate_on)
        return MethodResult(["train_joint"], np.array([row]), [0] * len(bench.tasks), [], [_probe(net, bench)])
    parts = METHODS[method](cfg, net, seed)
    run = TaskRun(net, bench, cfg, seed, np.random.default_rng([seed, 0x4E4]), evaluate_on)
    result = MethodResult([], np.zeros(0), [], [])
    rows: list[list[float]] = []
    curve = Curve(cfg.eval_every, lambda n: _evaluate(net, bench, evaluate_on, tasks=n)) if cfg.eval_every else None
    for t, task in enumerate(bench.tasks):
        run.t, run.task, run.x, run.y, run.replay = t, task, task.x_train, task.y_train, None
        for part in parts:
            part.before_task(run)
        if curve is not None:
            curve.task = t
        fit_task(trainer, run, parts, on_step=curve.step if curve is not None else None)
        for part in parts:
            part.after_fit(run)
        if curve is not None:
            curve.add("after_train")
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
                if curve is not None:
                    curve.add("after_sleep")
                for other in parts:
                    other.after_sleep_stage(run)
    result.matrix, result.nme = np.array(rows), run.nme
    result.curve = curve.points if curve is not None else []
    return result


def build_net(cfg: ContinualConfig, bench: Benchmark, generator: torch.Generator) -> BiaslessMLP:
    """The network of `net:` for the benchmark's inputs and classes."""
    n = cfg.net
    return BiaslessMLP([bench.n_inputs, *n.hidden, bench.n_classes], n.output, n.dropout, init=n.init,
                       init_range=n.init_range, output_grad=n.output_grad, generator=generator)


def fit_task(trainer: Trainer, run: TaskRun, parts: list[Part], on_step=None) -> None:
    """Train the task's set with the parts' penalty, observer and projection (at most one of each); a diverged run
    is a one-line error saying what to lower."""
    cfg = run.cfg
    sgd = cfg.sgd if cfg.sgd.task_epochs is None else replace(cfg.sgd, epochs=cfg.sgd.task_epochs[run.t])
    first = lambda attr: next((getattr(p, attr) for p in parts if getattr(p, attr) is not None), None)  # noqa: E731
    try:
        trainer.fit(run.x, run.y, sgd, penalty=first("penalty"), observe=first("observe"), project=first("project"),
                    replay=run.replay, on_step=on_step)
    except FloatingPointError:
        hint = next((h for h in (p.diverged_hint(cfg) for p in parts) if h), "lower sgd.lr")
        raise ConfigError(f"sgd.lr: training diverged (non-finite loss) on {run.task.name} with lr {sgd.lr:g}; "
                          f"{hint}") from None


def record_stage(result: MethodResult, rows: list, run: TaskRun, name: str) -> None:
    result.stages.append(name)
    rows.append(_evaluate(run.net, run.bench, run.evaluate_on))
    result.probe.append(_probe(run.net, run.bench))


# name -> the parts of the method, built per run as parts(cfg, net, seed); None: joint training (no task loop)
METHODS: dict[str, Callable[[ContinualConfig, BiaslessMLP, int], list[Part]] | None] = {
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


def register_method(name: str, parts: Callable[[ContinualConfig, BiaslessMLP, int], list[Part]]) -> None:
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

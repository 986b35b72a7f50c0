"""The evaluation task type: what `sleeptrain eval` and a run's final evaluation score a model folder on.

A task is one class in one file, registered with `@register_task`:

    name          its key in results.json and its options section (`sleeptrain eval MODEL_DIR name.key=value`)
    options       the dataclass of that section (validated like every config; an `enabled: bool` switches it off)
    description   one line, for `--help` and the docs
    prepare(options, ctx) -> data | None    find the task's data before anything is scored: None when there is
                                            nothing to score (recorded as skipped); a user error raises one line
    run(model, options, data, ctx) -> dict  score the loaded model (model, tokenizer, masked) on it
    write_files(results_path, options)      optional extra files beside results.json (after `run`)

The harness (`evaluate/harness.py`) iterates the registered tasks in registration order — the built-in `blimp`
(minimal pairs) and `perplexity` first — for `sleeptrain eval` and for the final evaluation of a training run alike.
docs/EVALUATION.md shows a toy task and its test.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from sleeptrain.config import Config
from sleeptrain.errors import ConfigError
from sleeptrain.evaluate.config import TASK_SECTIONS


@dataclass
class LoadedModel:
    model: Any          # torch.nn.Module, in eval mode
    tokenizer: Any
    masked: bool
    path: Path


@dataclass
class TaskContext:
    """What a task may use beyond its own options: the common options of the command (`batch_size`, `seed`,
    `progress`, `backend`, ...), the model folder, the training run it came from (if any), and the data a training
    run already holds in memory (`preloaded`: task name -> data, used instead of `prepare`)."""

    opts: Any                                   # the EvalCommandConfig
    model_dir: Path
    seq_len: int | None = None                  # the run's data.seq_len when the caller knows it
    preloaded: dict[str, Any] = field(default_factory=dict)
    _run: Any = field(default=None, init=False, repr=False)  # run_config's answer, looked up once

    def run_config(self) -> tuple[Path, Config] | None:
        """The training run the model folder came from (RUN_DIR/final or RUN_DIR/checkpoints/step-N), if any."""
        if self._run is None:
            self._run = run_config_of(self.model_dir) or False
        return self._run or None


class EvalTask:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[type]

    def prepare(self, options: Any, ctx: TaskContext) -> Any | None:
        raise NotImplementedError

    def run(self, model: LoadedModel, options: Any, data: Any, ctx: TaskContext) -> dict[str, Any]:
        raise NotImplementedError

    def write_files(self, results_path: Path, options: Any) -> None:
        """Extra files beside the results (none by default)."""


TASKS: dict[str, type[EvalTask]] = {}
BUILT_IN = ("blimp", "perplexity")  # registered by evaluate/task_blimp.py and task_perplexity.py (the harness imports
                                    # both); they always come first in results.json


def task_classes() -> list[type[EvalTask]]:
    """The registered tasks in the order they run: the built-in ones, then the others as registered."""
    return [TASKS[n] for n in BUILT_IN if n in TASKS] + [cls for n, cls in TASKS.items() if n not in BUILT_IN]


def register_task(cls: type[EvalTask]) -> type[EvalTask]:
    """Class decorator: register an `EvalTask` subclass; its options become section `cls.name` of `sleeptrain
    eval` (`evaluate.config.eval_command_schema`)."""
    if not (isinstance(cls, type) and issubclass(cls, EvalTask)):
        raise TypeError(f"register_task: register a subclass of EvalTask, not {cls!r}")
    if not cls.name or not cls.name.replace("_", "").isalnum():
        raise ValueError(f"evaluation task name {cls.name!r}: use letters, digits and underscores")
    if cls.name in TASKS:
        raise ValueError(f"evaluation task {cls.name!r} is already registered")
    if not any(f.name == "enabled" for f in fields(cls.options)):
        raise TypeError(f"evaluation task {cls.name!r}: its options dataclass needs an `enabled: bool` field")
    TASKS[cls.name] = cls
    TASK_SECTIONS[cls.name] = cls.options
    return cls


def unregister_task(name: str) -> None:
    """Remove a task registered from outside (tests, notebooks)."""
    TASKS.pop(name, None)
    if name not in BUILT_IN:
        TASK_SECTIONS.pop(name, None)


def run_config_of(model_dir: Path) -> tuple[Path, Config] | None:
    """The training run a model folder came from (RUN_DIR/final or RUN_DIR/checkpoints/step-N), if any."""
    from sleeptrain.presets import config_from_yaml

    for run_dir in (model_dir.parent, model_dir.parent.parent):
        if (run_dir / "config.yaml").is_file() and (run_dir / "metrics.jsonl").is_file():
            try:
                return run_dir, config_from_yaml((run_dir / "config.yaml").read_text())
            except (ConfigError, ValueError):
                return None
    return None

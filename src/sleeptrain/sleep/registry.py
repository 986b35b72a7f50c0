"""The registries of sleep operations and replay strategies: the single source of truth for their names.

Config validation (`sleep.ops`, `replay.strategy`), the LR schedule and the training loop all ask these, so an op
registered from outside the package (before the config is validated) is a first-class choice:

    from sleeptrain.sleep import SleepHook, register_op

    @register_op("my_op")
    class MyOp(SleepHook):
        def apply(self, ctx): ...

The built-in ops and strategies register when `sleeptrain.sleep` is imported (its `__init__` imports their
modules in a fixed order, so names are always listed in the same order).

`replay` is not registered: it is the sleep phase itself (the loop's steps on the replay buffer), the position
in `sleep.ops` that separates ops run at sleep start from those run at sleep end.
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import TYPE_CHECKING, Callable

from sleeptrain.config import REPLAY, check_choice
from sleeptrain.errors import ConfigError, PluginError
from sleeptrain.sleep.hooks import SleepHook

if TYPE_CHECKING:
    from sleeptrain.config import Config

CONTROLLER = "controller"  # the FORGETTER controller's name in checkpoints (switched on by schedule.controller)
PLUGIN_GROUP = "sleeptrain.sleep"     # entry-point group of installed packages that register ops or strategies
PLUGIN_ENV = "SLEEPTRAIN_PLUGINS"     # comma-separated importable modules that do the same (no packaging needed)

OPS: dict[str, type[SleepHook]] = {}
STRATEGIES: dict[str, Callable] = {}


def _check_name(name: str, table: dict, kind: str) -> None:
    if not name or not name.replace("_", "").isalnum() or name in (REPLAY, CONTROLLER):
        raise ValueError(f"{kind} name {name!r}: use letters, digits and underscores (and not {REPLAY!r} or "
                         f"{CONTROLLER!r})")
    if name in table:
        raise ValueError(f"{kind} {name!r} is already registered")


def register_op(name: str) -> Callable[[type[SleepHook]], type[SleepHook]]:
    """Class decorator: register a `SleepHook` subclass as sleep operation `name` (usable in `sleep.ops`)."""
    def wrap(cls: type[SleepHook]) -> type[SleepHook]:
        if not (isinstance(cls, type) and issubclass(cls, SleepHook)):
            raise TypeError(f"sleep op {name!r}: register a subclass of sleeptrain.sleep.SleepHook, not {cls!r}")
        if not isinstance(inspect.getattr_static(cls, "peak_lr_factor"), (classmethod, staticmethod)):
            raise TypeError(f"sleep op {name!r}: peak_lr_factor must be a classmethod (the LR schedule is laid out "
                            "before any op is built)")
        _check_name(name, OPS, "sleep op")
        cls.name = name
        OPS[name] = cls
        return cls

    return wrap


def unregister_op(name: str) -> None:
    """Remove an op registered from outside (tests, notebooks that re-run a cell)."""
    OPS.pop(name, None)


def register_strategy(name: str) -> Callable[[Callable], Callable]:
    """Function decorator: register `fn(k, scores, ages, rng, cfg) -> positions` as replay strategy `name`."""
    def wrap(fn: Callable) -> Callable:
        _check_name(name, STRATEGIES, "replay strategy")
        STRATEGIES[name] = fn
        return fn

    return wrap


def unregister_strategy(name: str) -> None:
    """Remove a strategy registered from outside (tests, notebooks that re-run a cell)."""
    STRATEGIES.pop(name, None)


def op_names() -> tuple[str, ...]:
    """Every name `sleep.ops` accepts: `replay`, then the registered ops."""
    return (REPLAY, *OPS)


def strategy_names() -> tuple[str, ...]:
    """Every name `replay.strategy` accepts."""
    return tuple(STRATEGIES)


def op_class(name: str) -> type[SleepHook]:
    if name not in OPS:
        raise KeyError(f"sleep op {name!r} is not registered; registered: {', '.join(OPS)}")
    return OPS[name]


def optimizer_resetting_ops() -> tuple[str, ...]:
    """Ops that reset the optimizer (light or deep sleep): a schedule holds at most one, and the controller one."""
    return tuple(name for name, cls in OPS.items() if cls.resets_optimizer)


def registered(kind: str) -> tuple[str, ...]:
    """The names a registry-backed key accepts now (`--help` asks at print time, so an op registered after
    `sleeptrain.config` was imported is listed): kind "ops" (`sleep.ops`) or "strategies" (`replay.strategy`)."""
    return {"ops": op_names, "strategies": strategy_names}[kind]()


def check_config(cfg: "Config") -> None:
    """The checks of a `Config` that ask the registries — op names, at most one optimizer-resetting op, the replay
    strategy, the controller's need for a light or deep sleep — as one-line `ConfigError`s. The schema cannot make
    them (it sits below the registries); `presets.to_config` calls this wherever words or YAML become a `Config`,
    and `train()` / `SleepCallback` again before anything is written, so a `Config` built in Python is refused
    too."""
    for op in cfg.sleep.ops:
        check_choice("sleep.ops", op, op_names())
    resets = [op for op in cfg.sleep.ops if op in optimizer_resetting_ops()]
    if len(resets) > 1:
        raise ConfigError(f"sleep.ops: {' and '.join(resets)} exclude each other (each resets the optimizer; "
                          "keep one)")
    check_choice("replay.strategy", cfg.replay.strategy, strategy_names())
    if cfg.schedule.controller and not resets:
        raise ConfigError(f"schedule.controller: needs {' or '.join(optimizer_resetting_ops())} in sleep.ops (a "
                          "light or deep sleep)")


def load_plugins() -> list[str]:
    """Import the modules that register ops or strategies from outside the package: the entry points of group
    `sleeptrain.sleep` of installed packages, then the modules named in $SLEEPTRAIN_PLUGINS (importable from
    `sys.path`, e.g. with PYTHONPATH=.). The command line calls this before reading any config. Returns what was
    imported; a module that fails to import is a one-line `PluginError`."""
    from importlib.metadata import entry_points

    targets = [(f"entry point {ep.name!r} ({ep.value})", ep.load) for ep in entry_points(group=PLUGIN_GROUP)]
    targets += [(f"{PLUGIN_ENV} module {name!r}", lambda name=name: importlib.import_module(name))
                for name in (m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(",")) if name]
    loaded = []
    for label, load in targets:
        try:
            load()
        except Exception as exc:  # noqa: BLE001  (any failure of third-party code is reported in one line)
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise PluginError(f"{label}: cannot be imported ({type(exc).__name__}: {detail})") from None
        loaded.append(label)
    return loaded

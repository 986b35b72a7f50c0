"""Sleep: every mechanism that runs between wake phases, and the hooks through which the training loop calls them.

    hooks.py        the contract: `SleepHook` (on_wake_step, on_sleep_start, apply, on_run_end, state, LR effect)
                    and `SleepContext`, the narrow view a hook gets at a phase boundary
    registry.py     names -> ops and replay strategies; config validation and the LR schedule ask it
    resets.py       optimizer_reset (light sleep), deep_reset (deep sleep) — FORGETTER
    homeostasis.py  downscale with its importance table — synaptic homeostasis
    plasticity.py   plasticity_decay — peak LR of cycle k times decay^k
    controller.py   FORGETTER's controller: light sleeps while validation improves, then deep sleeps, then stop
    scores.py, strategies.py, contexts.py, replay.py   replay: per-sample scores, buffer selection, sleep batches
    cycle.py        `SleepCycle`: the run's mechanisms behind one object; `lr_function`: their LR effects

A new op is one file in this folder: a `SleepHook` subclass decorated with `@register_op("name")`; every module
here is imported with the package, so it registers itself (docs/SCHEDULES.md shows one, with its test).
"""

import importlib as _importlib
import pkgutil as _pkgutil

from sleeptrain.sleep.hooks import SleepContext, SleepHook, inner_optimizer
from sleeptrain.sleep.registry import (REPLAY, op_class, op_names, optimizer_resetting_ops, register_op,
                                       register_strategy, strategy_names, unregister_op, unregister_strategy)

# The built-in ops and strategies register on import: these first, in this order (the order names are listed
# in), then every other module of the package in alphabetical order.
from sleeptrain.sleep import resets, homeostasis, plasticity, strategies  # noqa: E402,F401,I001  (registration)

for _module in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    _importlib.import_module(f"{__name__}.{_module}")

__all__ = ["REPLAY", "SleepContext", "SleepHook", "inner_optimizer", "op_class", "op_names",
           "optimizer_resetting_ops", "register_op", "register_strategy", "strategy_names", "unregister_op",
           "unregister_strategy"]

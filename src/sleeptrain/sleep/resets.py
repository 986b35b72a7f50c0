"""FORGETTER's sleeps (Miura et al.): reset the optimizer, or rebuild model and optimizer from the weights alone.

- `optimizer_reset` — light sleep: fresh AdamW moments and step counts; a fresh LR cycle starts; weights untouched.
- `deep_reset` — deep sleep: a new model object built from its config and loaded from the weights (no carried
  buffers, hooks or compiled state) and a new optimizer; a fresh LR cycle starts.
"""

from __future__ import annotations

from typing import Any

import torch

from sleeptrain.sleep.hooks import SleepContext, SleepHook, inner_optimizer
from sleeptrain.sleep.registry import register_op


@register_op("optimizer_reset")
class OptimizerReset(SleepHook):
    resets_optimizer = True
    restarts_lr_cycle = True

    def apply(self, ctx: SleepContext) -> dict[str, Any]:
        opt = inner_optimizer(ctx.optimizer)
        cleared = len(opt.state)
        opt.state.clear()  # AdamW restarts: zero moments and step counts on the next step
        return {"optimizer_states_cleared": cleared}


@register_op("deep_reset")
class DeepReset(SleepHook):
    resets_optimizer = True
    restarts_lr_cycle = True

    def apply(self, ctx: SleepContext) -> dict[str, Any]:
        old = ctx.unwrapped()
        weights = {k: v.detach().clone() for k, v in old.state_dict().items()}
        with torch.random.fork_rng(devices=[]):  # the throw-away init must not shift the training RNG stream
            fresh = type(old)(old.config)
        fresh.load_state_dict(weights)  # strict: every tensor must fit the rebuilt model
        fresh.train(old.training)
        fresh.to(next(old.parameters()).device)
        optimizer = ctx.make_optimizer(fresh)
        if ctx.accelerator is not None:
            _forget_prepared(ctx.accelerator, ctx.model, ctx.optimizer)
            ctx.model, ctx.optimizer = ctx.accelerator.prepare(fresh, optimizer)
        else:
            ctx.model, ctx.optimizer = fresh, optimizer
        return {"rebuilt": type(fresh).__name__, "parameters": sum(p.numel() for p in fresh.parameters())}


LIGHT_SLEEP, DEEP_SLEEP = OptimizerReset.name, DeepReset.name


def _forget_prepared(accelerator, model, optimizer) -> None:
    """Drop Accelerate's references to the replaced model/optimizer so their memory is freed."""
    for attr, obj in (("_models", model), ("_optimizers", optimizer)):
        items = getattr(accelerator, attr, None)
        if isinstance(items, list) and obj in items:
            items.remove(obj)

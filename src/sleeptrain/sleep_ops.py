"""Sleep operations: functions the training loop calls at phase boundaries.

Each operation takes a `SleepContext` (the loop's model and optimizer, handed over explicitly), may replace or
modify them, and returns a dict describing what it changed (logged as `event: "sleep_op"`). A new operation is one
function + one `register` line + its test. `replay` is not here: it is the sleep phase itself (the loop's steps).

- `optimizer_reset` — light sleep (FORGETTER): fresh AdamW moments; the LR cycle restarts (the plan's LR function
  restarts at every reset). Weights untouched.
- `deep_reset` — deep sleep (FORGETTER): rebuild model and optimizer from the weights alone (fresh module objects,
  no carried buffers, hooks or compiled state).
- `downscale` — synaptic homeostasis (Tononi & Cirelli 2014) / plasticity decay: multiply every weight by `shrink`
  except the top `protect_fraction` by importance (|w*grad| Taylor or grad^2 Fisher, accumulated during wake).
- `plasticity_decay` — the peak LR of cycle k is multiplied by `decay^k` (applied by the plan's LR function; the
  operation reports the new scale).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from sleeptrain.config import Config

SleepOp = Callable[["SleepContext"], dict[str, Any]]
OPS: dict[str, SleepOp] = {}


def register(name: str) -> Callable[[SleepOp], SleepOp]:
    def wrap(fn: SleepOp) -> SleepOp:
        OPS[name] = fn
        return fn

    return wrap


@dataclass
class SleepContext:
    model: torch.nn.Module           # as prepared by the accelerator (may be wrapped)
    optimizer: Any                   # as prepared by the accelerator
    cfg: Config
    cycle: int
    accelerator: Any = None
    make_optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer] | None = None
    importance: "Importance | None" = None
    notes: dict[str, Any] = field(default_factory=dict)

    def unwrapped(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model) if self.accelerator else self.model


def inner_optimizer(optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside Accelerate's wrapper (or the optimizer itself)."""
    return getattr(optimizer, "optimizer", optimizer)


def run_op(name: str, ctx: SleepContext) -> dict[str, Any]:
    return OPS[name](ctx)


@register("optimizer_reset")
def optimizer_reset(ctx: SleepContext) -> dict[str, Any]:
    opt = inner_optimizer(ctx.optimizer)
    cleared = len(opt.state)
    opt.state.clear()  # AdamW restarts: zero moments and step counts on the next step
    return {"optimizer_states_cleared": cleared}


@register("deep_reset")
def deep_reset(ctx: SleepContext) -> dict[str, Any]:
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


def _forget_prepared(accelerator, model, optimizer) -> None:
    """Drop Accelerate's references to the replaced model/optimizer so their memory is freed."""
    for attr, obj in (("_models", model), ("_optimizers", optimizer)):
        items = getattr(accelerator, attr, None)
        if isinstance(items, list) and obj in items:
            items.remove(obj)


class Importance:
    """Per-parameter importance accumulated over wake steps: |w*grad| (Taylor) or grad^2 (empirical Fisher)."""

    def __init__(self, model: torch.nn.Module, kind: str = "taylor", include_norms: bool = False):
        self.kind = kind
        self.table: dict[str, torch.Tensor] = {
            name: torch.zeros_like(p, dtype=torch.float32)
            for name, p in model.named_parameters() if p.requires_grad and (p.ndim >= 2 or include_norms)
        }

    @torch.no_grad()
    def accumulate(self, model: torch.nn.Module) -> None:
        for name, p in model.named_parameters():
            acc = self.table.get(name)
            if acc is None or p.grad is None:
                continue
            g = p.grad.float()
            acc.add_((p.float() * g).abs() if self.kind == "taylor" else g * g)

    def reset(self) -> None:
        for t in self.table.values():
            t.zero_()


@register("downscale")
@torch.no_grad()
def downscale(ctx: SleepContext) -> dict[str, Any]:
    sleep = ctx.cfg.sleep
    if ctx.importance is None:
        raise RuntimeError("downscale: no importance table (the loop must accumulate one during wake)")
    params = dict(ctx.unwrapped().named_parameters())  # tied weights appear once
    names = [n for n in ctx.importance.table if n in params]
    if not names:
        raise RuntimeError("downscale: the importance table matches no parameter of the model")
    masks = protection_masks({n: ctx.importance.table[n] for n in names}, sleep.protect_fraction, sleep.scope)
    scaled = protected = 0
    norm_before = norm_after = 0.0
    for name in names:
        p, keep = params[name], masks[name].to(params[name].device)
        norm_before += float(p.float().pow(2).sum())
        p.mul_(torch.where(keep, torch.ones((), dtype=p.dtype, device=p.device),
                           torch.full((), sleep.shrink, dtype=p.dtype, device=p.device)))
        norm_after += float(p.float().pow(2).sum())
        protected += int(keep.sum())
        scaled += int(keep.numel() - keep.sum())
    ctx.importance.reset()
    return {"shrink": sleep.shrink, "scaled": scaled, "protected": protected, "scope": sleep.scope,
            "weight_norm_before": norm_before ** 0.5, "weight_norm_after": norm_after ** 0.5}


def protection_masks(importance: dict[str, torch.Tensor], fraction: float, scope: str) -> dict[str, torch.Tensor]:
    """True where a weight is protected: the top `fraction` by importance, per tensor or over all tensors."""
    masks = {}
    if scope == "global":
        flat = torch.cat([t.reshape(-1) for t in importance.values()])
        k = int(round(fraction * flat.numel()))
        keep = torch.zeros(flat.numel(), dtype=torch.bool)
        if k:
            keep[torch.topk(flat, k, sorted=False).indices] = True
        offset = 0
        for name, t in importance.items():
            masks[name] = keep[offset:offset + t.numel()].view(t.shape)
            offset += t.numel()
        return masks
    for name, t in importance.items():
        k = int(round(fraction * t.numel()))
        keep = torch.zeros(t.numel(), dtype=torch.bool, device=t.device)
        if k:
            keep[torch.topk(t.reshape(-1), k, sorted=False).indices] = True
        masks[name] = keep.view(t.shape)
    return masks


@register("plasticity_decay")
def plasticity_decay(ctx: SleepContext) -> dict[str, Any]:
    decay = ctx.cfg.sleep.plasticity_decay
    return {"peak_lr_scale_next_cycle": decay ** (ctx.cycle + 1)}

"""`downscale` — synaptic homeostasis (Tononi & Cirelli 2014) / plasticity decay: multiply every weight by
`sleep.shrink` except the top `sleep.protect_fraction` by importance, accumulated over the wake steps since the
last downscale: |w*grad| (Taylor), the square of the step's (mini-batch) gradient (`fisher`), or the sum of every
sample's squared gradient (`fisher_per_sample`: the empirical Fisher diagonal as CLIMB-Sleep computes it,
`src/utils/per_sample_grad.py` + `CustomTrainer._accumulate_fisher`: one `torch.func.vmap(grad(...))` pass per
step over each sample's mean token loss, dropout drawn per sample). Upstream divides the sum by the number of
samples; a per-tensor or global quantile threshold does not move under that, so the sum is kept."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch

from sleeptrain.config import IMPORTANCE_KINDS, SCOPES  # noqa: F401  (the schema declares the choices)
from sleeptrain.sleep.hooks import SleepContext, SleepHook, StepBatch
from sleeptrain.sleep.registry import register_op

if TYPE_CHECKING:
    from sleeptrain.config import Config


PER_SAMPLE_CHUNK = 8  # samples per vmap call: bounds the per-sample gradients alive (chunk x parameters)


class Importance:
    """Per-parameter importance accumulated over wake steps: |w*grad| (Taylor) or grad^2 (empirical Fisher)."""

    def __init__(self, model: torch.nn.Module, kind: str = "taylor", include_norms: bool = False):
        if kind not in IMPORTANCE_KINDS:
            raise ValueError(f"importance kind {kind!r}: choose one of {', '.join(IMPORTANCE_KINDS)}")
        self.kind = kind
        self.table: dict[str, torch.Tensor] = {
            name: torch.zeros_like(p, dtype=torch.float32)
            for name, p in model.named_parameters() if p.requires_grad and (p.ndim >= 2 or include_norms)
        }

    @torch.no_grad()
    def accumulate(self, model: torch.nn.Module) -> None:
        """From the summed gradients in `.grad` (taylor, fisher); `fisher_per_sample` uses `accumulate_batch`."""
        if self.kind == "fisher_per_sample":
            return
        for name, p in model.named_parameters():
            acc = self.table.get(name)
            if acc is None or p.grad is None:
                continue
            g = p.grad.float()
            acc.add_((p.float() * g).abs() if self.kind == "taylor" else g * g)

    def accumulate_batch(self, model: torch.nn.Module, batch: StepBatch) -> None:
        """`fisher_per_sample`: add every sample's squared gradient of its own mean token loss (at the step's
        weights, before the optimizer step; the model's train/eval mode as it is, dropout drawn per sample)."""
        from torch.func import functional_call, grad, vmap

        if batch.sample_loss is None:
            raise ValueError("importance fisher_per_sample: the step's batch carries no sample_loss function")
        device = next(model.parameters()).device
        params = {name: p.detach() for name, p in model.named_parameters() if name in self.table}
        with_mask = batch.attention_mask is not None

        def sample_loss(p, ids, labels, mask=None):
            kwargs = {"input_ids": ids[None]}
            if mask is not None:  # as a ready 4-D additive mask: HF's 2-D mask handling branches on the data
                kwargs["attention_mask"] = additive_mask(mask, causal=not batch.masked)
            logits = functional_call(model, p, args=(), kwargs=kwargs).logits
            return batch.sample_loss(logits, labels[None])[0]

        per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0, 0 if with_mask else None), randomness="different")
        step = {name: torch.zeros_like(t) for name, t in self.table.items()}
        n = batch.input_ids.shape[0]
        for start in range(0, n, PER_SAMPLE_CHUNK):
            rows = slice(start, start + PER_SAMPLE_CHUNK)
            mask = batch.attention_mask[rows].to(device) if with_mask else None
            # SDPA's CPU kernels have no vmap batching rule, so torch warns once that it loops over the rows; the
            # cost is measured in docs/PERFORMANCE.md and there is nothing a user can do about it
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="There is a performance drop")
                grads = per_sample(params, batch.input_ids[rows].to(device), batch.labels[rows].to(device), mask)
            with torch.no_grad():
                for name, g in grads.items():
                    step[name].add_(g.float().square().sum(0))
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        for name, values in step.items():
            if distributed:  # each process saw its own rows: the table holds every row's, on every process (as
                torch.distributed.all_reduce(values)  # the gradient-based kinds, whose .grad DDP has reduced)
            self.table[name].add_(values)

    def reset(self) -> None:
        for t in self.table.values():
            t.zero_()


def additive_mask(mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """(1, 1, T, T) float mask of one row's (T,) padding mask: 0 where a query may attend a key, the dtype's minimum
    elsewhere (keys that are padding; for a causal LM also keys to the right)."""
    length = mask.shape[-1]
    allowed = mask[None, :].bool().expand(length, length)
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    zeros = torch.zeros(length, length, device=mask.device)
    return zeros.masked_fill(~allowed, torch.finfo(zeros.dtype).min)[None, None]


@register_op("downscale")
class Downscale(SleepHook):
    """Holds the importance table (accumulated in `on_wake_step` / `on_sleep_step`, or `on_step_batch` for
    `fisher_per_sample`; part of every checkpoint)."""

    def __init__(self, cfg: "Config", model: torch.nn.Module | None = None):
        super().__init__(cfg, model)
        if model is None:
            raise ValueError("downscale: needs the model to lay out its importance table")
        self.importance = Importance(model, cfg.sleep.importance, cfg.sleep.include_norms)

    @classmethod
    def uses_step_batch(cls, cfg: "Config") -> str | None:
        if cfg.sleep.importance != "fisher_per_sample":
            return None
        return ("sleep.importance=fisher_per_sample takes each sample's gradient from the step's batch; use "
                "sleep.importance=fisher (the step's gradient squared) or taylor")

    def on_wake_step(self, model: torch.nn.Module) -> None:
        if self.cfg.sleep.importance_from in ("wake", "both"):
            self.importance.accumulate(model)

    def on_sleep_step(self, model: torch.nn.Module) -> None:
        if self.cfg.sleep.importance_from in ("sleep", "both"):
            self.importance.accumulate(model)

    def on_step_batch(self, model: torch.nn.Module, batch: StepBatch, phase: str) -> None:
        if self.importance.kind == "fisher_per_sample" and self.cfg.sleep.importance_from in (phase, "both"):
            self.importance.accumulate_batch(model, batch)

    def apply(self, ctx: SleepContext) -> dict[str, Any]:
        return downscale(ctx.unwrapped(), self.importance, ctx.cfg.sleep.shrink, ctx.cfg.sleep.protect_fraction,
                         ctx.cfg.sleep.scope, ctx.cfg.sleep.prune_fraction)

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, dict(self.importance.table)

    def load_state_dict(self, values: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        for name, table in tensors.items():
            self.importance.table[name].copy_(table)


@torch.no_grad()
def downscale(model: torch.nn.Module, importance: Importance, shrink: float, protect_fraction: float,
              scope: str, prune_fraction: float = 0.0) -> dict[str, Any]:
    """Shrink the unprotected weights of `model` in place (and zero the `prune_fraction` smallest of them in each
    tensor), then reset `importance` for the next wake."""
    params = dict(model.named_parameters())  # tied weights appear once
    names = [n for n in importance.table if n in params]
    if not names:
        raise RuntimeError("downscale: the importance table matches no parameter of the model")
    masks = protection_masks({n: importance.table[n] for n in names}, protect_fraction, scope)
    scaled = protected = pruned = 0
    norm_before = norm_after = 0.0
    for name in names:
        p, keep = params[name], masks[name].to(params[name].device)
        norm_before += float(p.float().pow(2).sum())
        p.mul_(torch.where(keep, torch.ones((), dtype=p.dtype, device=p.device),
                           torch.full((), shrink, dtype=p.dtype, device=p.device)))
        if prune_fraction > 0:
            pruned += prune_weakest(p, ~keep, prune_fraction)
        norm_after += float(p.float().pow(2).sum())
        protected += int(keep.sum())
        scaled += int(keep.numel() - keep.sum())
    importance.reset()
    return {"shrink": shrink, "scaled": scaled, "protected": protected, "pruned": pruned, "scope": scope,
            "weight_norm_before": norm_before ** 0.5, "weight_norm_after": norm_after ** 0.5}


@torch.no_grad()
def prune_weakest(p: torch.Tensor, candidates: torch.Tensor, fraction: float) -> int:
    """Zero the `fraction` of the `candidates` entries of `p` with the smallest magnitude; returns how many."""
    k = int(round(fraction * int(candidates.sum())))
    if k == 0:
        return 0
    magnitude = torch.where(candidates, p.detach().abs().float(), torch.full((), float("inf"), device=p.device))
    weakest = torch.topk(magnitude.reshape(-1), k, largest=False, sorted=False).indices
    p.view(-1)[weakest] = 0
    return k


def protection_masks(importance: dict[str, torch.Tensor], fraction: float, scope: str) -> dict[str, torch.Tensor]:
    """True where a weight is protected: the top `fraction` by importance, per tensor or over all tensors."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r}: choose one of {', '.join(SCOPES)}")
    masks = {}
    if scope == "global":
        flat = torch.cat([t.reshape(-1) for t in importance.values()])
        k = int(round(fraction * flat.numel()))
        keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
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

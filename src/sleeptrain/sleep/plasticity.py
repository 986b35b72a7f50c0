"""`plasticity_decay`: the model becomes less plastic as it matures — the peak LR of cycle k is multiplied by
`sleep.plasticity_decay ** k` (an LR effect only; the op reports the scale of the next cycle)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sleeptrain.sleep.hooks import SleepContext, SleepHook
from sleeptrain.sleep.registry import register_op

if TYPE_CHECKING:
    from sleeptrain.config import Config


@register_op("plasticity_decay")
class PlasticityDecay(SleepHook):
    @classmethod
    def peak_lr_factor(cls, cfg: "Config", cycle: int) -> float:
        return cfg.sleep.plasticity_decay ** cycle

    def apply(self, ctx: SleepContext) -> dict[str, Any]:
        return {"peak_lr_scale_next_cycle": self.peak_lr_factor(ctx.cfg, ctx.cycle + 1)}

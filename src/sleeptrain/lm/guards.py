"""Numerical guards of a run: the finite check a step (`train.on_nan=skip_batch`) and a checkpoint need, and the
one error a diverged run ends with (naming the last good checkpoint)."""

from __future__ import annotations

from pathlib import Path

import torch

from sleeptrain.errors import SleeptrainError


class TrainingDiverged(SleeptrainError):
    """The training loss became NaN or inf."""


def all_finite(values, reduce=None) -> bool:
    """True when every tensor in `values` is finite (on every process, `reduce` summing over them; one host sync)."""
    bad = torch.zeros(1, device=values[0].device)
    for value in values:
        bad += (~torch.isfinite(value)).any().float()
    if reduce is not None:
        bad = reduce(bad, "sum")
    return not bool(bad.item())


def diverged_message(loss: float, step: int, last_checkpoint: Path | None) -> str:
    kept = (f"; the last good checkpoint is {last_checkpoint}" if last_checkpoint
            else "; no checkpoint was written before it")
    return (f"train: the training loss became {loss} by step {step}{kept} (lower train.lr, check the data, or set "
            "train.on_nan=skip_batch)")

"""Sleep in an ordinary `transformers.Trainer` script: `trainer.add_callback(SleepCallback([...]))`.

The callback drives the registered sleep ops (`sleeptrain.sleep`) from the Trainer's events, configured with the
same presets and `key=value` words as `sleeptrain train` (only the `schedule` and `sleep` sections apply: the model,
data, optimizer and LR are the Trainer's):

    event (Trainer)                      what happens
    on_train_begin                       the ops are built from `sleep.ops`; the sleep steps are laid out over
                                         `state.max_steps`; the Trainer's LambdaLR gets `CycleLR`; on a resumed run
                                         the callback's state is read back from the checkpoint
    on_pre_optimizer_step                every op's `on_wake_step(model)` (gradients present, after clipping)
    on_step_end at a sleep step          every op's `apply` (e.g. light sleep: AdamW state cleared; `downscale`)
    on_save                              the ops' tensors (importance tables) -> checkpoint-N/sleeptrain_callback.safetensors

Sleeps fall every `every_steps` optimizer steps, or (default) at the ends of the `schedule.epochs × schedule.n_cycles`
equal wake phases of the run, plus one at the very end with `schedule.sleep_after_last`. An op that starts a fresh
LR cycle (`optimizer_reset`, `deep_reset`) restarts the Trainer's own schedule shape (`lr_scheduler_type`: linear,
cosine, constant, constant_with_warmup; warm-up `get_warmup_steps(cycle length)`) at each sleep; `plasticity_decay`
scales the peak of cycle k. Without such ops the LR is exactly the Trainer's.

Differences from `sleeptrain train`, by construction (docs/SCHEDULES.md, "In a transformers.Trainer"):
`replay` is not available (the Trainer owns the data order) and neither is the FORGETTER controller (it needs a
validation loss at every sleep) — both are refused with a one-line message; `deep_reset` cannot hand the Trainer a
new model object, so the model's parameters and buffers are re-read in place from a model rebuilt from its config
and the optimizer's state is discarded.

State: the JSON part (sleeps done, each op's values, the sleep log) is the callback's `ExportableState`, written by
the Trainer into `trainer_state.json` (`stateful_callbacks`); the tensors go beside it in the checkpoint folder.
A resumed run restores both whether or not `restore_callback_states_from_checkpoint` is set.
"""

from __future__ import annotations

import bisect
import math
import os
import warnings
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from sleeptrain.errors import ConfigError
from sleeptrain.sleep import REPLAY, SleepContext, SleepHook, inner_optimizer, op_class

STATE_FILE = "sleeptrain_callback.safetensors"
LR_SHAPES = ("linear", "cosine", "constant", "constant_with_warmup")
ALLOWED_SECTIONS = ("schedule", "sleep")


def shape_factor(kind: str, step: int, length: int, warmup: int) -> float:
    """The multiplier of `transformers.get_scheduler(kind)` at `step` of a `length`-step run (the formulas of
    transformers.optimization, so that a run without restarts keeps the Trainer's LR exactly)."""
    if step < warmup and kind != "constant":
        return step / max(1, warmup)
    if kind in ("constant", "constant_with_warmup"):
        return 1.0
    progress = (step - warmup) / max(1, length - warmup)
    if kind == "linear":
        return max(0.0, (length - step) / max(1, length - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


class CycleLR:
    """step -> LR multiplier: `kind` restarted at every step in `starts` (the first is 0), cycle i warming up for
    `warmups[i]` steps; from the i-th step of `sleeps` on, the peak is `peaks[i + 1]` (`peaks[0]` before any sleep).
    Plain values only: its `__dict__` is what LambdaLR puts in the Trainer's scheduler.pt."""

    def __init__(self, kind: str, starts: list[int], total: int, warmups: list[int], sleeps: list[int],
                 peaks: list[float]):
        self.kind, self.starts, self.total, self.warmups = kind, list(starts), total, list(warmups)
        self.sleeps, self.peaks = list(sleeps), list(peaks)

    def __call__(self, step: int) -> float:
        i = bisect.bisect_right(self.starts, step) - 1
        end = self.starts[i + 1] if i + 1 < len(self.starts) else self.total
        peak = self.peaks[bisect.bisect_right(self.sleeps, step)]
        return peak * shape_factor(self.kind, step - self.starts[i], end - self.starts[i], self.warmups[i])


def sleep_steps(max_steps: int, cycles: int, every_steps: int | None, after_last: bool) -> list[int]:
    """The optimizer steps after which a sleep runs."""
    if every_steps:
        steps = list(range(every_steps, max_steps, every_steps))
    else:
        steps = sorted({round(k * max_steps / cycles) for k in range(1, cycles)} - {0, max_steps})
    return steps + ([max_steps] if after_last else [])


def load_sleep_config(overrides: list[str]):
    """The validated run config of `overrides` (words as `sleeptrain train` takes them), refusing what a Trainer
    callback cannot honour."""
    from sleeptrain.presets import load_config

    for word in overrides:
        key = word.split("=", 1)[0]
        if key != "schedule" and key.split(".", 1)[0] not in ALLOWED_SECTIONS:
            raise ConfigError(f"SleepCallback: {word!r} has no effect in a Trainer (the model, data, optimizer and LR "
                              f"come from TrainingArguments); only schedule=<preset>, schedule.* and sleep.* apply")
    cfg = load_config(overrides).config
    if REPLAY in cfg.sleep.ops:
        raise ConfigError(f"sleep.ops: {REPLAY!r} is not available in SleepCallback (the Trainer owns the data order); "
                          f"drop it (e.g. sleep.ops=[{','.join(o for o in cfg.sleep.ops if o != REPLAY)}]) or use "
                          f"sleeptrain train")
    if cfg.schedule.controller:
        raise ConfigError("schedule.controller: the FORGETTER controller is not available in SleepCallback (it needs a "
                          "validation loss at every sleep); add schedule.controller=false for fixed light sleeps")
    return cfg


class SleepCallback(TrainerCallback, ExportableState):
    """The sleep ops of `overrides` (e.g. `["schedule=homeostasis", "sleep.ops=[downscale]"]`) at every sleep step.

    `every_steps`: a sleep every this many optimizer steps (default: the preset's `epochs × n_cycles` wake phases).
    """

    def __init__(self, overrides: list[str] | None = None, every_steps: int | None = None):
        self.overrides, self.every_steps = list(overrides or []), every_steps
        if every_steps is not None and every_steps < 1:
            raise ConfigError(f"SleepCallback every_steps: must be >= 1, got {every_steps}")
        self.cfg = load_sleep_config(self.overrides)
        self.sleeps_done = 0          # sleeps run so far (the cycle of the next wake phase)
        self.state_step = 0           # the global step these attributes describe
        self.op_values: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self._ops: dict[str, SleepHook] = {}
        self._sleep_at: list[int] = []

    # --- ExportableState: what the Trainer writes into trainer_state.json ---
    def state(self) -> dict:
        values = {name: op.state_dict()[0] for name, op in self._ops.items()}
        return {"args": {"overrides": self.overrides, "every_steps": self.every_steps},
                "attributes": {"sleeps_done": self.sleeps_done, "state_step": self.state_step,
                               "op_values": values or self.op_values, "events": self.events}}

    # --- Trainer events ---
    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        self._ops = {name: op_class(name)(self.cfg, model) for name in self.cfg.sleep.ops}
        cycles = self.cfg.schedule.epochs * self.cfg.schedule.n_cycles
        self._sleep_at = sleep_steps(state.max_steps, cycles, self.every_steps, self.cfg.schedule.sleep_after_last)
        if state.global_step > 0:
            self._restore(args, state)
        self._install_lr(args, state, lr_scheduler)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        for op in self._ops.values():
            op.on_wake_step(model)

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.state_step = state.global_step
        if state.global_step not in self._sleep_at:
            return
        ctx = SleepContext(model=model, optimizer=optimizer, cfg=self.cfg, cycle=self.sleeps_done,
                           step=state.global_step, make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.0))
        record: dict[str, Any] = {"step": state.global_step, "cycle": self.sleeps_done}
        for name, op in self._ops.items():
            record[name] = op.apply(ctx)
        adopt_in_place(ctx, model, optimizer)
        self.sleeps_done += 1
        self.events.append(record)

    def on_save(self, args, state, control, **kwargs):
        from safetensors.torch import save_file

        tensors = {f"{name}/{key}": t.detach().contiguous().cpu()
                   for name, op in self._ops.items() for key, t in op.state_dict()[1].items()}
        if tensors and args.should_save:
            save_file(tensors, os.path.join(args.output_dir, f"checkpoint-{state.global_step}", STATE_FILE))

    # --- helpers ---
    def _restore(self, args, state) -> None:
        """Read back the attributes (unless the Trainer already did) and the ops' tensors of the resumed step."""
        from safetensors.torch import load_file

        if self.state_step != state.global_step:
            saved = (state.stateful_callbacks or {}).get(type(self).__name__)
            saved = saved[0] if isinstance(saved, list) else saved
            if not saved:
                raise ConfigError("SleepCallback: the checkpoint's trainer_state.json holds no SleepCallback state; "
                                  "resume a run that was trained with the callback")
            for key, value in saved["attributes"].items():
                setattr(self, key, value)
        candidates = [args.resume_from_checkpoint, os.path.join(args.output_dir, f"checkpoint-{state.global_step}")]
        found = next((os.path.join(c, STATE_FILE) for c in candidates if c and os.path.isfile(os.path.join(c, STATE_FILE))),
                     None)
        needs_tensors = any(op.state_dict()[1] for op in self._ops.values())
        if needs_tensors and found is None:
            raise ConfigError(f"SleepCallback: resuming at step {state.global_step} needs {STATE_FILE} in the "
                              f"checkpoint folder (looked in {', '.join(c for c in candidates if c)})")
        tensors = load_file(found) if found else {}
        for name, op in self._ops.items():
            prefix = f"{name}/"
            op.load_state_dict(self.op_values.get(name, {}),
                               {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})

    def _install_lr(self, args, state, lr_scheduler) -> None:
        """Give the Trainer's LambdaLR the restarted schedule (nothing to do when no op restarts or scales it)."""
        classes = [op_class(name) for name in self.cfg.sleep.ops]
        restarts = any(c.restarts_lr_cycle for c in classes)
        scales = [c for c in classes if c.peak_lr_factor.__func__ is not SleepHook.peak_lr_factor.__func__]
        if not (restarts or scales):
            return
        kind = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)
        if kind not in LR_SHAPES or not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            raise ConfigError(f"SleepCallback: lr_scheduler_type {kind!r} cannot be restarted at sleeps; "
                              f"use one of {', '.join(LR_SHAPES)}")
        sleeps = [s for s in self._sleep_at if s < state.max_steps]
        starts = [0] + sleeps if restarts else [0]
        ends = starts[1:] + [state.max_steps]
        warmups = [args.get_warmup_steps(end - start) for start, end in zip(starts, ends)]
        peaks = [math.prod(c.peak_lr_factor(self.cfg, i) for c in scales) for i in range(len(sleeps) + 1)]
        fn = CycleLR(kind, starts, state.max_steps, warmups, sleeps, peaks)
        scheduler.lr_lambdas = [fn for _ in scheduler.lr_lambdas]
        with warnings.catch_warnings():  # recompute the current LR through the public step(), not a private field
            warnings.simplefilter("ignore")
            scheduler.last_epoch -= 1
            scheduler.step()


@torch.no_grad()
def adopt_in_place(ctx: SleepContext, model: torch.nn.Module, optimizer) -> None:
    """An op replaced the model or optimizer (`deep_reset`): the Trainer keeps its objects, so copy the new model's
    parameters and buffers into its model and discard its optimizer's state."""
    if ctx.model is not model:
        fresh = dict(ctx.model.named_parameters()) | dict(ctx.model.named_buffers())
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            tensor.copy_(fresh[name])
    if ctx.optimizer is not optimizer:
        inner_optimizer(optimizer).state.clear()

"""Sleep in an ordinary `transformers.Trainer` script: `Trainer(..., callbacks=[SleepCallback([...])])`.

The callback drives the registered sleep ops through the same `SleepCycle` and LR effects (`sleep.cycle.lr_effects`)
as `sleeptrain train`, from the Trainer's events, configured with the
same presets and `key=value` words as `sleeptrain train` (only the `schedule`, `sleep` and `replay` sections apply:
the model, data, optimizer and LR are the Trainer's):

    event (Trainer)                      what happens
    on_train_begin                       a SleepCycle builds the ops of `sleep.ops`; the sleeps are laid out over
                                         `state.max_steps`; the Trainer's LambdaLR gets `CycleLR`; on a resumed run
                                         the callback's state is read back from the checkpoint
    on_pre_optimizer_step                every op's `on_wake_step(model)`, or `on_sleep_step` on a replay step
    on_step_end where a sleep starts     every hook's `on_sleep_start` (one may end training: should_training_stop),
                                         then the ops listed before `replay` (all of them without replay), e.g.
                                         light sleep: AdamW state cleared
    on_step_end where a sleep ends       the ops listed after `replay`, e.g. `downscale`
    on_train_end                         every hook's `on_run_end`
    on_save                              the ops' tensors (importance tables) -> checkpoint-N/sleeptrain_callback.safetensors

The one hook a Trainer cannot serve is `on_step_batch` (a callback never sees the step's batch): an op whose
`uses_step_batch(cfg)` gives a reason is refused in one line naming the hook and that reason.

Without replay a sleep is one moment: after every `every_steps` optimizer steps, or (default) at the ends of the
`schedule.epochs × schedule.n_cycles` equal wake phases of the run, plus one at the very end with
`schedule.sleep_after_last`. With replay the training data must be `callback.replay_stream(dataset, ...)`
(`hf_replay.py`), which lays wake and sleep steps out itself. An op that starts a fresh LR cycle
(`optimizer_reset`, `deep_reset`) restarts the Trainer's own schedule shape (`lr_scheduler_type`: linear, cosine,
constant, constant_with_warmup; warm-up `get_warmup_steps(cycle length)`) where it runs; `plasticity_decay` scales
the peak after sleep k. Without such ops the LR is exactly the Trainer's.

Differences from `sleeptrain train`, by construction (docs/SCHEDULES.md, "In a transformers.Trainer"): replay
strategies that rank by per-sample loss, re-packed replay contexts, ops that use each step's batch and the FORGETTER
controller (it needs a validation loss at every sleep) are refused with a one-line message; `deep_reset` cannot hand the Trainer a new model object, so the model's parameters and buffers are
re-read in place from a model rebuilt from its config and the optimizer's state is discarded.

State: the JSON part (sleeps done, a sleep in progress, each op's values, the sleep log) is the callback's
`ExportableState`, written by the Trainer into `trainer_state.json` (`stateful_callbacks`); the tensors go beside
it in the checkpoint folder. A resumed run restores both whether or not `restore_callback_states_from_checkpoint`
is set.
"""

from __future__ import annotations

import bisect
import os
import warnings
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from sleeptrain.errors import ConfigError
from sleeptrain.integrations.hf_replay import ReplayStream, SleepPlan
from sleeptrain.integrations.sleep_common import (  # noqa: F401 — CycleLR and the rest are this module's API too
    ALLOWED_SECTIONS, CycleLR, adopt_in_place, load_sleep_config, shape_factor, sleep_steps,
)
from sleeptrain.sleep import REPLAY, SleepContext
from sleeptrain.sleep.cycle import SleepCycle, lr_effects

STATE_FILE = "sleeptrain_callback.safetensors"
LR_SHAPES = ("linear", "cosine", "constant", "constant_with_warmup")


class SleepCallback(TrainerCallback, ExportableState):
    """The sleep ops of `overrides` (e.g. `["schedule=homeostasis", "sleep.ops=[downscale]"]`) at every sleep.

    `every_steps`: wake optimizer steps between sleeps (default: the preset's `epochs × n_cycles` wake phases over
    `max_steps`; required with `replay`, whose stream — `replay_stream` — lays the sleeps out itself).
    """

    def __init__(self, overrides: list[str] | None = None, every_steps: int | None = None):
        self.overrides, self.every_steps = list(overrides or []), every_steps
        if every_steps is not None and every_steps < 1:
            raise ConfigError(f"SleepCallback every_steps: must be >= 1, got {every_steps}")
        self.cfg = load_sleep_config(self.overrides)
        self.sleeps_done = 0          # sleeps finished so far (the cycle of the next wake phase)
        self.state_step = 0           # the global step these attributes describe
        self.op_values: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.pending: dict[str, Any] | None = None  # the record of a sleep that has started and not ended
        self.cycle: SleepCycle | None = None       # the ops behind the one dispatcher `sleeptrain train` uses too
        self._windows: list[tuple[int, int]] = []   # (first step, end step) of every sleep; equal without replay
        self._starts: list[int] = []                # their first steps, for the per-step lookup

    def replay_stream(self, dataset, samples_per_step: int, seed: int = 0) -> ReplayStream:
        """`dataset` (map-style) as the Trainer's training data with this callback's replay sleeps in it.
        `samples_per_step`: samples per optimizer step over all processes (per-device batch × gradient
        accumulation × processes)."""
        if REPLAY not in self.cfg.sleep.ops:
            raise ConfigError(f"sleep.ops: a replay stream needs {REPLAY!r} in sleep.ops")
        if self.every_steps is None:
            raise ConfigError("SleepCallback every_steps: required with replay (the wake optimizer steps between sleeps)")
        return ReplayStream(dataset, SleepPlan(self.cfg, self.every_steps, samples_per_step, len(dataset)), seed)

    # --- ExportableState: what the Trainer writes into trainer_state.json ---
    def state(self) -> dict:
        values = self.cycle.state_dict(sleeping=False)[0] if self.cycle is not None else {}
        return {"args": {"overrides": self.overrides, "every_steps": self.every_steps},
                "attributes": {"sleeps_done": self.sleeps_done, "state_step": self.state_step, "pending": self.pending,
                               "op_values": values or self.op_values, "events": self.events}}

    # --- Trainer events ---
    def on_train_begin(self, args, state, control, model=None, lr_scheduler=None, train_dataloader=None, **kwargs):
        self.cycle = SleepCycle(self.cfg, model)  # no replay object: the stream lays the replay steps out
        if REPLAY in self.cfg.sleep.ops:
            stream = find_stream(train_dataloader)
            if stream is None:
                raise ConfigError("sleep.ops: replay needs the training data as callback.replay_stream(dataset, "
                                  "samples_per_step) (or drop replay from sleep.ops)")
            self._windows = stream.plan.windows(state.max_steps)
        else:
            cycles = self.cfg.schedule.epochs * self.cfg.schedule.n_cycles
            self._windows = [(s, s) for s in sleep_steps(state.max_steps, cycles, self.every_steps,
                                                         self.cfg.schedule.sleep_after_last)]
        self._starts = [start for start, _ in self._windows]
        if state.global_step > 0:
            self._restore(args, state, model)
        self._install_lr(args, state, lr_scheduler)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        i = bisect.bisect_right(self._starts, state.global_step) - 1
        asleep = i >= 0 and state.global_step < self._windows[i][1]
        self.cycle.after_backward(model, None, "sleep" if asleep else "wake")

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.state_step = step = state.global_step
        for start, end in self._windows:
            if step == start:
                self.pending = {"step": start, "end": end, "cycle": self.sleeps_done}
                ctx = self._context(step, model, optimizer)
                if not self.cycle.start(ctx):  # an on_sleep_start hook ended the run at this sleep
                    self.events.append({**self.pending, "stopped": True})
                    self.pending, control.should_training_stop = None, True
                    return
                self._apply(ctx.ops, ctx, model, optimizer)
            if step == end and self.pending is not None:
                self._apply(self.cycle.ops_at_end, self._context(step, model, optimizer), model, optimizer)
                self.events.append(self.pending)
                self.pending, self.sleeps_done = None, self.sleeps_done + 1

    def on_train_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.cycle is not None:
            self.cycle.end(self._context(state.global_step, model, optimizer))

    def _context(self, step: int, model, optimizer) -> SleepContext:
        return SleepContext(model=model, optimizer=optimizer, cfg=self.cfg, cycle=self.sleeps_done, step=step,
                            make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.0))

    def _apply(self, names: list[str], ctx: SleepContext, model, optimizer) -> None:
        for name in names:
            self.pending[name] = self.cycle.apply(name, ctx)
        adopt_in_place(ctx, model, optimizer)

    def on_save(self, args, state, control, **kwargs):
        from safetensors.torch import save_file

        op_tensors = self.cycle.state_dict(sleeping=False)[1] if self.cycle is not None else {}
        tensors = {f"{name}/{key}": t.detach().contiguous().cpu()
                   for name, table in op_tensors.items() for key, t in table.items()}
        if tensors and args.should_save:
            save_file(tensors, os.path.join(args.output_dir, f"checkpoint-{state.global_step}", STATE_FILE))

    # --- helpers ---
    def _restore(self, args, state, model) -> None:
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
        needs_tensors = any(self.cycle.state_dict(sleeping=False)[1].values())
        if needs_tensors and found is None:
            raise ConfigError(f"SleepCallback: resuming at step {state.global_step} needs {STATE_FILE} in the "
                              f"checkpoint folder (looked in {', '.join(c for c in candidates if c)})")
        tensors = load_file(found) if found else {}
        names = [hook.name for hook in self.cycle.hooks]  # what else the file holds is not this run's
        grouped: dict[str, dict[str, torch.Tensor]] = {name: {} for name in names}
        for key, value in tensors.items():
            name, _, rest = key.partition("/")
            if name in grouped:
                grouped[name][rest] = value
        self.cycle.load_state_dict({name: self.op_values.get(name, {}) for name in names}, grouped, model)

    def _install_lr(self, args, state, lr_scheduler) -> None:
        """Give the Trainer's LambdaLR the restarted schedule, with the LR effects `sleeptrain train` uses
        (`sleeptrain.sleep.cycle.lr_effects`; nothing to do when no op restarts or scales it)."""
        restart_at, peak_scale = lr_effects(self._windows, self.cfg)
        if not restart_at and peak_scale is None:
            return
        kind = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)
        if kind not in LR_SHAPES or not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            raise ConfigError(f"SleepCallback: lr_scheduler_type {kind!r} cannot be restarted at sleeps; "
                              f"use one of {', '.join(LR_SHAPES)}")
        sleeps = [end for _, end in self._windows if end < state.max_steps]
        starts = [0] + sorted(s for s in restart_at if 0 < s < state.max_steps)
        ends = starts[1:] + [state.max_steps]
        warmups = [args.get_warmup_steps(end - start) for start, end in zip(starts, ends)]
        peaks = [peak_scale(i) if peak_scale is not None else 1.0 for i in range(len(sleeps) + 1)]
        fn = CycleLR(kind, starts, state.max_steps, warmups, sleeps, peaks)
        scheduler.lr_lambdas = [fn for _ in scheduler.lr_lambdas]
        with warnings.catch_warnings():  # recompute the current LR through the public step(), not a private field
            warnings.simplefilter("ignore")
            scheduler.last_epoch -= 1
            scheduler.step()


def find_stream(dataloader) -> ReplayStream | None:
    """The ReplayStream behind the Trainer's (possibly Accelerate-wrapped) training dataloader, if any."""
    data = getattr(dataloader, "dataset", None)
    for _ in range(3):
        if isinstance(data, ReplayStream):
            return data
        data = getattr(data, "dataset", None)
    return None

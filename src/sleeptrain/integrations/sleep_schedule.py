"""A sleep schedule for your own PyTorch loop — no sleeptrain config, loop or Trainer (docs/PYTHON_API.md).

`SleepSchedule` tells the loop when it sleeps, gives the LR factor of every step (restarts where an op starts a
fresh cycle, peak decay), runs the sleep ops on any `nn.Module` + optimizer, and serves replay from a buffer of the
loop's own samples:

    schedule = SleepSchedule("homeostasis", total_steps=600, every_steps=100, batch_size=16,
                             sleep={"ops": ["optimizer_reset", "replay", "downscale"]}, replay={"strategy": "recency"})
    schedule.bind(model, optimizer)
    for step in range(schedule.step, 600):
        for group in optimizer.param_groups:
            group["lr"] = base_lr * schedule.lr_factor(step)
        batch = schedule.replay_batch() if schedule.sleeping(step) else schedule.observe(next(data))
        loss_of(model, batch).backward()
        schedule.before_optimizer_step(model)
        optimizer.step(); optimizer.zero_grad()
        if not schedule.after_step(step, optimizer):
            break                                   # a hook ended training at this sleep
    schedule.end(optimizer)

Sleeps are laid out as in `SleepCallback` (the same `SleepPlan` and LR effects): without replay a sleep is a moment
after every `every_steps` steps (default: the preset's `epochs × n_cycles` equal wake phases); with replay, wake
phases of `every_steps` steps each followed by a sleep of `sleep_length(k)` replay steps. At a sleep's start the
ops listed before `replay` run (all of them without replay) and the replay buffer is chosen — `replay.ratio` × the
samples observed, by `replay.strategy` (`random`/`recency`, or `weighted`/`strict` when `observe` is given per-sample
losses) — and read as reshuffled passes; at its end the ops listed after `replay`. An op that replaces the model
(`deep_reset`) is copied into your model in place and the optimizer's state is cleared, as in the callback.
`state_dict()` holds everything (step, sleeps, each op's values and tensors, the observed samples, the buffer and
its read position): save it beside the model and optimizer, `load_state_dict` it into a new schedule, and the loop
continues bit for bit. The observed samples are kept on the CPU (a sample's memory × the samples observed; `keep=N`
keeps only the last N). Refused in one line, as in the Trainer callback: the FORGETTER controller (it needs a
validation loss) and ops that take each step's batch.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from sleeptrain.errors import ConfigError
from sleeptrain.integrations.hf_replay import SCORE_FREE, SleepPlan
from sleeptrain.integrations.sleep_common import CycleLR, adopt_in_place, load_sleep_config, shape_factor, sleep_steps
from sleeptrain.sleep import REPLAY, SleepContext
from sleeptrain.sleep.contexts import sleep_order
from sleeptrain.sleep.cycle import SleepCycle, lr_effects
from sleeptrain.sleep.registry import STRATEGIES

SECTIONS = ("schedule", "sleep", "replay")
LR_SHAPES = ("linear", "cosine", "constant")


def option_words(preset: str | None, sections: dict[str, dict | None]) -> list[str]:
    """`schedule=PRESET` and `section.key=value` words from keyword dictionaries (values as YAML/JSON)."""
    words = [f"schedule={preset}"] if preset else []
    words.append("replay.context_augment=false")  # the loop's samples are replayed as it gave them
    for section, options in sections.items():
        if options is None:
            continue
        if not isinstance(options, dict):
            raise ConfigError(f"SleepSchedule {section}=: expected a dict of {section}.* options, got "
                              f"{type(options).__name__}")
        words += [f"{section}.{key}={json.dumps(value)}" for key, value in options.items()]
    return words


class SleepSchedule:
    """The sleeps, LR factors, sleep ops and replay of a `total_steps`-step loop (module docstring)."""

    def __init__(self, preset: str | None = None, *, total_steps: int, every_steps: int | None = None,
                 batch_size: int | None = None, lr_shape: str = "cosine", warmup_steps: int = 0, seed: int = 0,
                 keep: int | None = None, schedule: dict | None = None, sleep: dict | None = None,
                 replay: dict | None = None):
        self.args = {"preset": preset, "total_steps": total_steps, "every_steps": every_steps,
                     "batch_size": batch_size, "lr_shape": lr_shape, "warmup_steps": warmup_steps, "seed": seed,
                     "keep": keep, "schedule": schedule, "sleep": sleep, "replay": replay}
        _check_int("total_steps", total_steps, 1)
        _check_int("warmup_steps", warmup_steps, 0)
        if lr_shape not in LR_SHAPES:
            raise ConfigError(f"SleepSchedule lr_shape: {lr_shape!r}; choose one of {', '.join(LR_SHAPES)}")
        self.cfg = load_sleep_config(option_words(preset, {"schedule": schedule, "sleep": sleep, "replay": replay}),
                                     who="SleepSchedule")
        self.total, self.seed, self.keep, self.batch_size = total_steps, seed, keep, batch_size
        self.replays = REPLAY in self.cfg.sleep.ops
        if self.replays:
            _check_int("every_steps", every_steps, 1, "required with replay in sleep.ops")
            _check_int("batch_size", batch_size, 1, "required with replay in sleep.ops: samples per step")
            self.plan = SleepPlan(self.cfg, every_steps, batch_size, n_samples=np.iinfo(np.int64).max)
            self.windows = self.plan.windows(total_steps)
        else:
            if every_steps is not None:
                _check_int("every_steps", every_steps, 1)
            cycles = self.cfg.schedule.epochs * self.cfg.schedule.n_cycles
            self.windows = [(s, s) for s in sleep_steps(total_steps, cycles, every_steps,
                                                        self.cfg.schedule.sleep_after_last)]
        self._lr = self._lr_function(lr_shape, warmup_steps)
        self.step, self.sleeps_done, self.events, self.pending = 0, 0, [], None
        self.samples: list[Any] = []
        self.last_seen: list[int] = []
        self.losses: list[float] = []
        self.buffer, self.order, self.cursor = np.zeros(0, np.int64), np.zeros(0, np.int64), 0
        self.cycle: SleepCycle | None = None
        self.model: torch.nn.Module | None = None

    # --- the loop's calls ---
    def bind(self, model: torch.nn.Module, optimizer=None) -> "SleepSchedule":
        """Build the ops for `model` (importance tables are keyed by its parameter names)."""
        self.model, self.cycle = model, SleepCycle(self.cfg, model)
        return self

    def sleeping(self, step: int) -> bool:
        """Whether step `step` (0-based) is a replay step of a sleep."""
        return any(start <= step < end for start, end in self.windows)

    def lr_factor(self, step: int) -> float:
        """The LR multiplier of step `step`: the shape, restarted where an op starts a fresh cycle, times the peak."""
        return self._lr(step)

    def observe(self, samples, losses=None):
        """Add a wake step's samples (a tensor, first dimension = samples, or a list) to the replay candidates;
        `losses`: their per-sample losses, for `weighted` / `strict` replay. Returns `samples`."""
        if not self.replays:
            return samples
        items = list(samples.detach().cpu().clone()) if torch.is_tensor(samples) else list(samples)
        scores = ([float(x) for x in (losses.detach().cpu() if torch.is_tensor(losses) else losses)]
                  if losses is not None else [float("nan")] * len(items))
        if len(scores) != len(items):
            raise ConfigError(f"SleepSchedule.observe: {len(scores)} losses for {len(items)} samples")
        self.samples += items
        self.last_seen += [self.step] * len(items)
        self.losses += scores
        if self.keep is not None and len(self.samples) > self.keep:
            drop = len(self.samples) - self.keep
            del self.samples[:drop], self.last_seen[:drop], self.losses[:drop]
        return samples

    def replay_batch(self):
        """The next `batch_size` replayed samples (stacked when they are tensors)."""
        if self.cursor + self.batch_size > self.order.size:
            raise ConfigError(f"SleepSchedule.replay_batch: step {self.step} is not a replay step (check "
                              "schedule.sleeping(step) first)")
        picked = [self.samples[self.buffer[p]] for p in self.order[self.cursor:self.cursor + self.batch_size]]
        self.cursor += self.batch_size
        return torch.stack(picked) if torch.is_tensor(picked[0]) else picked

    def before_optimizer_step(self, model: torch.nn.Module) -> None:
        """After backward, before the optimizer step: every op's `on_wake_step` / `on_sleep_step`."""
        self._need_bound()
        self.cycle.after_backward(model, None, "sleep" if self.sleeping(self.step) else "wake")

    def after_step(self, step: int, optimizer) -> bool:
        """After the optimizer step of `step`: the ops of a sleep that starts or ends here. False when a hook ended
        training at this sleep."""
        self._need_bound()
        if step != self.step:
            raise ConfigError(f"SleepSchedule.after_step: expected step {self.step}, got {step} (one call per step, "
                              "in order; a resumed loop starts at schedule.step)")
        self.step = done = step + 1
        for start, end in self.windows:
            if done == start:
                self.pending = {"step": start, "end": end, "cycle": self.sleeps_done}
                ctx = self._context(optimizer)
                if not self.cycle.start(ctx):
                    self.events.append({**self.pending, "stopped": True})
                    self.pending = None
                    return False
                self._apply(ctx.ops, ctx, optimizer)
                if self.replays:
                    self._choose_buffer(end - start)
            if done == end and self.pending is not None:
                self._apply(self.cycle.ops_at_end, self._context(optimizer), optimizer)
                self.events.append(self.pending)
                self.pending, self.sleeps_done = None, self.sleeps_done + 1
        return True

    def end(self, optimizer=None) -> None:
        """Training is over: every hook's `on_run_end`."""
        self._need_bound()
        self.cycle.end(self._context(optimizer))

    # --- checkpoints ---
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed loop needs (plain values and tensors: `torch.save` it)."""
        self._need_bound()
        values, tensors = self.cycle.state_dict(sleeping=False)
        return {"args": self.args, "step": self.step, "sleeps_done": self.sleeps_done, "events": self.events,
                "pending": self.pending, "op_values": values, "op_tensors": tensors, "samples": self.samples,
                "last_seen": self.last_seen, "losses": self.losses, "buffer": torch.from_numpy(self.buffer),
                "order": torch.from_numpy(self.order), "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` (bind the model first); refuses the state of a schedule with other options."""
        self._need_bound()
        if state["args"] != self.args:
            changed = sorted(k for k in self.args if state["args"].get(k) != self.args[k])
            raise ConfigError(f"SleepSchedule.load_state_dict: the saved schedule had other options ({', '.join(changed)}"
                              "); build the schedule with the options it was saved with")
        for key in ("step", "sleeps_done", "events", "pending", "samples", "last_seen", "losses", "cursor"):
            setattr(self, key, state[key])
        self.buffer, self.order = state["buffer"].numpy(), state["order"].numpy()
        self.cycle.load_state_dict(state["op_values"], state["op_tensors"], self.model)

    # --- helpers ---
    def _need_bound(self) -> None:
        if self.cycle is None:
            raise ConfigError("SleepSchedule: call schedule.bind(model, optimizer) before training")

    def _context(self, optimizer) -> SleepContext:
        return SleepContext(model=self.model, optimizer=optimizer, cfg=self.cfg, cycle=self.sleeps_done,
                            step=self.step, make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.0))

    def _apply(self, names: list[str], ctx: SleepContext, optimizer) -> None:
        for name in names:
            self.pending[name] = self.cycle.apply(name, ctx)
        adopt_in_place(ctx, self.model, optimizer)

    def _choose_buffer(self, length: int) -> None:
        """The sleep's buffer (`replay.ratio` × samples observed, by the strategy) and its reading order."""
        k, n = self.sleeps_done, len(self.samples)
        if n == 0:
            raise ConfigError("SleepSchedule: a replay sleep starts but no samples were observed (call "
                              "schedule.observe(batch) on every wake step)")
        scores = np.asarray(self.losses, dtype=np.float64)
        if self.cfg.replay.strategy not in SCORE_FREE and np.isnan(scores).any():
            raise ConfigError(f"replay.strategy: {self.cfg.replay.strategy!r} ranks samples by their loss; pass "
                              f"losses= to observe(), or use one of {', '.join(SCORE_FREE)}")
        rng = np.random.default_rng([self.seed, 0x51EE9, k])
        ages = self.step - np.asarray(self.last_seen, dtype=np.int64)
        size = min(self.plan.buffer_size(k), n)
        self.buffer = np.asarray(STRATEGIES[self.cfg.replay.strategy](size, scores, ages, rng, self.cfg.replay),
                                 dtype=np.int64)
        for i in self.buffer:
            self.last_seen[i] = self.step
        self.order, self.cursor = sleep_order(self.buffer.size, length * self.batch_size, rng), 0

    def _lr_function(self, kind: str, warmup: int):
        restart_at, peak_scale = lr_effects(self.windows, self.cfg)
        if not restart_at and peak_scale is None:
            return lambda step: shape_factor(kind, step, self.total, min(warmup, self.total))
        sleeps = [end for _, end in self.windows if end < self.total]
        starts = [0] + sorted(s for s in restart_at if 0 < s < self.total)
        ends = starts[1:] + [self.total]
        warmups = [min(warmup, end - start) for start, end in zip(starts, ends)]
        peaks = [peak_scale(i) if peak_scale is not None else 1.0 for i in range(len(sleeps) + 1)]
        return CycleLR(kind, starts, self.total, warmups, sleeps, peaks)


def _check_int(name: str, value, low: int, why: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"SleepSchedule {name}: must be an integer >= {low}{f' ({why})' if why else ''}, got "
                          f"{value!r}")

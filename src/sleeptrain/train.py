"""The training loop: explicit and readable, on Accelerate (devices, mixed precision, later multi-process).

Data flows one way: corpus -> tokenizer -> token store -> samples -> phase plan (which samples each step) -> this
loop -> metrics.jsonl / checkpoints / final model. The loop owns the model and the optimizer; sleep operations are
functions it calls at phase boundaries, handing them over explicitly.

    for stage in plan.stages:
        wake:  stream the fold, each sample once; record per-sample losses (replay scores) from the same forward
        sleep: [controller] -> ops before replay -> choose buffer -> replay steps -> ops after replay
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sleeptrain.checkpoint import capture_rng_states, load_weights_into, restore_rng_states
from sleeptrain.checkpoint import load_checkpoint as read_checkpoint
from sleeptrain.checkpoint import save_checkpoint as write_checkpoint
from sleeptrain.config import Config
from sleeptrain.controller import Controller
from sleeptrain.data.samples import IGNORE_INDEX, make_batcher
from sleeptrain.errors import ConfigError, SleeptrainError
from sleeptrain.fsutil import atomic_write_text
from sleeptrain.losses import per_sample_loss, token_losses
from sleeptrain.lr_schedules import plan_lr_function
from sleeptrain.metrics import MetricsLog, code_version, rewind_metrics
from sleeptrain.models import build_model, count_parameters, special_token_ids
from sleeptrain.phases import PhasePlan, Stage
from sleeptrain.prefetch import prefetched
from sleeptrain.presets import config_to_yaml, flat_config
from sleeptrain.replay import BufferSamples, RepackedSamples, ScoreBook, select_buffer, sleep_order
from sleeptrain.run_setup import (  # noqa: F401  (re-exported: library users import them from here)
    RunData, check_new_run_dir, check_processes, check_runtime, default_run_dir, final_evaluation, load_run_data,
    make_accelerator, make_optimizer, make_plan, prepare_run_dir, save_final, write_demo_pairs, write_run_start)
from sleeptrain.sleep_ops import Importance, SleepContext, run_op
from sleeptrain.validation import validation_loss


@dataclass
class RunResult:
    run_dir: Path
    final_dir: Path
    steps: int
    tokens: int
    seconds: float
    first_val_loss: float
    final_val_loss: float
    stopped_early: bool = False
    eval_results: dict | None = None
    main_process: bool = True

# --- the loop ---------------------------------------------------------------------------------------------------

class RunInterrupted(SleeptrainError):
    """SIGINT/SIGTERM during training: a checkpoint was written, the run can be resumed."""

    exit_code = 130


class TrainingLoop:
    """Owns model, optimizer and counters for one run; `run()` walks the phase plan stage by stage.

    With N processes (accelerate launch / torchrun) every process builds the same global batch (so masking RNGs
    and label counts match a one-process run) and trains on its contiguous share of the rows; gradients are
    averaged by DDP and the loss is scaled by N, so the update equals the one-process update on the whole batch.
    """

    def __init__(self, cfg: Config, run_dir: Path, accelerator, model, tokenizer, train_samples, dev_samples,
                 plan: PhasePlan, metrics: MetricsLog):
        self.cfg, self.run_dir, self.acc = cfg, run_dir, accelerator
        self.tokenizer, self.train_samples, self.dev_samples = tokenizer, train_samples, dev_samples
        self.plan, self.metrics = plan, metrics
        self.masked = cfg.model.is_masked_lm
        self.device = accelerator.device
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.micro = cfg.train.micro_batch_size or cfg.train.batch_size
        self.lr_fn = plan_lr_function(plan, cfg.train, cfg.sleep)
        self.batcher = make_batcher(tokenizer, self.masked, cfg.model.mlm_probability, seed=cfg.seed)
        self.scores = ScoreBook(len(train_samples), gather=_gather_objects if self.world > 1 else None)
        self.importance = (Importance(model, cfg.sleep.importance, cfg.sleep.include_norms)
                           if "downscale" in cfg.sleep.ops else None)
        if cfg.train.compile:
            model.compile()
        self.model, self.optimizer = accelerator.prepare(model, make_optimizer(model, cfg))
        self.step = 0
        self.tokens = 0
        self.stage: Stage | None = None
        self.stage_index = 0
        self.sleep_started = False
        self.resume_cursor: tuple[int, int, bool] | None = None
        self._interval_loss = torch.zeros((), device=self.device)
        self._interval_steps = self._interval_tokens = 0
        self._interval_start = time.time()
        self.first_val = self.last_val = float("nan")
        self.controller = Controller(cfg.schedule.criteria) if cfg.schedule.controller else None
        self.stopped_early = False
        self.interrupt_signal: int | None = None
        self.last_checkpoint: Path | None = None
        self.blimp_pairs = None  # set by train() when periodic BLiMP evaluation is on
        self._sleep_indices = np.zeros(0, dtype=np.int64)
        self._sleep_rng_state: dict | None = None
        self._sleep_source, self._sleep_positions = None, np.zeros(0, dtype=np.int64)
        self.sample_log = (open(run_dir / f"samples.rank{self.rank}.jsonl", "a", buffering=1)
                           if cfg.train.log_samples else None)
        from tqdm.auto import tqdm

        self.bar = tqdm(total=plan.total_steps, disable=not cfg.run.progress or not accelerator.is_main_process,
                        dynamic_ncols=True)
        self.n_cycles_total = max((s.cycle for s in plan.stages), default=0) + 1

    # --- one optimizer step ---
    def shard(self, n_rows: int) -> slice:
        """This process's contiguous share of a global batch of `n_rows` (sizes differ by at most one)."""
        bounds = [(r * n_rows) // self.world for r in range(self.world + 1)]
        return slice(bounds[self.rank], bounds[self.rank + 1])

    def train_step(self, ids: torch.Tensor, mask: torch.Tensor, sample_ids: np.ndarray | None) -> None:
        """One optimizer step on the global batch (`ids`, `mask`); `sample_ids` (or None) receive the per-sample
        losses as replay scores."""
        tc = self.cfg.train
        lr = self.lr_fn(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.batcher(ids, mask)  # the whole global batch on every process: same RNG use as one process
        n_label_tokens = int((batch["labels"] != IGNORE_INDEX).sum()) or 1
        rows, weight = self.shard(len(ids)), float(self.world)
        if rows.start == rows.stop:  # fewer rows than processes: a zero-weight pass keeps DDP's all-reduce in step
            rows, weight = slice(0, 1), 0.0
        local = {k: v[rows] for k, v in batch.items()}
        if not self.masked and right_padded(local["attention_mask"]):
            # causal attention never looks right, so with padding only at the end of rows the mask changes nothing
            # for real tokens (padding has no labels): dropping it lets SDPA take its fast is_causal path
            local["attention_mask"] = None
        scored = sample_ids is not None and weight and self.cfg.sleep.replays  # scores only matter for replay
        local_ids = sample_ids[rows] if scored else None
        n_local = local["input_ids"].shape[0]
        step_loss = torch.zeros((), device=self.device)
        records = []
        for start in range(0, n_local, self.micro):
            micro = {k: (self._to_device(v[start:start + self.micro]) if v is not None else None)
                     for k, v in local.items()}
            last = start + self.micro >= n_local
            with contextlib.nullcontext() if last else self.acc.no_sync(self.model):
                logits = self.model(input_ids=micro["input_ids"], attention_mask=micro["attention_mask"]).logits
                token_loss, counted = token_losses(logits, micro["labels"], causal=not self.masked)
                loss = token_loss.sum() * (weight / n_label_tokens)
                self.acc.backward(loss)
            if local_ids is not None:
                records.append((local_ids[start:start + self.micro], per_sample_loss(token_loss.detach(), counted)))
            step_loss += loss.detach()
        if tc.on_nan == "skip_batch" and not self._all_finite(step_loss):
            self.optimizer.zero_grad(set_to_none=True)
            self.metrics.write({"event": "nan_skipped", "step": self.step, "phase": self.stage.phase,
                                "cycle": self.stage.cycle})
            self._advance(lr, 0)
            return
        for local_rows, values in records:
            self.scores.record(local_rows, values, self.stage.cycle, self.step)
        if self.importance is not None and self.stage.phase == "wake":
            self.importance.accumulate(self.acc.unwrap_model(self.model))
        if tc.clip_grad:
            self.acc.clip_grad_norm_(self.model.parameters(), tc.clip_grad)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._interval_loss += step_loss
        self._interval_steps += 1
        self._advance(lr, int(mask.sum()))  # tokens counted on the host copy: no device sync

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """Host batch -> device; on GPU through pinned memory so the copy is asynchronous (no stall, no sync)."""
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    def _advance(self, lr: float, n_tokens: int) -> None:
        self.tokens += n_tokens
        self._interval_tokens += n_tokens
        self.step += 1
        self.bar.update(1)
        self.after_step(lr)

    def _all_finite(self, value: torch.Tensor) -> bool:
        """True when `value` is finite on every process (one host sync)."""
        bad = (~torch.isfinite(value)).float().reshape(1)
        if self.world > 1:
            bad = self.acc.reduce(bad, "sum")
        return not bool(bad.item())

    def after_step(self, lr: float) -> None:
        tc = self.cfg.train
        if self.step % tc.log_every == 0 or self.step == self.plan.total_steps or self._stage_ends_now():
            self.log_train(lr)
        if tc.eval_every and self.step % tc.eval_every == 0 and self.step != self.plan.total_steps:
            self.evaluate()
        if self.blimp_pairs and self.step % self.cfg.eval.blimp_every == 0:
            self.evaluate_blimp()
        every = self.cfg.checkpoint.every
        if every and self.step % every == 0 and not (self._stage_ends_now() and self.cfg.checkpoint.phase_boundaries):
            self.save_checkpoint((self.stage_index, self.step - self.stage.start, True))
        if self._interrupted():
            self.save_checkpoint((self.stage_index, self.step - self.stage.start, True))
            raise RunInterrupted(f"interrupted by signal {self.interrupt_signal} at step {self.step}; checkpoint "
                                 f"{self.last_checkpoint}; continue with: sleeptrain train resume={self.run_dir}")

    def _interrupted(self) -> bool:
        if self.world == 1:
            return self.interrupt_signal is not None
        if self.step % self.cfg.train.log_every:  # agree across processes, at log intervals only
            return False
        flag = torch.tensor([1.0 if self.interrupt_signal is not None else 0.0], device=self.device)
        hit = bool(self.acc.reduce(flag, "sum").item())
        if hit and self.interrupt_signal is None:
            self.interrupt_signal = signal.SIGTERM
        return hit

    def _stage_ends_now(self) -> bool:
        return self.stage is not None and self.step == self.stage.end

    def log_train(self, lr: float) -> None:
        if not self._interval_steps:
            return
        interval = self._interval_loss / self._interval_steps
        if self.world > 1:
            interval = self.acc.reduce(interval, "mean")
        loss = interval.item()  # the only host sync, once per log interval
        if not math.isfinite(loss):
            raise TrainingDiverged(self._diverged_message(loss))
        self.scores.flush()
        elapsed = max(time.time() - self._interval_start, 1e-9)
        record = {"event": "train", "step": self.step, "loss": loss, "lr": lr, "tokens": self.tokens,
                  "tokens_per_s": self._interval_tokens / elapsed, "phase": self.stage.phase,
                  "cycle": self.stage.cycle, "epoch": self.stage.pass_index}
        self.metrics.write(record)
        if self.cfg.train.trackers:
            self.acc.log({"loss": loss, "lr": lr}, step=self.step)
        self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{record['tokens_per_s']:.0f}")
        self._interval_loss.zero_()
        self._interval_steps = self._interval_tokens = 0
        self._interval_start = time.time()

    def _diverged_message(self, loss: float) -> str:
        kept = (f"; the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                else "; no checkpoint was written before it")
        return (f"train: the training loss became {loss} by step {self.step}{kept} (lower train.lr, check the "
                f"data, or set train.on_nan=skip_batch)")

    def evaluate(self) -> float:
        result = validation_loss(self.acc.unwrap_model(self.model), self.dev_samples, self.tokenizer,
                                 masked=self.masked, batch_size=self.micro, device=self.device,
                                 max_batches=self.cfg.train.eval_max_batches,
                                 mlm_probability=self.cfg.model.mlm_probability, seed=self.cfg.seed,
                                 autocast=self.acc.autocast)
        self.metrics.write({"event": "eval", "step": self.step, "tokens": self.tokens, **result})
        if self.cfg.train.trackers:
            self.acc.log({"val_loss": result["val_loss"]}, step=self.step)
        self.last_val = result["val_loss"]
        if math.isnan(self.first_val):
            self.first_val = self.last_val
        return self.last_val

    def evaluate_blimp(self) -> None:
        """Fast minimal-pair accuracy on `eval.blimp_n` pairs per paradigm, logged as `event: "blimp"`."""
        from sleeptrain.evaluate.blimp import evaluate_pairs

        model = self.acc.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        result, _, _ = evaluate_pairs(model, self.tokenizer, self.blimp_pairs, self.masked,
                                      self.cfg.eval.batch_size, self.cfg.eval.method)
        model.train(was_training)
        self.metrics.write({"event": "blimp", "step": self.step, "tokens": self.tokens,
                            "overall": result["overall"], "pairs": result["pairs"], "tie_rate": result["tie_rate"],
                            "by_phenomenon": {k: v["accuracy"] for k, v in result["by_phenomenon"].items()}})

    def batch_shapes(self) -> list[int]:
        """Every distinct micro-batch row count this process meets in the plan (full batches, fold remainders)."""
        global_rows = {self.cfg.train.batch_size}
        for stage in self.plan.stages:
            if stage.phase == "wake" and stage.steps:
                global_rows.add(stage.fold[1] - stage.fold[0] - (stage.steps - 1) * self.plan.batch_size)
        shapes = set()
        for n in global_rows:
            local = max(self.shard(n).stop - self.shard(n).start, 1)
            shapes.update(min(self.micro, local - s) for s in range(0, local, self.micro))
        return sorted(shapes)

    def warm_compiled(self) -> None:
        """Compile forward and backward for every batch shape now, so no phase boundary recompiles mid-run. The
        passes run on real samples under a forked RNG, without gradient sync, and their gradients are dropped:
        training is unchanged."""
        start = time.time()
        shapes = self.batch_shapes()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            for rows in shapes:
                ids, mask = self.train_samples.get(np.arange(min(rows, len(self.train_samples))))
                ids, mask = self._to_device(ids), self._to_device(mask)
                keep_mask = None if not self.masked and right_padded(mask) else mask
                # entered exactly as train_step enters it (the prepared model applies autocast inside): an outer
                # autocast here changes the global state Dynamo guards on, and bf16 runs recompiled at step 0
                with self.acc.no_sync(self.model):
                    logits = self.model(input_ids=ids, attention_mask=keep_mask).logits
                    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
                    loss, _ = token_losses(logits, labels, causal=not self.masked)
                    self.acc.backward(loss.sum() * 0.0)
                self.optimizer.zero_grad(set_to_none=True)
            model = self.acc.unwrap_model(self.model)  # evaluation: eval mode, no grad, masks as validation passes
            model.eval()
            n_dev = len(self.dev_samples)
            with torch.no_grad(), self.acc.autocast():
                for rows in sorted({min(self.micro, n_dev), n_dev % self.micro or self.micro}):
                    ids, mask = self.dev_samples.get(np.arange(rows))
                    model(input_ids=self._to_device(ids), attention_mask=self._to_device(mask))
            model.train()
        self.metrics.write({"event": "compile", "step": self.step, "batch_shapes": shapes,
                            "seconds": time.time() - start})

    # --- phases ---
    def run(self) -> None:
        first, first_offset, first_started = self.resume_cursor or (0, 0, False)
        if self.cfg.train.compile:
            self.warm_compiled()
        if self.resume_cursor is None:
            self.evaluate()
        for i in range(first, len(self.plan.stages)):
            stage = self.plan.stages[i]
            offset, started = (first_offset, first_started) if i == first else (0, False)
            self.stage, self.stage_index = stage, i
            self.bar.set_description(f"{stage.phase} {stage.cycle + 1}/{self.n_cycles_total}")
            if stage.phase == "wake":
                self.wake(stage, offset)
            elif not self.sleep(stage, offset, started):
                self.stopped_early = True
                break
            self.checkpoint_at_boundary(i)
        self.bar.close()
        self.scores.flush()
        if self.controller is not None:
            self.controller.finish(self)
        self.evaluate()

    def checkpoint_at_boundary(self, i: int) -> None:
        """Checkpoint after stage i (unless the next stage has no steps: its boundary comes right after)."""
        stages = self.plan.stages
        if not self.cfg.checkpoint.phase_boundaries or (i + 1 < len(stages) and stages[i + 1].steps == 0):
            return
        self.save_checkpoint((i + 1, 0, False))

    def wake(self, stage: Stage, first_offset: int = 0) -> None:
        def load(offset: int):
            indices = self.plan.wake_indices(stage, offset)
            return (indices, *self.train_samples.get(indices))

        for indices, ids, mask in prefetched(load, range(first_offset, stage.steps), self.cfg.train.prefetch):
            if self.sample_log is not None:
                self.sample_log.write(json.dumps({"step": self.step, "phase": "wake", "cycle": stage.cycle,
                                                  "indices": indices[self.shard(len(indices))].tolist()}) + "\n")
            self.train_step(ids, mask, indices)

    def sleep(self, stage: Stage, first_offset: int = 0, started: bool = False) -> bool:
        """One sleep phase (from replay step `first_offset` when resuming one that had `started`). Returns False
        when the controller ends the run."""
        before, after = self.cfg.sleep.split_ops()
        if not started:
            if self.controller is not None:
                decision = self.controller.decide(self)
                if decision == "stop":
                    return False
                before = [("deep_reset" if op == "optimizer_reset" and decision == "deep" else op) for op in before]
            self.metrics.write({"event": "sleep_start", "step": self.step, "tokens": self.tokens,
                                "cycle": stage.cycle, **self.choose_buffer(stage)})
            for op in before:
                self.run_sleep_op(op, stage)
        else:
            self.build_sleep_source(stage)
        self.sleep_started = True
        batch, source = self.cfg.train.batch_size, self._sleep_source

        def load(offset: int):
            positions = self._sleep_positions[offset * batch:(offset + 1) * batch]
            return (*source.get(positions), source.sample_ids(positions))

        for ids, mask, sample_ids in prefetched(load, range(first_offset, stage.steps), self.cfg.train.prefetch):
            self.train_step(ids, mask, sample_ids)
        for op in after:
            self.run_sleep_op(op, stage)
        self.sleep_started = False
        self.metrics.write({"event": "sleep_end", "step": self.step, "tokens": self.tokens, "cycle": stage.cycle})
        return True

    def choose_buffer(self, stage: Stage) -> dict:
        """Select the replay buffer and lay out this sleep's batches (nothing to do without replay)."""
        self._sleep_indices, self._sleep_rng_state = np.zeros(0, dtype=np.int64), None
        self._sleep_source, self._sleep_positions = None, np.zeros(0, dtype=np.int64)
        if not stage.steps:
            return {"buffer_size": 0, "replay_score_mean": None, "candidate_score_mean": None}
        rng = np.random.default_rng([self.cfg.seed, 0x51EE9, stage.cycle])
        selection = select_buffer(self.scores, stage.buffer_size, stage.cycle, self.step, self.cfg.replay, rng)
        self.scores.mark_seen(selection.indices, self.step)
        self._sleep_indices, self._sleep_rng_state = selection.indices, rng.bit_generator.state
        if self.sample_log is not None:
            self.sample_log.write(json.dumps({"step": self.step, "phase": "buffer", "cycle": stage.cycle,
                                              "indices": np.sort(selection.indices).tolist()}) + "\n")
        self.build_sleep_source(stage)
        return {"buffer_size": int(selection.indices.size), "contexts": len(self._sleep_source),
                "replay_score_mean": selection.replay_score_mean,
                "candidate_score_mean": selection.candidate_score_mean,
                "candidates": int(self.scores.candidates().size), "strategy": self.cfg.replay.strategy}

    def build_sleep_source(self, stage: Stage) -> None:
        """The sleep's sample source and batch order: a pure function of the buffer and the RNG state after the
        selection, so a resumed sleep rebuilds exactly the batches of the interrupted one."""
        if self._sleep_rng_state is None:
            self._sleep_source, self._sleep_positions = None, np.zeros(0, dtype=np.int64)
            return
        rng = np.random.default_rng()
        rng.bit_generator.state = self._sleep_rng_state
        if self.cfg.replay.context_augment:
            source = RepackedSamples(self.train_samples, self._sleep_indices, self.tokenizer.pad_token_id, rng,
                                     doc_start_id=self.tokenizer.bos_token_id, doc_end_id=self.tokenizer.eos_token_id)
        else:
            source = BufferSamples(self.train_samples, self._sleep_indices)
        self._sleep_source = source
        self._sleep_positions = sleep_order(len(source), stage.steps * self.cfg.train.batch_size, rng)

    def run_sleep_op(self, name: str, stage: Stage) -> None:
        ctx = SleepContext(self.model, self.optimizer, self.cfg, stage.cycle, accelerator=self.acc,
                           make_optimizer=lambda m: make_optimizer(m, self.cfg), importance=self.importance)
        changed = run_op(name, ctx)
        rebuilt = ctx.model is not self.model
        self.model, self.optimizer = ctx.model, ctx.optimizer
        if rebuilt and self.cfg.train.compile:  # a deep reset builds a new module: compile and warm it as well
            self.acc.unwrap_model(self.model).compile()
            self.warm_compiled()
        self.metrics.write({"event": "sleep_op", "op": name, "step": self.step, "cycle": stage.cycle, **changed})

    # --- checkpoints ---
    def save_checkpoint(self, cursor: tuple[int, int, bool]) -> None:
        """Everything needed to continue exactly from `cursor` = (stage index, steps done in it, sleep started).
        Collective (every process flushes scores and checks for NaN); process 0 writes."""
        self.scores.flush()
        self._check_finite_before_checkpoint()
        if self.acc.is_main_process:
            model = self.acc.unwrap_model(self.model)
            controller_values, controller_tensors = self.controller.state() if self.controller else ({}, {})
            tensors = {"scores": self.scores.state_dict(), "rng": capture_rng_states(),
                       "importance": dict(self.importance.table) if self.importance is not None else {},
                       "controller_best": controller_tensors, "sleep_indices": torch.from_numpy(self._sleep_indices)}
            if self.masked:
                tensors["batcher_rng"] = self.batcher.generator.get_state()
            state = {"tokens": self.tokens, "cursor": list(cursor), "n_samples": len(self.train_samples),
                     "total_steps": self.plan.total_steps, "first_val": self.first_val, "last_val": self.last_val,
                     "controller": controller_values, "sleep_rng_state": self._sleep_rng_state if cursor[2] else None,
                     "metrics_bytes": self.metrics.tell(), "seed": self.cfg.seed, "processes": self.world,
                     "code_version": code_version()}
            self.last_checkpoint = write_checkpoint(self.run_dir, self.step, model, self.optimizer, self.tokenizer,
                                                   config_to_yaml(self.cfg), state, tensors,
                                                   self.cfg.checkpoint.keep)
            self.metrics.write({"event": "checkpoint", "step": self.step, "path": str(self.last_checkpoint)})
        if self.world > 1:
            self.acc.wait_for_everyone()

    def _check_finite_before_checkpoint(self) -> None:
        """A checkpoint is only written from finite weights after finite losses: the newest stays a good one."""
        bad = (~torch.isfinite(self._interval_loss)).float().reshape(1)
        for p in self.acc.unwrap_model(self.model).parameters():
            bad += (~torch.isfinite(p)).any().float()
        if self.world > 1:
            bad = self.acc.reduce(bad, "sum")
        if bad.item():
            raise TrainingDiverged(self._diverged_message(float("nan")))

    def load_checkpoint(self, path: Path) -> dict:
        """Restore everything `save_checkpoint` wrote; the next `run()` continues at the saved cursor."""
        weights, optimizer_state, tensors, state = read_checkpoint(path)
        if state["n_samples"] != len(self.train_samples) or state["total_steps"] != self.plan.total_steps:
            raise ConfigError(f"resume: the data no longer matches the run ({state['n_samples']} samples / "
                              f"{state['total_steps']} steps then, {len(self.train_samples)} / "
                              f"{self.plan.total_steps} now); was the corpus or tokenizer changed?")
        load_weights_into(self.acc.unwrap_model(self.model), weights)
        self.optimizer.load_state_dict(optimizer_state)
        self.scores.load_state_dict(tensors["scores"])
        if self.importance is not None:
            for name, table in tensors["importance"].items():
                self.importance.table[name].copy_(table)
        if self.controller is not None:
            self.controller.load_state(state["controller"], tensors["controller_best"])
        if self.masked:
            self.batcher.generator.set_state(tensors["batcher_rng"])
        restore_rng_states(tensors["rng"])
        self.step, self.tokens = state["step"], state["tokens"]
        self.first_val, self.last_val = state["first_val"], state["last_val"]
        stage_index, offset, started = state["cursor"]
        self.resume_cursor = (stage_index, offset, bool(started))
        self._sleep_indices = tensors["sleep_indices"].numpy().astype(np.int64)
        self._sleep_rng_state = state["sleep_rng_state"]
        self.last_checkpoint = Path(path)
        self.bar.update(self.step)
        return state


def right_padded(mask: torch.Tensor) -> bool:
    """True when every row is real tokens followed only by padding (how samples and replay contexts are laid out)."""
    return bool((mask[:, 1:] <= mask[:, :-1]).all())


def _gather_objects(items: list) -> list:
    from accelerate.utils import gather_object

    return gather_object(items)


class TrainingDiverged(SleeptrainError):
    """The training loss became NaN or inf."""


# --- entry point ----------------------------------------------------------------------------------------------------

def train(cfg: Config, presets: dict[str, str] | None = None, overrides: list[str] | None = None,
          resume_from: Path | None = None) -> RunResult:
    """Run `cfg` into a new run folder, or continue the run that checkpoint `resume_from` belongs to."""
    from accelerate import PartialState
    from accelerate.utils import set_seed

    t_start = time.time()
    # the process group (accelerate launch / torchrun; gloo on CPU), or a single process
    state = PartialState(cpu=cfg.train.device == "cpu" or not torch.cuda.is_available())
    # everything that can fail on the user's data or settings happens before the run folder exists
    check_runtime(cfg)
    data = load_run_data(cfg, state)
    corpus, tokenizer, stores, train_samples, dev_samples, plan = (
        data.corpus, data.tokenizer, data.stores, data.train_samples, data.dev_samples, data.plan)
    check_processes(cfg, state.num_processes)

    if resume_from is None:
        run_dir = Path(cfg.run.dir) if cfg.run.dir else default_run_dir(cfg)
        check_new_run_dir(run_dir)
        state.wait_for_everyone()
        if state.is_main_process:
            prepare_run_dir(run_dir)
            write_run_start(run_dir, cfg, presets or {}, overrides or [])
            write_demo_pairs(cfg, run_dir)
        state.wait_for_everyone()
    else:
        run_dir = Path(resume_from).parent.parent
    pairs_dir = run_dir / "minimal_pairs" if cfg.data.source == "generated" else None
    accelerator = make_accelerator(cfg, run_dir)

    set_seed(cfg.seed)
    model = build_model(cfg.model, len(tokenizer), cfg.data.seq_len, special_token_ids(tokenizer))
    params = count_parameters(model)
    metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=accelerator.is_main_process)
    loop = TrainingLoop(cfg, run_dir, accelerator, model, tokenizer, train_samples, dev_samples, plan, metrics)
    if resume_from is None:
        metrics.write({"event": "start", "steps": plan.total_steps, "samples": len(train_samples),
                       "train_tokens": stores["train"].n_tokens, "dev_tokens": stores["dev"].n_tokens,
                       "parameters": params["total"], "non_embedding_parameters": params["non_embedding"],
                       "vocab_size": len(tokenizer), "corpus": corpus.description, "notes": corpus.notes,
                       "processes": accelerator.num_processes,
                       "stages": [[s.phase, s.cycle, s.start, s.steps] for s in plan.stages]})
    else:
        saved = loop.load_checkpoint(resume_from)
        if accelerator.is_main_process:  # allowed changes (resume.allow_changes) become the run's config
            atomic_write_text(run_dir / "config.yaml", config_to_yaml(cfg))
        metrics.close()
        moved = rewind_metrics(run_dir / "metrics.jsonl", saved["metrics_bytes"]) if accelerator.is_main_process else 0
        metrics = loop.metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=accelerator.is_main_process)
        metrics.write({"event": "resume", "step": loop.step, "checkpoint": str(resume_from),
                       "superseded_records": moved, "processes": accelerator.num_processes,
                       "code_version": code_version(), "overrides": overrides or []})
    if cfg.train.trackers:
        accelerator.init_trackers("sleeptrain", config=flat_config(cfg))

    blimp_path = Path(cfg.eval.blimp_path) if cfg.eval.blimp_path else pairs_dir
    if cfg.eval.blimp_every and blimp_path:
        from sleeptrain.evaluate.minimal_pairs import load_minimal_pairs

        loop.blimp_pairs = load_minimal_pairs(blimp_path, cfg.eval.blimp_n)
    with checkpoint_on_signals(loop):
        try:
            loop.run()
        finally:
            loop.bar.close()
            if loop.sample_log is not None:
                loop.sample_log.close()
    final_dir = run_dir / "final"
    eval_results = None
    if accelerator.is_main_process:
        save_final(accelerator.unwrap_model(loop.model), tokenizer, final_dir, cfg.data.seq_len)
        if cfg.eval.final:
            eval_results = final_evaluation(cfg, accelerator.unwrap_model(loop.model), tokenizer, final_dir,
                                            blimp_path, corpus)
    seconds = time.time() - t_start
    summary = {"steps": loop.step, "planned_steps": plan.total_steps, "tokens": loop.tokens, "seconds": seconds,
               "first_val_loss": loop.first_val, "final_val_loss": loop.last_val,
               "final_val_ppl": math.exp(min(loop.last_val, 50.0)), "stopped_early": loop.stopped_early,
               "parameters": params, "final_dir": str(final_dir), "processes": accelerator.num_processes,
               "resumed_from": str(resume_from) if resume_from else None,
               "minimal_pairs": str(pairs_dir) if pairs_dir else None}
    if eval_results:
        if "blimp" in eval_results:
            summary["blimp_overall"] = eval_results["blimp"]["overall"]
        if "perplexity" in eval_results:
            summary["dev_ppl"] = eval_results["perplexity"]["overall"]["ppl"]
    metrics.write({"event": "end", **summary})
    metrics.close()
    if accelerator.is_main_process:
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
        if cfg.run.plot:
            from sleeptrain.plot import plot_runs

            plot_runs([run_dir], run_dir / "loss.png")
    if cfg.train.trackers:
        accelerator.end_training()
    accelerator.wait_for_everyone()
    return RunResult(run_dir, final_dir, loop.step, loop.tokens, seconds, loop.first_val, loop.last_val,
                     loop.stopped_early, eval_results, accelerator.is_main_process)

@contextlib.contextmanager
def checkpoint_on_signals(loop: TrainingLoop):
    """SIGINT/SIGTERM ask the loop to checkpoint and stop after the current step; a second signal acts at once."""
    if not loop.cfg.checkpoint.enabled and loop.world == 1:
        yield
        return
    previous = {}

    def handler(signum, frame):
        loop.interrupt_signal = signum
        for sig, old in previous.items():  # a second Ctrl-C is not deferred
            signal.signal(sig, old)

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread (library use): leave signals alone
        previous.clear()
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

def describe(result: RunResult) -> str:
    lines = [
        f"done: {result.steps} steps, {result.tokens:,} tokens in {result.seconds:.0f} s"
        + (" (stopped early by the controller)" if result.stopped_early else ""),
        f"  model + tokenizer : {result.final_dir}",
        f"  metrics           : {result.run_dir / 'metrics.jsonl'}",
        f"  config            : {result.run_dir / 'config.yaml'}",
    ]
    plot = result.run_dir / "loss.png"
    if plot.exists():
        lines.append(f"  loss plot         : {plot}")
    lines.append(f"  validation loss   : {result.final_val_loss:.4f} (perplexity "
                 f"{math.exp(min(result.final_val_loss, 50)):.2f}), first {result.first_val_loss:.4f}")
    if result.eval_results:
        from sleeptrain.evaluate.runner import describe_results

        lines.append(f"  evaluation        : {result.final_dir / 'eval' / 'results.json'}")
        lines.extend("  " + line for line in describe_results(result.eval_results).splitlines())
    return "\n".join(lines)

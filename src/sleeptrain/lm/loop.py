"""The training loop: explicit and readable, on Accelerate (devices, mixed precision, several processes).

Data flows one way: corpus -> tokenizer -> token store -> samples -> phase plan (which samples each step) -> this
loop -> metrics.jsonl / checkpoints / final model. The loop owns the model, the optimizer and the step; everything
sleep lives in `sleeptrain.sleep` and is called through its hooks (`SleepCycle`), with a narrow context, never the
loop itself:

    for stage in plan.stages:
        wake:  stream the fold, each sample once; per-sample losses -> replay scores; on_wake_step hooks
        sleep: sleep.start (controller, buffer) -> ops before replay -> replay steps -> ops after replay
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import time
from pathlib import Path

import numpy as np
import torch

from sleeptrain.config import Config
from sleeptrain.data.samples import IGNORE_INDEX, make_batcher
from sleeptrain.errors import SleeptrainError
from sleeptrain.lm import trainer_state
from sleeptrain.lm.guards import TrainingDiverged, all_finite, diverged_message  # TrainingDiverged: re-exported
from sleeptrain.lm.losses import forward_losses, per_sample_loss, resolve_loss_impl, sample_loss_from_logits
from sleeptrain.lm.metrics_log import MetricsLog
from sleeptrain.lm.phases import PhasePlan, Stage
from sleeptrain.lm.prefetch import prefetched
from sleeptrain.lm.progress import LoopState
from sleeptrain.lm.run_setup import make_optimizer, save_final
from sleeptrain.lm.words import WordMeter
from sleeptrain.lm.evaluator import Evaluator
from sleeptrain.lm.warmup import batch_shapes, warm_or_eager
from sleeptrain.lm.lr_schedules import lr_function
from sleeptrain.sleep.cycle import SleepCycle
from sleeptrain.sleep.hooks import SleepContext, StepBatch
from sleeptrain.sleep.replay import Replay


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
                 plan: PhasePlan, metrics: MetricsLog, state: LoopState | None = None, test_samples=None):
        self.cfg, self.run_dir, self.acc = cfg, run_dir, accelerator
        self.state = state if state is not None else LoopState()  # the run's progress: its one owner
        self.tokenizer, self.train_samples, self.dev_samples = tokenizer, train_samples, dev_samples
        self.plan, self.metrics = plan, metrics
        self.masked = cfg.model.is_masked_lm
        self.device = accelerator.device
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.reduce = accelerator.reduce if self.world > 1 else None  # sums a tensor over processes (None: one)
        self.micro = cfg.train.micro_batch_size or cfg.train.batch_size
        self.shard = functools.partial(shard_rows, rank=self.rank, world=self.world)  # this process's rows of a batch
        self._to_device = functools.partial(to_device, device=self.device)
        self.lr_fn = lr_function(plan, cfg)
        self.batcher = make_batcher(tokenizer, self.masked, cfg.model.mlm_probability, seed=cfg.seed)
        if self.state.compiled:  # train.compile resolved (`sleeptrain.lm.compiling`); False again if it fails
            model.compile()
        self.model, self.optimizer = accelerator.prepare(model, make_optimizer(model, cfg))
        self.sample_log = (open(run_dir / f"samples.rank{self.rank}.jsonl", "a", buffering=1)
                           if cfg.train.log_samples else None)
        replay = Replay(cfg, train_samples, tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id,
                        gather=_gather_objects if self.world > 1 else None, sample_log=self.sample_log)
        self.sleep_cycle = SleepCycle(cfg, accelerator.unwrap_model(self.model), replay)
        self.stage: Stage | None = None
        self.stage_index = 0
        self.interval = IntervalMeter(self.device)
        self.interrupt = Interrupt()  # its signal is set by the SIGINT/SIGTERM handler of train()
        self.words = WordMeter(tokenizer, cfg.checkpoint.words, run_dir, accelerator.is_main_process)
        self.loss_impl = resolve_loss_impl(cfg.train.loss, cfg.model.is_masked_lm)
        self.evaluator = Evaluator(cfg, accelerator, tokenizer, dev_samples, self.micro,
                                   log=lambda record: self.metrics.write(record), test_samples=test_samples)
        self.bar = progress_bar(plan, cfg.run.progress and accelerator.is_main_process)
        self.n_cycles_total = max((s.cycle for s in plan.stages), default=0) + 1

    # --- one optimizer step ---
    def train_step(self, ids: torch.Tensor, mask: torch.Tensor, sample_ids: np.ndarray | None) -> None:
        """One optimizer step on the global batch (`ids`, `mask`); `sample_ids` (or None) receive the per-sample
        losses as replay scores."""
        lr = self.lr_fn(self.state.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.batcher(ids, mask)  # the whole global batch on every process: same RNG use as one process
        n_label_tokens = int((batch["labels"] != IGNORE_INDEX).sum()) or 1
        rows, weight = self.shard(len(ids)), float(self.world)
        if rows.start == rows.stop:  # fewer rows than processes: a zero-weight pass keeps DDP's all-reduce in step
            rows, weight = slice(0, 1), 0.0
        local = local_rows(batch, rows, self.masked)
        replay = self.sleep_cycle.replay
        local_ids = sample_ids[rows] if sample_ids is not None and weight and replay.enabled else None
        step_loss, sample_losses = forward_backward(
            self.acc, self.model, local, self.micro, weight / n_label_tokens, self.masked, self.loss_impl,
            self.cfg.train.loss_chunk_mb * 2**20, self.state.compiled, self._to_device, local_ids is not None)
        if self.cfg.train.on_nan == "skip_batch" and not all_finite((step_loss,), self.reduce):
            self.optimizer.zero_grad(set_to_none=True)
            self.metrics.write({"event": "nan_skipped", "step": self.state.step, "phase": self.stage.phase,
                                "cycle": self.stage.cycle})
            self._advance(lr, 0)
            return
        for start, values in sample_losses:
            replay.record(local_ids[start:start + self.micro], values, self.stage.cycle, self.state.step)
        # every process takes part (a hook may sum across them)
        step_batch = make_step_batch(local, weight, self.masked) if self.sleep_cycle.wants_batch else None
        self.sleep_cycle.after_backward(self.acc.unwrap_model(self.model), step_batch, self.stage.phase)
        if self.cfg.train.clip_grad:
            self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_grad)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.interval.add_step(step_loss)
        self.state.words += self.words.count(ids, mask)  # the global batch, on the host
        self._advance(lr, int(mask.sum()))  # tokens counted on the host copy: no device sync

    def _advance(self, lr: float, n_tokens: int) -> None:
        self.state.tokens += n_tokens
        self.interval.tokens += n_tokens
        self.state.step += 1
        self.bar.update(1)
        self.after_step(lr)

    def save_model(self, folder: Path, milestone: bool = False) -> None:
        """A complete HF model folder of the current weights; a word milestone's is scored with `eval.suite`."""
        save_final(self.acc.unwrap_model(self.model), self.tokenizer, folder, self.cfg.data.seq_len)
        if milestone and self.cfg.eval.suite:
            self.evaluator.suite(self.acc.unwrap_model(self.model), folder, self.state)

    def after_step(self, lr: float) -> None:
        tc = self.cfg.train
        self.words.save_due(self.state.words, functools.partial(self.save_model, milestone=True), self.metrics.write,
                            self.state.step)  # BabyLM word-count checkpoints
        if self.state.step % tc.log_every == 0 or self.state.step == self.plan.total_steps or self._stage_ends_now():
            self.log_train(lr)
        if tc.eval_every and self.state.step % tc.eval_every == 0 and self.state.step != self.plan.total_steps:
            self.evaluate()
        if self.evaluator.blimp_pairs and self.state.step % self.cfg.eval.blimp_every == 0:
            self.evaluator.blimp(self.acc.unwrap_model(self.model), self.state.step, self.state.tokens)
        every = self.cfg.checkpoint.every
        if every and self.state.step % every == 0 and not (self._stage_ends_now() and self.cfg.checkpoint.phase_boundaries):
            self.checkpoint((self.stage_index, self.state.step - self.stage.start, True))
        if self.interrupt.requested(self.state.step, self.cfg.train.log_every, self.acc):
            self.checkpoint((self.stage_index, self.state.step - self.stage.start, True))
            raise RunInterrupted(f"interrupted by signal {self.interrupt.signal} at step {self.state.step}; checkpoint "
                                 f"{self.state.last_checkpoint}; continue with: sleeptrain train resume={self.run_dir}")

    def _stage_ends_now(self) -> bool:
        return self.stage is not None and self.state.step == self.stage.end

    # --- logging and evaluation ---
    def log_train(self, lr: float) -> None:
        if not self.interval.steps:
            return
        loss, tokens_per_s = self.interval.read(self.reduce)
        if not math.isfinite(loss):
            raise TrainingDiverged(diverged_message(loss, self.state.step, self.state.last_checkpoint))
        self.sleep_cycle.replay.sync()
        state, stage = self.state, self.stage
        self.metrics.write({"event": "train", "step": state.step, "loss": loss, "lr": lr, "tokens": state.tokens,
                            "words_seen": state.words, "tokens_per_s": tokens_per_s, "phase": stage.phase,
                            "cycle": stage.cycle, "epoch": stage.pass_index})
        if self.cfg.train.trackers:
            self.acc.log({"loss": loss, "lr": lr}, step=self.state.step)
        self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:.0f}")
        self.interval.reset()

    def evaluate(self) -> float:
        """Validation loss of the current model (logged; the controller and the run summary read it)."""
        loss = self.evaluator.validation(self.acc.unwrap_model(self.model), self.state.step, self.state.tokens)
        return self.state.record_val(loss)

    # --- checkpoints ---
    def checkpoint_parts(self) -> trainer_state.CheckpointParts:
        return trainer_state.CheckpointParts(
            self.cfg, self.run_dir, self.acc.unwrap_model(self.model), self.optimizer, self.tokenizer,
            self.sleep_cycle, self.batcher, len(self.train_samples), self.plan.total_steps, self.world)

    def checkpoint(self, cursor: tuple[int, int, bool]) -> None:
        """Everything needed to continue exactly from `cursor` = (stage index, steps done in it, sleep started).
        Collective (every process syncs replay scores and checks for NaN); process 0 writes. Only finite weights
        after finite losses are written, so the newest checkpoint stays a good one."""
        self.sleep_cycle.replay.sync()
        if not all_finite((self.interval.loss, *self.acc.unwrap_model(self.model).parameters()), self.reduce):
            raise TrainingDiverged(diverged_message(float("nan"), self.state.step, self.state.last_checkpoint))
        if self.acc.is_main_process:
            self.state.last_checkpoint = trainer_state.save(self.checkpoint_parts(), self.state, cursor,
                                                            self.metrics.tell())
            self.metrics.write({"event": "checkpoint", "step": self.state.step,
                                "path": str(self.state.last_checkpoint)})
        if self.world > 1:
            self.acc.wait_for_everyone()

    def restore(self, path: Path) -> dict:
        """Restore checkpoint `path`; the next `run()` continues at its cursor. Returns the checkpoint's record."""
        record = trainer_state.load(path, self.checkpoint_parts(), self.state)
        self.bar.update(self.state.step)
        return record

    def warm_compiled(self) -> None:
        """Compile forward and backward for every batch shape of the plan now (`sleeptrain.lm.warmup`); a failure
        under `train.compile=auto` leaves the run eager (`self.state.compiled` False)."""
        shapes = batch_shapes(self.plan, self.cfg.train.batch_size, self.micro, self.shard)
        self.state.compiled = warm_or_eager(
            self.acc, self.model, self.optimizer, shapes, self.train_samples, self.dev_samples, self.masked,
            self.micro, self._to_device, self.loss_impl, self.cfg.train.loss_chunk_mb * 2**20,
            self.cfg.train.compile,
            lambda record: self.metrics.write({"event": record["event"], "step": self.state.step, **record}),
            self.evaluator.test_samples)

    # --- phases ---
    def run(self) -> None:
        first, first_offset, first_started = self.state.cursor or (0, 0, False)
        if self.state.compiled:
            self.warm_compiled()
        if self.state.cursor is None:
            self.evaluate()
        for i in range(first, len(self.plan.stages)):
            stage = self.plan.stages[i]
            offset, started = (first_offset, first_started) if i == first else (0, False)
            self.stage, self.stage_index = stage, i
            self.bar.set_description(f"{stage.phase} {stage.cycle + 1}/{self.n_cycles_total}")
            if stage.phase == "wake":
                self.wake(stage, offset)
            elif not self.sleep(stage, offset, started):
                self.state.stopped_early = True
                break
            self.checkpoint_at_boundary(i)
        self.bar.close()
        self.sleep_cycle.replay.sync()
        self.sleep_cycle.end(self.sleep_context(self.stage.cycle if self.stage else 0))
        self.evaluate()
        self.state.final_test = self.evaluator.test(self.acc.unwrap_model(self.model), self.state.step,
                                                    self.state.tokens)

    def checkpoint_at_boundary(self, i: int) -> None:
        """Checkpoint after stage i (unless the next stage has no steps: its boundary comes right after)."""
        stages = self.plan.stages
        if not self.cfg.checkpoint.phase_boundaries or (i + 1 < len(stages) and stages[i + 1].steps == 0):
            return
        self.checkpoint((i + 1, 0, False))

    def wake(self, stage: Stage, first_offset: int = 0) -> None:
        if first_offset == 0 and hasattr(self.train_samples, "windows_sha256"):  # FORGETTER: this epoch's draw
            self.metrics.write({"event": "epoch_start", "epoch": stage.pass_index, "step": self.state.step,
                                "windows": stage.fold[1] - stage.fold[0],
                                "windows_sha256": self.train_samples.windows_sha256(stage.pass_index)})

        def load(offset: int):
            indices = self.plan.wake_indices(stage, offset)
            return (indices, *self.train_samples.get(indices))

        for indices, ids, mask in prefetched(load, range(first_offset, stage.steps), self.cfg.train.prefetch):
            if self.sample_log is not None:
                self.sample_log.write(json.dumps({"step": self.state.step, "phase": "wake", "cycle": stage.cycle,
                                                  "indices": indices[self.shard(len(indices))].tolist()}) + "\n")
            self.train_step(ids, mask, indices)

    def sleep(self, stage: Stage, first_offset: int = 0, started: bool = False) -> bool:
        """One sleep phase (from replay step `first_offset` when resuming one that had `started`). Returns False
        when a sleep hook (the controller) ends the run."""
        replay = self.sleep_cycle.replay
        if not started:
            ctx = self.sleep_context(stage.cycle)
            if not self.sleep_cycle.start(ctx, stage):
                return False
            self.apply_ops(ctx.ops, stage)
        else:
            replay.rebuild(stage)
        for ids, mask, sample_ids in prefetched(replay.batch, range(first_offset, stage.steps),
                                                self.cfg.train.prefetch):
            self.train_step(ids, mask, sample_ids)
        if self.stage_index == len(self.plan.stages) - 1 and self.sleep_cycle.ops_at_end:  # the run's last ops
            self.state.pre_end_ops = self.evaluator.before_end_ops(self.acc.unwrap_model(self.model), self.state,
                                                                   self.run_dir / "pre_end_ops", self.save_model)
        self.apply_ops(self.sleep_cycle.ops_at_end, stage)
        self.metrics.write({"event": "sleep_end", "step": self.state.step, "tokens": self.state.tokens, "cycle": stage.cycle})
        return True

    def sleep_context(self, cycle: int) -> SleepContext:
        """The narrow view a sleep hook gets of this moment of the run."""
        return SleepContext(self.model, self.optimizer, self.cfg, cycle, step=self.state.step, tokens=self.state.tokens,
                            accelerator=self.acc, make_optimizer=lambda m: make_optimizer(m, self.cfg),
                            evaluate=self.evaluate, log=self.metrics.write)

    def apply_ops(self, names: list[str], stage: Stage) -> None:
        """Run sleep ops in order, adopting the model and optimizer an op may have replaced (deep reset)."""
        for name in names:
            ctx = self.sleep_context(stage.cycle)
            changed = self.sleep_cycle.apply(name, ctx)
            rebuilt = ctx.model is not self.model
            self.model, self.optimizer = ctx.model, ctx.optimizer
            if rebuilt and self.state.compiled:  # a new module: compile and warm it as well
                self.acc.unwrap_model(self.model).compile()
                self.warm_compiled()
            self.metrics.write({"event": "sleep_op", "op": name, "step": self.state.step, "cycle": stage.cycle, **changed})


class Interrupt:
    """A SIGINT/SIGTERM this process received; with several processes they agree on it at log intervals (so all
    checkpoint and stop at the same step)."""

    def __init__(self):
        self.signal: int | None = None

    def requested(self, step: int, log_every: int, accelerator) -> bool:
        if accelerator.num_processes == 1:
            return self.signal is not None
        if step % log_every:
            return False
        flag = torch.tensor([1.0 if self.signal is not None else 0.0], device=accelerator.device)
        hit = bool(accelerator.reduce(flag, "sum").item())
        if hit and self.signal is None:
            self.signal = signal.SIGTERM
        return hit


class IntervalMeter:
    """Training loss and tokens over the current log interval, summed on the device and read once per interval."""

    def __init__(self, device):
        self.loss = torch.zeros((), device=device)
        self.reset()

    def reset(self) -> None:
        self.loss.zero_()
        self.steps = self.tokens = 0
        self.start = time.time()

    def add_step(self, loss: torch.Tensor) -> None:
        self.loss += loss
        self.steps += 1

    def read(self, reduce=None) -> tuple[float, float]:
        """(mean loss per step, tokens per second); `reduce` averages the loss over processes."""
        mean = self.loss / self.steps
        if reduce is not None:
            mean = reduce(mean, "mean")
        return mean.item(), self.tokens / max(time.time() - self.start, 1e-9)  # one host sync per interval


def forward_backward(accelerator, model, local: dict, micro: int, scale: float, masked: bool, loss_impl: str,
                     chunk_bytes: int, compiled: bool, to_device, keep_losses: bool) -> tuple[torch.Tensor, list]:
    """Forward and backward over this process's rows `local` (input_ids, attention_mask, labels) in micro-batches of
    `micro` rows, each loss scaled by `scale`, gradients synchronised on the last micro-batch only. Returns the summed
    (scaled) loss on the device and, with `keep_losses`, [(first row, per-sample losses)] per micro-batch."""
    n_local = local["input_ids"].shape[0]
    step_loss = torch.zeros((), device=accelerator.device)
    sample_losses = []
    for start in range(0, n_local, micro):
        batch = {k: (to_device(v[start:start + micro]) if v is not None else None) for k, v in local.items()}
        last = start + micro >= n_local
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            loss, token_loss, counted = forward_losses(model, batch["input_ids"], batch["attention_mask"],
                                                       batch["labels"], masked, scale, loss_impl, chunk_bytes,
                                                       compiled)
            accelerator.backward(loss)
        if keep_losses:
            sample_losses.append((start, per_sample_loss(token_loss.detach(), counted)))
        step_loss += loss.detach()
    return step_loss, sample_losses


def local_rows(batch: dict, rows: slice, masked: bool) -> dict:
    """This process's rows of the global batch. A causal LM's attention never looks right, so with padding only at
    the end of rows the mask changes nothing for real tokens (padding has no labels): it is dropped, which lets SDPA
    take its fast is_causal path."""
    local = {k: v[rows] for k, v in batch.items()}
    if not masked and right_padded(local["attention_mask"]):
        local["attention_mask"] = None
    return local


def make_step_batch(local: dict, weight: float, masked: bool) -> StepBatch:
    """The step's batch for the sleep hooks that use it, with the loop's own per-sample loss function; the
    zero-weight pass's stand-in row (more processes than rows) adds nothing."""
    keep = slice(None) if weight else slice(0, 0)
    attention = local["attention_mask"]
    return StepBatch(local["input_ids"][keep], attention[keep] if attention is not None else None,
                     local["labels"][keep], masked, functools.partial(sample_loss_from_logits, causal=not masked))


def progress_bar(plan: PhasePlan, show: bool):
    """The tqdm bar over the plan's steps; its title says when `train.max_steps` cut the schedule short."""
    from tqdm.auto import tqdm

    cut = plan.truncated
    return tqdm(total=plan.total_steps, disable=not show, dynamic_ncols=True,
                desc=(f"cut at max_steps: {cut['cycles_completed']}/{cut['cycles_planned']} cycles, "
                      f"{cut['wake_share']:.0%} of data") if cut else None)


def shard_rows(n_rows: int, rank: int, world: int) -> slice:
    """Process `rank`'s contiguous share of a global batch of `n_rows` (sizes differ by at most one)."""
    bounds = [(r * n_rows) // world for r in range(world + 1)]
    return slice(bounds[rank], bounds[rank + 1])


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host batch -> device; on GPU through pinned memory so the copy is asynchronous (no stall, no sync)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t


def right_padded(mask: torch.Tensor) -> bool:
    """True when every row is real tokens followed only by padding (how samples and replay contexts are laid out)."""
    return bool((mask[:, 1:] <= mask[:, :-1]).all())


def _gather_objects(items: list) -> list:
    from accelerate.utils import gather_object

    return gather_object(items)

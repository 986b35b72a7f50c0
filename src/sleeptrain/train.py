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
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sleeptrain.checkpoint import save_checkpoint
from sleeptrain.config import Config
from sleeptrain.data.corpus import load_corpus
from sleeptrain.data.grammar import generate_minimal_pairs, write_minimal_pairs
from sleeptrain.data.samples import IGNORE_INDEX, PackedBlocks, make_batcher, make_samples
from sleeptrain.data.token_store import get_token_stores
from sleeptrain.data.tokenizer import get_tokenizer
from sleeptrain.errors import ConfigError, DataError
from sleeptrain.fsutil import atomic_dir, atomic_write_text
from sleeptrain.losses import per_sample_loss, token_losses
from sleeptrain.lr_schedules import plan_lr_function
from sleeptrain.metrics import MetricsLog, environment_record
from sleeptrain.models import build_model, count_parameters, special_token_ids
from sleeptrain.phases import PhasePlan, Stage, build_plan
from sleeptrain.presets import config_to_yaml, flat_config
from sleeptrain.replay import BufferSamples, RepackedSamples, ScoreBook, select_buffer, sleep_order
from sleeptrain.sleep_ops import Importance, SleepContext, run_op
from sleeptrain.validation import validation_loss

PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


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


# --- set-up ---------------------------------------------------------------------------------------------------

def default_run_dir(cfg: Config) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.schedule.name}"


def prepare_run_dir(cfg: Config) -> Path:
    """Create the run folder; refuse one that already holds a run (nothing written is ever overwritten)."""
    run_dir = Path(cfg.run.dir) if cfg.run.dir else default_run_dir(cfg)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run.dir: {str(run_dir)!r} is a file")
    if (run_dir / "metrics.jsonl").exists() or (run_dir / "config.yaml").exists():
        raise ConfigError(f"run.dir: {str(run_dir)!r} already holds a run; choose another run.dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"run.dir: cannot write to {str(run_dir)!r} ({exc.strerror})") from None
    return run_dir


def check_trackers(trackers: list[str]) -> None:
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    available = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}
    for name in trackers:
        if not available[name]():
            raise ConfigError(f"train.trackers: {name} is not installed (pip install {name}, or drop it)")


def check_runtime(cfg: Config) -> None:
    """Settings that depend on this machine: device, precision, installed trackers."""
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda was asked for but no GPU is visible (use auto or cpu)")
    if cfg.train.precision == "fp16" and (cfg.train.device == "cpu" or not torch.cuda.is_available()):
        raise ConfigError("train.precision: fp16 needs a GPU; use bf16 on CPU")
    check_trackers(cfg.train.trackers)


def make_accelerator(cfg: Config, run_dir: Path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # Accelerate keeps precision/device in a per-process singleton; several runs in one process (library use,
    # comparisons) each get their own. The process-group state (multi-process launches) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    check_runtime(cfg)
    use_cpu = cfg.train.device == "cpu" or not torch.cuda.is_available()
    return Accelerator(cpu=use_cpu, mixed_precision=PRECISION[cfg.train.precision],
                       log_with=list(cfg.train.trackers) or None, project_dir=str(run_dir))


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW with decoupled weight decay; 1-D parameters (norm gains, biases) are not decayed by default."""
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.ndim >= 2 or cfg.train.decay_norms_and_biases else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2), eps=cfg.train.eps)


def make_plan(cfg: Config, n_samples: int) -> PhasePlan:
    sc = cfg.schedule
    if sc.n_cycles > n_samples:
        raise ConfigError(f"schedule.n_cycles: {sc.n_cycles} cycles but the training data has only {n_samples} "
                          f"samples of data.seq_len={cfg.data.seq_len} tokens")
    return build_plan(n_samples, cfg.train.batch_size, cfg.seed, passes=sc.epochs, n_cycles=sc.n_cycles,
                      sleep=cfg.sleep.has_sleep, replay_ratio=cfg.replay.ratio if cfg.sleep.replays else 0.0,
                      sleep_wake_ratio=sc.sleep_wake_ratio, replay_repeats=sc.replay_repeats,
                      sleep_after_last=sc.sleep_after_last, max_steps=cfg.train.max_steps)


def write_run_start(run_dir: Path, cfg: Config, presets: dict[str, str], overrides: list[str]) -> None:
    atomic_write_text(run_dir / "config.yaml", config_to_yaml(cfg))
    record = {"presets": presets, "overrides": overrides, **environment_record()}
    atomic_write_text(run_dir / "run.json", json.dumps(record, indent=1))


def write_demo_pairs(cfg: Config, run_dir: Path) -> Path | None:
    """For the generated corpus: the matching agreement minimal pairs, BLiMP format, beside the run."""
    if cfg.data.source != "generated":
        return None
    g = cfg.data.generated
    return write_minimal_pairs(generate_minimal_pairs(g.pairs_per_paradigm, g.seed), run_dir / "minimal_pairs")


def save_final(model, tokenizer, final_dir: Path, seq_len: int) -> None:
    """`save_pretrained` model (safetensors) + tokenizer: a folder the HF Auto classes load as it is."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer.model_max_length = seq_len
    with atomic_dir(final_dir, replace=True) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))


# --- the loop ---------------------------------------------------------------------------------------------------

class TrainingLoop:
    """Owns model, optimizer and counters for one run; `run()` walks the phase plan stage by stage."""

    def __init__(self, cfg: Config, run_dir: Path, accelerator, model, tokenizer, train_samples, dev_samples,
                 plan: PhasePlan, metrics: MetricsLog):
        self.cfg, self.run_dir, self.acc = cfg, run_dir, accelerator
        self.tokenizer, self.train_samples, self.dev_samples = tokenizer, train_samples, dev_samples
        self.plan, self.metrics = plan, metrics
        self.masked = cfg.model.is_masked_lm
        self.device = accelerator.device
        self.micro = cfg.train.micro_batch_size or cfg.train.batch_size
        self.lr_fn = plan_lr_function(plan, cfg.train, cfg.sleep)
        self.batcher = make_batcher(tokenizer, self.masked, cfg.model.mlm_probability, seed=cfg.seed)
        self.scores = ScoreBook(len(train_samples))
        self.importance = (Importance(model, cfg.sleep.importance, cfg.sleep.include_norms)
                           if "downscale" in cfg.sleep.ops else None)
        self.model, self.optimizer = accelerator.prepare(model, make_optimizer(model, cfg))
        self.step = 0
        self.tokens = 0
        self.stage: Stage | None = None
        self._interval_loss = torch.zeros((), device=self.device)
        self._interval_steps = self._interval_tokens = 0
        self._interval_start = time.time()
        self.first_val = self.last_val = float("nan")
        self.controller = Controller(cfg) if cfg.schedule.controller else None
        self.stopped_early = False
        self.blimp_pairs = None  # set by train() when periodic BLiMP evaluation is on
        from tqdm.auto import tqdm

        self.bar = tqdm(total=plan.total_steps, disable=not cfg.run.progress, dynamic_ncols=True)
        self.n_cycles_total = max((s.cycle for s in plan.stages), default=0) + 1

    # one optimizer step on the given inputs; `sample_ids` (or None) receive the per-sample losses as scores
    def train_step(self, ids: torch.Tensor, mask: torch.Tensor, sample_ids: np.ndarray | None) -> None:
        tc = self.cfg.train
        lr = self.lr_fn(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = [self.batcher(ids[i:i + self.micro], mask[i:i + self.micro]) for i in range(0, len(ids), self.micro)]
        n_label_tokens = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in batches) or 1
        step_loss = torch.zeros((), device=self.device)
        for i, batch in enumerate(batches):
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            last = i == len(batches) - 1
            with contextlib.nullcontext() if last else self.acc.no_sync(self.model):
                logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                token_loss, counted = token_losses(logits, batch["labels"], causal=not self.masked)
                loss = token_loss.sum() / n_label_tokens
                self.acc.backward(loss)
            if sample_ids is not None:
                self.scores.record(sample_ids[i * self.micro:(i + 1) * self.micro],
                                   per_sample_loss(token_loss.detach(), counted), self.stage.cycle, self.step)
            step_loss += loss.detach()
        n_tokens = int(mask.sum())  # counted on the host copy: no device sync
        self.tokens += n_tokens
        self._interval_tokens += n_tokens
        if self.importance is not None and self.stage.phase == "wake":
            self.importance.accumulate(self.acc.unwrap_model(self.model))
        if tc.clip_grad:
            self.acc.clip_grad_norm_(self.model.parameters(), tc.clip_grad)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._interval_loss += step_loss
        self._interval_steps += 1
        self.step += 1
        self.bar.update(1)
        self.after_step(lr)

    def after_step(self, lr: float) -> None:
        tc = self.cfg.train
        if self.step % tc.log_every == 0 or self.step == self.plan.total_steps or self._stage_ends_now():
            self.log_train(lr)
        if tc.eval_every and self.step % tc.eval_every == 0 and self.step != self.plan.total_steps:
            self.evaluate()
        if self.blimp_pairs and self.step % self.cfg.eval.blimp_every == 0:
            self.evaluate_blimp()
        if tc.checkpoint_every and self.step % tc.checkpoint_every == 0 and self.acc.is_main_process:
            save_checkpoint(self.run_dir, self.step, self.acc.unwrap_model(self.model), self.optimizer,
                            self.tokenizer, {"tokens": self.tokens, "seed": self.cfg.seed}, tc.checkpoint_keep)

    def _stage_ends_now(self) -> bool:
        return self.stage is not None and self.step == self.stage.end

    def log_train(self, lr: float) -> None:
        if not self._interval_steps:
            return
        loss = (self._interval_loss / self._interval_steps).item()  # the only host sync, once per log interval
        if not math.isfinite(loss):
            raise DataError(f"training loss became {loss} at step {self.step}; lower train.lr or check the data")
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

    # --- phases ---
    def run(self) -> None:
        self.evaluate()
        for stage in self.plan.stages:
            self.stage = stage
            self.bar.set_description(f"{stage.phase} {stage.cycle + 1}/{self.n_cycles_total}")
            if stage.phase == "wake":
                self.wake(stage)
            elif not self.sleep(stage):
                self.stopped_early = True
                break
        self.bar.close()
        self.scores.flush()
        if self.controller is not None:
            self.controller.finish(self)
        self.evaluate()

    def wake(self, stage: Stage) -> None:
        for offset in range(stage.steps):
            indices = self.plan.wake_indices(stage, offset)
            ids, mask = self.train_samples.get(indices)
            self.train_step(ids, mask, indices)

    def sleep(self, stage: Stage) -> bool:
        """One sleep phase. Returns False when the controller ends the run."""
        before, after = self.cfg.sleep.split_ops()
        if self.controller is not None:
            decision = self.controller.decide(self)
            if decision == "stop":
                return False
            before = [("deep_reset" if op == "optimizer_reset" and decision == "deep" else op) for op in before]
        self.metrics.write({"event": "sleep_start", "step": self.step, "tokens": self.tokens, "cycle": stage.cycle,
                            **self.choose_buffer(stage)})
        for op in before:
            self.run_sleep_op(op, stage)
        for offset in range(stage.steps):
            positions = self._sleep_positions[offset * self.cfg.train.batch_size:
                                              (offset + 1) * self.cfg.train.batch_size]
            ids, mask = self._sleep_source.get(positions)
            self.train_step(ids, mask, self._sleep_source.sample_ids(positions))
        for op in after:
            self.run_sleep_op(op, stage)
        self.metrics.write({"event": "sleep_end", "step": self.step, "tokens": self.tokens, "cycle": stage.cycle})
        return True

    def choose_buffer(self, stage: Stage) -> dict:
        """Select the replay buffer and lay out this sleep's batches (nothing to do without replay)."""
        self._sleep_source, self._sleep_positions = None, np.zeros(0, dtype=np.int64)
        if not stage.steps:
            return {"buffer_size": 0, "replay_score_mean": None, "candidate_score_mean": None}
        rng = np.random.default_rng([self.cfg.seed, 0x51EE9, stage.cycle])
        selection = select_buffer(self.scores, stage.buffer_size, stage.cycle, self.step, self.cfg.replay, rng)
        self.scores.mark_seen(selection.indices, self.step)
        if self.cfg.replay.context_augment:
            source = RepackedSamples(self.train_samples, selection.indices, self.tokenizer.pad_token_id, rng,
                                     doc_start_id=self.tokenizer.bos_token_id, doc_end_id=self.tokenizer.eos_token_id)
        else:
            source = BufferSamples(self.train_samples, selection.indices)
        self._sleep_source = source
        self._sleep_positions = sleep_order(len(source), stage.steps * self.cfg.train.batch_size, rng)
        return {"buffer_size": int(selection.indices.size), "contexts": len(source),
                "replay_score_mean": selection.replay_score_mean,
                "candidate_score_mean": selection.candidate_score_mean,
                "candidates": int(self.scores.candidates().size), "strategy": self.cfg.replay.strategy}

    def run_sleep_op(self, name: str, stage: Stage) -> None:
        ctx = SleepContext(self.model, self.optimizer, self.cfg, stage.cycle, accelerator=self.acc,
                           make_optimizer=lambda m: make_optimizer(m, self.cfg), importance=self.importance)
        changed = run_op(name, ctx)
        self.model, self.optimizer = ctx.model, ctx.optimizer
        self.metrics.write({"event": "sleep_op", "op": name, "step": self.step, "cycle": stage.cycle, **changed})


class Controller:
    """FORGETTER's adaptive controller. After each cycle: evaluate; while val loss improves by >= `criteria`, keep
    light sleeps (optimizer reset); when it stops improving, roll back to the best weights and switch to deep
    sleeps; stop when a deep sleep fails to improve. Every decision is logged as `event: "controller"`."""

    def __init__(self, cfg: Config):
        self.criteria = cfg.schedule.criteria
        self.mode = "light"
        self.best_loss = float("inf")
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_step = 0

    def decide(self, loop: TrainingLoop) -> str:
        loss = loop.evaluate()
        improved = loss <= self.best_loss - self.criteria
        model = loop.acc.unwrap_model(loop.model)
        if improved:
            self.best_loss, self.best_step = loss, loop.step
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            decision = self.mode
        elif self.mode == "light":
            self._roll_back(model)
            self.mode = decision = "deep"
        else:
            self._roll_back(model)
            decision = "stop"
        loop.metrics.write({"event": "controller", "step": loop.step, "cycle": loop.stage.cycle, "val_loss": loss,
                            "best_val_loss": self.best_loss, "best_step": self.best_step, "improved": improved,
                            "decision": decision})
        return decision

    def _roll_back(self, model: torch.nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def finish(self, loop: TrainingLoop) -> None:
        """At the end of the run keep the best weights seen at a cycle boundary, if better than the last."""
        loss = loop.evaluate()
        if self.best_state is not None and loss > self.best_loss:
            self._roll_back(loop.acc.unwrap_model(loop.model))
            loop.metrics.write({"event": "controller", "step": loop.step, "decision": "final_rollback",
                                "val_loss": loss, "best_val_loss": self.best_loss, "best_step": self.best_step})


# --- entry point ----------------------------------------------------------------------------------------------------

def train(cfg: Config, presets: dict[str, str] | None = None, overrides: list[str] | None = None) -> RunResult:
    from accelerate.utils import set_seed

    t_start = time.time()
    # everything that can fail on the user's data or settings happens before the run folder exists
    check_runtime(cfg)
    corpus = load_corpus(cfg.data)
    if cfg.eval.blimp_path:
        from sleeptrain.evaluate.minimal_pairs import load_minimal_pairs

        # a bad path or file fails now, not after training
        load_minimal_pairs(cfg.eval.blimp_path, max_per_paradigm=1, key="eval.blimp_path")
    set_seed(cfg.seed)
    tokenizer = get_tokenizer(cfg.tokenizer, corpus, cfg.data, need_mask=cfg.model.is_masked_lm)
    stores = get_token_stores(corpus, tokenizer, cfg.data)
    if stores["train"].n_tokens < cfg.data.seq_len:
        raise DataError(f"data: the training split has {stores['train'].n_tokens} tokens, fewer than "
                        f"data.seq_len={cfg.data.seq_len}")
    train_samples = make_samples(stores["train"], cfg.data.seq_len, tokenizer.pad_token_id, cfg.data.packing,
                                 cfg.data.windows, cfg.seed)
    dev_samples = PackedBlocks(stores["dev"], cfg.data.seq_len, tokenizer.pad_token_id)
    plan = make_plan(cfg, len(train_samples))

    run_dir = prepare_run_dir(cfg)
    write_run_start(run_dir, cfg, presets or {}, overrides or [])
    pairs_dir = write_demo_pairs(cfg, run_dir)
    accelerator = make_accelerator(cfg, run_dir)

    set_seed(cfg.seed)
    model = build_model(cfg.model, len(tokenizer), cfg.data.seq_len, special_token_ids(tokenizer))
    params = count_parameters(model)
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    metrics.write({"event": "start", "steps": plan.total_steps, "samples": len(train_samples),
                   "train_tokens": stores["train"].n_tokens, "dev_tokens": stores["dev"].n_tokens,
                   "parameters": params["total"], "non_embedding_parameters": params["non_embedding"],
                   "vocab_size": len(tokenizer), "corpus": corpus.description, "notes": corpus.notes,
                   "stages": [[s.phase, s.cycle, s.start, s.steps] for s in plan.stages]})
    if cfg.train.trackers:
        accelerator.init_trackers("sleeptrain", config=flat_config(cfg))

    blimp_path = Path(cfg.eval.blimp_path) if cfg.eval.blimp_path else pairs_dir
    loop = TrainingLoop(cfg, run_dir, accelerator, model, tokenizer, train_samples, dev_samples, plan, metrics)
    if cfg.eval.blimp_every and blimp_path:
        from sleeptrain.evaluate.minimal_pairs import load_minimal_pairs

        loop.blimp_pairs = load_minimal_pairs(blimp_path, cfg.eval.blimp_n)
    try:
        loop.run()
    finally:
        loop.bar.close()
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
               "parameters": params, "final_dir": str(final_dir),
               "minimal_pairs": str(pairs_dir) if pairs_dir else None}
    if eval_results:
        if "blimp" in eval_results:
            summary["blimp_overall"] = eval_results["blimp"]["overall"]
        if "perplexity" in eval_results:
            summary["dev_ppl"] = eval_results["perplexity"]["overall"]["ppl"]
    metrics.write({"event": "end", **summary})
    metrics.close()
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    if cfg.run.plot and accelerator.is_main_process:
        from sleeptrain.plot import plot_runs

        plot_runs([run_dir], run_dir / "loss.png")
    if cfg.train.trackers:
        accelerator.end_training()
    return RunResult(run_dir, final_dir, loop.step, loop.tokens, seconds, loop.first_val, loop.last_val,
                     loop.stopped_early, eval_results)


def final_evaluation(cfg: Config, model, tokenizer, final_dir: Path, blimp_path: Path | None, corpus) -> dict:
    """BLiMP-style accuracy (when minimal pairs are known) and dev perplexity of the final model, written to
    `final/eval/results.json` exactly as `sleeptrain eval final/` would."""
    from sleeptrain.config import EvalCommandConfig
    from sleeptrain.evaluate.minimal_pairs import load_minimal_pairs
    from sleeptrain.evaluate.runner import LoadedModel, evaluate_model

    opts = EvalCommandConfig(batch_size=cfg.eval.batch_size)
    opts.blimp.method = cfg.eval.method
    was_training = model.training
    model.eval()
    pairs = load_minimal_pairs(blimp_path) if blimp_path else None
    lines = (corpus.splits["dev"], f"dev split of {corpus.description}")
    results, _ = evaluate_model(LoadedModel(model, tokenizer, cfg.model.is_masked_lm, final_dir), opts, pairs,
                                lines, str(blimp_path) if blimp_path else None, seq_len=cfg.data.seq_len)
    model.train(was_training)
    atomic_write_text(final_dir / "eval" / "results.json", json.dumps(results, indent=1))
    return results


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

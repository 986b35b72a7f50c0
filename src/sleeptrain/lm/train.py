"""`sleeptrain train`: set a run up, hand it to the training loop (`sleeptrain.lm.loop`), write its outputs.

Everything that can fail on the user's data or settings happens before the run folder exists; a resumed run
continues from its newest checkpoint exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sleeptrain.config import Config
from sleeptrain.errors import ConfigError
from sleeptrain.fsutil import RunLock, atomic_write_text
from sleeptrain.lm import trainer_state
from sleeptrain.lm.phases import describe_truncation
from sleeptrain.lm.attention import resolve_attention
from sleeptrain.lm.compiling import resolve_compile
from sleeptrain.lm.precision import resolve_precision
from sleeptrain.lm.loop import RunInterrupted, TrainingLoop
from sleeptrain.lm.guards import TrainingDiverged  # noqa: F401  (re-exported)
from sleeptrain.lm.metrics_log import MetricsLog, code_version, rewind_metrics
from sleeptrain.lm.models import build_model, count_parameters, special_token_ids
from sleeptrain.lm.run_setup import (check_new_run_dir, check_processes, check_runtime, default_run_dir,
                                     final_evaluation, load_run_data, make_accelerator, prepare_run_dir,
                                     save_final, write_demo_pairs, write_run_start)
from sleeptrain.presets import config_to_yaml, flat_config
from sleeptrain.sleep.registry import check_config


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

# --- entry point ----------------------------------------------------------------------------------------------------

def train(cfg: Config, presets: dict[str, str] | None = None, overrides: list[str] | None = None,
          resume_from: Path | None = None) -> RunResult:
    """Run `cfg` into a new run folder, or continue the run that checkpoint `resume_from` belongs to."""
    from accelerate import PartialState
    from accelerate.utils import set_seed

    t_start = time.time()
    check_config(cfg)  # the registry checks (a Config built in Python has not met them), before anything is read
    # the process group (accelerate launch / torchrun; gloo on CPU), or a single process
    state = PartialState(cpu=cfg.train.device == "cpu" or not torch.cuda.is_available())
    # everything that can fail on the user's data or settings happens before the run folder exists
    check_runtime(cfg)
    data = load_run_data(cfg, state)
    corpus, tokenizer, stores, train_samples, dev_samples, plan = (
        data.corpus, data.tokenizer, data.stores, data.train_samples, data.dev_samples, data.plan)
    check_processes(cfg, state.num_processes)
    babylm_guard(cfg, plan, stores["train"].n_tokens, state.is_main_process)
    if state.is_main_process:
        for note in corpus.notes:  # e.g. an empty source file, a dev split held out of train
            print(f"sleeptrain: note: {note}", file=sys.stderr, flush=True)

    if resume_from is None:
        run_dir = Path(cfg.run.dir) if cfg.run.dir else default_run_dir(cfg)
        check_new_run_dir(run_dir)
        state.wait_for_everyone()
        lock = None
        if state.is_main_process:
            prepare_run_dir(run_dir)
            lock = RunLock(run_dir).acquire()  # one writer per run folder, held until the run returns
            try:
                check_new_run_dir(run_dir)     # another writer may have started (and finished) in between
            except ConfigError:
                lock.release()
                raise
            write_run_start(run_dir, cfg, presets or {}, overrides or [])
            write_demo_pairs(cfg, run_dir)
        state.wait_for_everyone()
    else:
        run_dir = Path(resume_from).parent.parent
        lock = RunLock(run_dir).acquire() if state.is_main_process else None
        if lock is not None and (run_dir / "summary.json").is_file():  # a concurrent resume finished it meanwhile
            lock.release()
            raise ConfigError(f"resume: {str(run_dir)!r} already finished; nothing to resume")
    try:
        pairs_dir = run_dir / "minimal_pairs" if cfg.data.source == "generated" else None
        on_cuda = cfg.train.device != "cpu" and torch.cuda.is_available()
        # what the run chose when it started (precision, attention kernel, compile): a resume keeps it
        started = saved_state(resume_from) if resume_from else None
        precision, precision_note = resolve_precision(cfg.train.precision, on_cuda,
                                                      started.get("precision") if started else None)
        accelerator = make_accelerator(cfg, run_dir, precision)
        if accelerator.is_main_process and (cfg.train.precision == "auto" or precision_note.startswith("warning")):
            print(f"sleeptrain: {'' if precision_note.startswith('warning') else 'note: '}{precision_note}",
                  file=sys.stderr, flush=True)

        set_seed(cfg.seed)
        model = build_model(cfg.model, len(tokenizer), cfg.data.seq_len, special_token_ids(tokenizer))
        params = count_parameters(model)
        attention, attention_note = resolve_attention(cfg.train.attention, precision, on_cuda,
                                                      started.get("attention", "sdpa") if started is not None else None)
        model.set_attn_implementation(attention)
        metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=accelerator.is_main_process)
        compiled, compile_note = resolve_compile(cfg.train.compile, plan.total_steps, on_cuda,
                                                 started.get("compiled", False) if started is not None else None)
        if accelerator.is_main_process and compiled and cfg.train.compile == "auto":
            print(f"sleeptrain: note: {compile_note}", file=sys.stderr, flush=True)
        loop = TrainingLoop(cfg, run_dir, accelerator, model, tokenizer, train_samples, dev_samples, plan, metrics,
                            compiled=compiled, started_at=t_start)
        loop.precision, loop.attention = precision, attention
        if resume_from is None:
            metrics.write({"event": "start", "steps": plan.total_steps, "samples": len(train_samples),
                           "train_tokens": stores["train"].n_tokens, "dev_tokens": stores["dev"].n_tokens,
                           "parameters": params["total"], "non_embedding_parameters": params["non_embedding"],
                           "vocab_size": len(tokenizer), "corpus": corpus.description, "notes": corpus.notes,
                           "processes": accelerator.num_processes,
                           "stages": [[s.phase, s.cycle, s.start, s.steps] for s in plan.stages],
                           "truncated": plan.truncated, "precision": precision,
                           "precision_note": precision_note, "compiled": compiled, "compile_note": compile_note,
                           "attention": attention, "attention_note": attention_note})
            if plan.truncated and accelerator.is_main_process:
                print(f"sleeptrain: note: {describe_truncation(plan.truncated)}", file=sys.stderr, flush=True)
        else:
            saved = trainer_state.restore(loop, resume_from)
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

            loop.evaluator.blimp_pairs = load_minimal_pairs(blimp_path, cfg.eval.blimp_n)
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
            try:
                save_final(accelerator.unwrap_model(loop.model), tokenizer, final_dir, cfg.data.seq_len)
            except KeyboardInterrupt:
                raise RunInterrupted(f"interrupted while saving the final model after step {loop.step} (all "
                                     f"training done); the newest checkpoint is {loop.last_checkpoint}: resume "
                                     f"with sleeptrain train resume={run_dir}") from None
            if cfg.eval.final:
                try:
                    eval_results = final_evaluation(cfg, accelerator.unwrap_model(loop.model), tokenizer,
                                                    final_dir, blimp_path, corpus)
                except KeyboardInterrupt:
                    raise RunInterrupted(f"interrupted during the final evaluation; training finished and the "
                                         f"model is saved in {final_dir}; evaluate it with: sleeptrain eval "
                                         f"{final_dir}") from None
        seconds = loop.elapsed()  # all sessions of a resumed run; `session_seconds`: this one's
        summary = {"steps": loop.step, "planned_steps": plan.total_steps, "tokens": loop.tokens,
                   "words_seen": loop.words.words, "seconds": seconds, "session_seconds": time.time() - t_start,
                   "seconds_complete": loop.seconds_before is not None,
                   "first_val_loss": loop.evaluator.first_val, "final_val_loss": loop.evaluator.last_val,
                   "final_val_ppl": math.exp(min(loop.evaluator.last_val, 50.0)), "stopped_early": loop.stopped_early,
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
                from sleeptrain.lm.loss_plot import plot_runs

                plot_runs([run_dir], run_dir / "loss.png")
        if cfg.train.trackers:
            accelerator.end_training()
        accelerator.wait_for_everyone()
        return RunResult(run_dir, final_dir, loop.step, loop.tokens, seconds, loop.evaluator.first_val, loop.evaluator.last_val,
                         loop.stopped_early, eval_results, accelerator.is_main_process)
    finally:
        if lock is not None:
            lock.release()

def babylm_guard(cfg: Config, plan, train_tokens: int, is_main: bool) -> None:
    """BabyLM's strict tracks allow at most `babylm.max_epochs` passes over the training data: warn when the plan
    trains on more tokens than that, or refuse (`babylm.strict=true`) before anything is written."""
    planned = plan.total_steps * cfg.train.batch_size * cfg.data.seq_len
    epochs = planned / max(train_tokens, 1)
    if epochs <= cfg.babylm.max_epochs:
        return
    text = (f"the plan trains on {planned:,} token positions, {epochs:.1f} passes over the {train_tokens:,} training "
            f"tokens — more than babylm.max_epochs={cfg.babylm.max_epochs:g} (BabyLM's strict tracks)")
    if cfg.babylm.strict:
        raise ConfigError(f"babylm.strict: {text}; shorten the schedule or set babylm.strict=false")
    if is_main:
        print(f"sleeptrain: warning: {text}", file=sys.stderr, flush=True)


def saved_state(checkpoint: Path | None) -> dict:
    """A checkpoint's trainer_state.json ({} when absent or unreadable: load_checkpoint reports that)."""
    if checkpoint is None:
        return {}
    try:
        return json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def checkpoint_on_signals(loop: TrainingLoop):
    """SIGINT/SIGTERM ask the loop to checkpoint and stop after the current step; a second signal acts at once."""
    if not loop.cfg.checkpoint.enabled and loop.world == 1:
        yield
        return
    previous = {}

    def handler(signum, frame):
        loop.interrupt.signal = signum
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
                 f"{math.exp(min(result.final_val_loss, 50)):.2f}), first {result.first_val_loss:.4f} — the training "
                 f"objective on packed dev blocks, every token scored")
    ppl = (result.eval_results or {}).get("perplexity")
    if ppl and "masked" in ppl.get("kind", ""):
        lines.append("                      (the evaluation below reports masked-token pseudo-perplexity: another "
                     "quantity, not comparable with this one)")
    elif ppl:
        lines.append("                      (the evaluation's perplexity below leaves out document-start tokens, "
                     "which follow an end-of-text and are nearly free, so it is higher)")
    if result.eval_results:
        from sleeptrain.evaluate.harness import describe_results

        lines.append(f"  evaluation        : {result.final_dir / 'eval' / 'results.json'}")
        lines.extend("  " + line for line in describe_results(result.eval_results).splitlines())
    return "\n".join(lines)

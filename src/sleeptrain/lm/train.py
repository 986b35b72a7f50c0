"""`sleeptrain train`: set a run up, hand it to the training loop (`sleeptrain.lm.loop`), write its outputs.

Everything that can fail on the user's data or settings happens before the run folder exists; a resumed run
continues from its newest checkpoint exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sleeptrain.config import Config
from sleeptrain.errors import ConfigError
from sleeptrain.fsutil import RunLock, atomic_write_text
from sleeptrain.lm.phases import describe_truncation
from sleeptrain.lm.attention import resolve_attention
from sleeptrain.lm.compiling import resolve_compile
from sleeptrain.lm.precision import resolve_precision
from sleeptrain.lm.loop import RunInterrupted, TrainingLoop
from sleeptrain.lm.guards import TrainingDiverged  # noqa: F401  (re-exported)
from sleeptrain.lm.metrics_log import MetricsLog, code_version, rewind_metrics
from sleeptrain.lm.models import count_parameters, initial_model, special_token_ids
from sleeptrain.lm.progress import LoopState
from sleeptrain.lm.run_setup import (check_new_run_dir, check_processes, check_runtime, default_run_dir,
                                     describe_sources, resolve_threads, source_table,
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
    test_loss: float | None = None      # the test split's loss of the final model (None: the data has no test split)
    pre_end_ops: dict | None = None     # the model before the last sleep's end ops (summary.json's entry)

# --- entry point ----------------------------------------------------------------------------------------------------

def train(cfg: Config, presets: dict[str, str] | None = None, overrides: list[str] | None = None,
          resume_from: Path | None = None) -> RunResult:
    """Run `cfg` into a new run folder, or continue the run that checkpoint `resume_from` belongs to: set-up (data,
    run folder), the loop (`TrainingLoop.run`), then the outputs (final model, evaluation, summary, plot)."""
    t_start = time.time()
    check_config(cfg)  # the registry checks (a Config built in Python has not met them), before anything is read
    session = set_up(cfg, presets or {}, overrides or [], resume_from)
    try:
        loop, params = build_loop(session, t_start)
        with checkpoint_on_signals(loop):
            try:
                loop.run()
            finally:
                loop.bar.close()
                if loop.sample_log is not None:
                    loop.sample_log.close()
        return finish(session, loop, params, t_start)
    finally:
        if session.lock is not None:
            session.lock.release()


@dataclass
class Session:
    """What set-up hands to the loop and to the outputs: the config and how it was asked for, the process group,
    the data, the run folder (locked by process 0 until the run returns) and the minimal pairs to evaluate on."""

    cfg: Config
    presets: dict[str, str]
    overrides: list[str]
    resume_from: Path | None
    process: object          # accelerate.PartialState
    data: object             # run_setup.RunData
    run_dir: Path
    lock: RunLock | None
    pairs_dir: Path | None   # the generated data's minimal pairs, written into the run folder
    blimp_path: Path | None  # the pairs of the periodic and final evaluation


def set_up(cfg: Config, presets: dict[str, str], overrides: list[str], resume_from: Path | None) -> Session:
    """Everything that can fail on the user's data or settings, before the run folder exists; then the folder."""
    from accelerate import PartialState

    # the process group (accelerate launch / torchrun; gloo on CPU), or a single process
    process = PartialState(cpu=cfg.train.device == "cpu" or not torch.cuda.is_available())
    check_runtime(cfg)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", process.num_processes))
    torch.set_num_threads(resolve_threads(cfg.train.threads, local))  # in the start record; numbers depend on it
    data = load_run_data(cfg, process)
    check_processes(cfg, process.num_processes)
    babylm_guard(cfg, data.plan, data.stores["train"].n_tokens, process.is_main_process)
    sources = source_table(data.corpus, data.stores)
    if process.is_main_process:
        for note in data.corpus.notes:  # e.g. an empty source file, a dev split held out of train
            print(f"sleeptrain: note: {note}", file=sys.stderr, flush=True)
        for line in describe_sources(sources):  # every source the run reads, with its words and tokens (stdout:
            print(f"data: {line}", flush=True)   # stderr stays for warnings and the one-line errors)
    run_dir, lock = (open_new_run(cfg, process, presets, overrides, sources) if resume_from is None
                     else open_resumed_run(Path(resume_from), process))
    pairs_dir = run_dir / "minimal_pairs" if cfg.data.source == "generated" else None
    blimp_path = Path(cfg.eval.blimp_path) if cfg.eval.blimp_path else pairs_dir
    return Session(cfg, presets, overrides, resume_from, process, data, run_dir, lock, pairs_dir, blimp_path)


def open_new_run(cfg: Config, process, presets: dict[str, str], overrides: list[str],
                 sources: dict | None = None) -> tuple[Path, RunLock | None]:
    run_dir = Path(cfg.run.dir) if cfg.run.dir else default_run_dir(cfg)
    check_new_run_dir(run_dir)
    process.wait_for_everyone()
    lock = None
    if process.is_main_process:
        prepare_run_dir(run_dir)
        lock = RunLock(run_dir).acquire()  # one writer per run folder, held until the run returns
        try:
            check_new_run_dir(run_dir)     # another writer may have started (and finished) in between
        except ConfigError:
            lock.release()
            raise
        write_run_start(run_dir, cfg, presets, overrides, sources)
        write_demo_pairs(cfg, run_dir)
    process.wait_for_everyone()
    return run_dir, lock


def open_resumed_run(checkpoint: Path, process) -> tuple[Path, RunLock | None]:
    run_dir = checkpoint.parent.parent
    lock = RunLock(run_dir).acquire() if process.is_main_process else None
    if lock is not None and (run_dir / "summary.json").is_file():  # a concurrent resume finished it meanwhile
        lock.release()
        raise ConfigError(f"resume: {str(run_dir)!r} already finished; nothing to resume")
    return run_dir, lock


def say(accelerator, text: str) -> None:
    if accelerator.is_main_process:
        print(f"sleeptrain: {text}", file=sys.stderr, flush=True)


def build_loop(session: Session, t_start: float) -> tuple[TrainingLoop, dict]:
    """The accelerator, the model and the loop, with the run's choices (precision, attention kernel, compile:
    what a resumed run chose when it started), then the start record or the checkpoint restored."""
    from accelerate.utils import set_seed

    cfg, data = session.cfg, session.data
    on_cuda = cfg.train.device != "cpu" and torch.cuda.is_available()
    started = saved_state(session.resume_from) if session.resume_from else None
    precision, precision_note = resolve_precision(cfg.train.precision, on_cuda,
                                                  started.get("precision") if started else None)
    accelerator = make_accelerator(cfg, session.run_dir, precision)
    if cfg.train.precision == "auto" or precision_note.startswith("warning"):
        say(accelerator, f"{'' if precision_note.startswith('warning') else 'note: '}{precision_note}")
    set_seed(cfg.seed)
    model = initial_model(cfg.model, len(data.tokenizer), cfg.data.seq_len, special_token_ids(data.tokenizer))
    params = count_parameters(model)
    attention, attention_note = resolve_attention(cfg.train.attention, precision, on_cuda,
                                                  started.get("attention", "sdpa") if started is not None else None)
    model.set_attn_implementation(attention)
    metrics = MetricsLog(session.run_dir / "metrics.jsonl", enabled=accelerator.is_main_process)
    compiled, compile_note = resolve_compile(cfg.train.compile, data.plan.total_steps, on_cuda,
                                             started.get("compiled", False) if started is not None else None)
    if compiled and cfg.train.compile == "auto":
        say(accelerator, f"note: {compile_note}")
    state = LoopState(started_at=t_start, precision=precision, attention=attention, compiled=compiled)
    loop = TrainingLoop(cfg, session.run_dir, accelerator, model, data.tokenizer, data.train_samples,
                        data.dev_samples, data.plan, metrics, state, test_samples=data.test_samples)
    if session.resume_from is None:
        write_start_record(loop, session, params, {"precision_note": precision_note, "compile_note": compile_note,
                                                   "attention_note": attention_note})
    else:
        resume(loop, session)
    if cfg.train.trackers:
        accelerator.init_trackers("sleeptrain", config=flat_config(cfg))
    if cfg.eval.blimp_every and session.blimp_path:
        from sleeptrain.evaluate.minimal_pairs import load_minimal_pairs

        loop.evaluator.blimp_pairs = load_minimal_pairs(session.blimp_path, cfg.eval.blimp_n)
    return loop, params


def write_start_record(loop: TrainingLoop, session: Session, params: dict, notes: dict[str, str]) -> None:
    data, state, plan = session.data, loop.state, session.data.plan
    loop.metrics.write({
        "event": "start", "steps": plan.total_steps, "samples": len(data.train_samples),
        "train_tokens": data.stores["train"].n_tokens, "dev_tokens": data.stores["dev"].n_tokens,
        "parameters": params["total"], "non_embedding_parameters": params["non_embedding"],
        "vocab_size": len(data.tokenizer), "corpus": data.corpus.description, "notes": data.corpus.notes,
        "sources": source_table(data.corpus, data.stores),
        "processes": loop.world, "stages": [[s.phase, s.cycle, s.start, s.steps] for s in plan.stages],
        "truncated": plan.truncated, "precision": state.precision, "precision_note": notes["precision_note"],
        "compiled": state.compiled, "compile_note": notes["compile_note"], "attention": state.attention,
        "threads": torch.get_num_threads(),
        "attention_note": notes["attention_note"]})
    if plan.truncated:
        say(loop.acc, f"note: {describe_truncation(plan.truncated)}")


def resume(loop: TrainingLoop, session: Session) -> None:
    """Restore the checkpoint, make the allowed changes the run's config, rewind metrics.jsonl to the checkpoint."""
    saved = loop.restore(session.resume_from)
    main = loop.acc.is_main_process
    run_dir = session.run_dir
    if main:  # allowed changes (resume.allow_changes) become the run's config
        atomic_write_text(run_dir / "config.yaml", config_to_yaml(session.cfg))
    loop.metrics.close()
    moved = rewind_metrics(run_dir / "metrics.jsonl", saved["metrics_bytes"]) if main else 0
    loop.metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=main)
    loop.metrics.write({"event": "resume", "step": loop.state.step, "checkpoint": str(session.resume_from),
                        "superseded_records": moved, "processes": loop.world, "code_version": code_version(),
                        "overrides": session.overrides})


def finish(session: Session, loop: TrainingLoop, params: dict, t_start: float) -> RunResult:
    """The final model and its evaluation (process 0), the summary, the end record, the loss plot."""
    cfg, accelerator, state = session.cfg, loop.acc, loop.state
    final_dir = session.run_dir / "final"
    eval_results = save_final_outputs(session, loop, final_dir) if accelerator.is_main_process else None
    seconds = state.elapsed()  # all sessions of a resumed run; `session_seconds`: this one's
    summary = {"steps": state.step, "planned_steps": session.data.plan.total_steps, "tokens": state.tokens,
               "words_seen": state.words, "seconds": seconds, "session_seconds": time.time() - t_start,
               "seconds_complete": state.seconds_before is not None,
               "first_val_loss": state.first_val, "final_val_loss": state.last_val,
               "final_val_ppl": math.exp(min(state.last_val, 50.0)), "final_test_loss": state.final_test,
               "stopped_early": state.stopped_early,
               "parameters": params, "final_dir": str(final_dir), "processes": accelerator.num_processes,
               "resumed_from": str(session.resume_from) if session.resume_from else None,
               "minimal_pairs": str(session.pairs_dir) if session.pairs_dir else None}
    summary.update(headline(eval_results))
    if state.pre_end_ops is not None:  # the model before the last sleep's end ops, scored like the final one
        scored = pre_end_results(session, state) if accelerator.is_main_process else None
        summary["pre_end_ops"] = {**state.pre_end_ops, **headline(scored)}
    loop.metrics.write({"event": "end", **summary})
    loop.metrics.close()
    if accelerator.is_main_process:
        atomic_write_text(session.run_dir / "summary.json", json.dumps(summary, indent=1))
        if cfg.run.plot:
            from sleeptrain.lm.loss_plot import plot_runs

            plot_runs([session.run_dir], session.run_dir / "loss.png")
    if cfg.train.trackers:
        accelerator.end_training()
    accelerator.wait_for_everyone()
    return RunResult(session.run_dir, final_dir, state.step, state.tokens, seconds, state.first_val, state.last_val,
                     state.stopped_early, eval_results, accelerator.is_main_process, state.final_test,
                     summary.get("pre_end_ops"))


def headline(eval_results: dict | None) -> dict:
    """The summary's figures from an evaluation's results."""
    out = {}
    if eval_results and "blimp" in eval_results:
        out["blimp_overall"] = eval_results["blimp"]["overall"]
    if eval_results and "overall" in eval_results.get("perplexity", {}):
        out["dev_ppl"] = eval_results["perplexity"]["overall"]["ppl"]
    return out


def pre_end_results(session: Session, state: LoopState) -> dict | None:
    """The final evaluation of the pre-end-ops model folder (written by process 0 before the last ops), or None
    without `eval.final`."""
    folder = Path(state.pre_end_ops["dir"])
    if not session.cfg.eval.final or not (folder / "config.json").is_file():
        return None
    from sleeptrain.evaluate.harness import load_model_folder

    loaded = load_model_folder(folder, "cpu" if session.cfg.train.device == "cpu" else "auto")
    return final_evaluation(session.cfg, loaded.model, loaded.tokenizer, folder, session.blimp_path,
                            session.data.corpus)


def save_final_outputs(session: Session, loop: TrainingLoop, final_dir: Path) -> dict | None:
    """final/ (model + tokenizer) and, with `eval.final`, its evaluation; an interrupt here says what is kept."""
    cfg, model, tokenizer = session.cfg, loop.acc.unwrap_model(loop.model), session.data.tokenizer
    try:
        save_final(model, tokenizer, final_dir, cfg.data.seq_len)
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted while saving the final model after step {loop.state.step} (all training "
                             f"done); the newest checkpoint is {loop.state.last_checkpoint}: resume with sleeptrain "
                             f"train resume={session.run_dir}") from None
    if not cfg.eval.final:
        return None
    try:
        return final_evaluation(cfg, model, tokenizer, final_dir, session.blimp_path, session.data.corpus)
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted during the final evaluation; training finished and the model is saved "
                             f"in {final_dir}; evaluate it with: sleeptrain eval {final_dir}") from None

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
    if result.test_loss is not None:
        lines.append(f"  test loss         : {result.test_loss:.4f} — the same measure on the test split (for "
                     f"verdicts: nothing selects on it)")
    pre = result.pre_end_ops
    if pre:
        test = f", test {pre['test_loss']:.4f}" if pre.get("test_loss") is not None else ""
        lines.append(f"  before end ops    : validation {pre['val_loss']:.4f}{test} at step {pre['step']}, just before "
                     f"the last sleep's end ops ({pre['dir']})")
    if result.eval_results:
        from sleeptrain.evaluate.harness import describe_results

        lines.append(f"  evaluation        : {result.final_dir / 'eval' / 'results.json'}")
        lines.extend("  " + line for line in describe_results(result.eval_results).splitlines())
    return "\n".join(lines)

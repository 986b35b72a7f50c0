"""`sleeptrain eval MODEL_DIR`: every registered evaluation task (`evaluate/tasks.py`; BLiMP-style minimal pairs and
perplexity built in) on any Hugging Face causal or masked LM folder.

The folder may come from sleeptrain (`RUN_DIR/final`: defaults for the minimal pairs and the perplexity data are
taken from the run) or from any plain `save_pretrained`. Models are loaded in float32 from local files only, with no
remote code, and scored in float32 whatever precision they were trained in.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sleeptrain.errors import ConfigError, DataError
from sleeptrain.evaluate import task_blimp, task_perplexity  # noqa: F401  (the built-in tasks register, in order)
from sleeptrain.evaluate import task_babylm  # noqa: F401  (the BabyLM pipeline's zero-shot tasks: off unless asked)
from sleeptrain.evaluate.model_folder import (MASKED_MODEL_TYPES, is_masked_lm_config,  # noqa: F401  (re-exported)
                                              load_model_folder)
from sleeptrain.evaluate.tasks import (BUILT_IN, EvalTask, LoadedModel, TaskContext, run_config_of,  # noqa: F401
                                       task_classes)
from sleeptrain.fsutil import atomic_write_text

def evaluate_model(loaded: LoadedModel, opts, data: dict[str, Any], seq_len: int | None = None,
                   tasks: dict[str, EvalTask] | None = None) -> tuple[dict, dict[str, EvalTask]]:
    """Results dict of an already loaded model on `data` (task name -> what the task's `prepare` found), every
    registered task in order; also the task objects that ran (their `write_files`, BLiMP's raw scores)."""
    start = time.time()
    tasks = tasks if tasks is not None else {cls.name: cls() for cls in task_classes()}
    ctx = TaskContext(opts, loaded.path, seq_len=seq_len)
    results: dict[str, Any] = {"model": str(loaded.path), "model_type": "masked" if loaded.masked else "causal",
                               "precision": "float32"}
    for name, task in tasks.items():
        if data.get(name):
            results[name] = task.run(loaded, getattr(opts, name), data[name], ctx)
    results["seconds"] = time.time() - start
    return results, tasks


def evaluate_in_run(loaded: LoadedModel, opts, preloaded: dict[str, Any], seq_len: int | None = None) -> dict:
    """A training run's final evaluation: the built-in tasks on the data the run holds (`preloaded`; a built-in task
    without data there does not run, as before), every task registered from outside as its `prepare` finds its data
    — a task that finds none, or refuses its options, is recorded as skipped with the reason and named on stderr
    (the run has trained; its end is no place to fail)."""
    import sys

    ctx = TaskContext(opts, loaded.path, seq_len=seq_len)
    data, skipped = dict(preloaded), {}
    for cls in task_classes():
        options = getattr(opts, cls.name)
        if cls.name in BUILT_IN or cls.name in data or not options.enabled:
            continue
        try:
            data[cls.name] = cls().prepare(options, ctx)
        except (ConfigError, DataError) as exc:
            data[cls.name], skipped[cls.name] = None, str(exc)
        if not data[cls.name]:
            skipped.setdefault(cls.name, "nothing to score")
            print(f"final evaluation: task {cls.name} skipped: {skipped[cls.name]}", file=sys.stderr)
    results, _ = evaluate_model(loaded, opts, data, seq_len=seq_len)
    for name, reason in skipped.items():
        results[name] = {"skipped": reason}
    return results


def results_name(opts, data: dict[str, Any]) -> str:
    """The default results file of an evaluation, named from what it scores: `results-blimp-DIR-perplexity-dev.json`
    (each task with data, its data folder's name or split, a pair cap when set) — another evaluation of the same model
    gets another file, and a training run's own `results.json` is never the default."""
    import re

    parts = []
    for name, found in data.items():
        if not found:
            continue
        options = getattr(opts, name)
        if name == "blimp":
            parts += ["blimp", Path(found[1]).name] + ([f"max{options.max_pairs}"] if options.max_pairs else [])
        elif name == "perplexity":
            parts += ["perplexity", options.split]
        elif name == "babylm":
            parts += ["babylm", options.suite]
        else:
            parts.append(name)
    return "results-" + re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)) + ".json"


def check_output(out: Path, overwrite: bool) -> None:
    """Before any scoring: the results file may be written, and does not hold an earlier evaluation (unless
    `overwrite`)."""
    import tempfile

    if out.exists() and not overwrite:
        raise ConfigError(f"out: {str(out)!r} exists (an earlier evaluation); give out=ANOTHER_FILE, or "
                          "overwrite=true to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(f"out: cannot write {str(out)!r} ({exc.strerror or exc}); give out=PATH in a writable "
                          "folder") from None


def run_eval(model_dir: str | Path, opts) -> tuple[dict, Path]:
    """The `sleeptrain eval` command: load, let every enabled task find its data and check the results file (all
    user errors before any scoring), score, write the results JSON (and the tasks' extra files); results that cannot
    be written after all are printed to stdout before the error."""
    loaded = load_model_folder(model_dir, opts.device)
    ctx = TaskContext(opts, loaded.path)
    tasks = {cls.name: cls() for cls in task_classes()}
    data, skipped = {}, {}
    for name, task in tasks.items():
        options = getattr(opts, name)
        if options.enabled:
            data[name] = task.prepare(options, ctx)
            if not data[name]:
                skipped[name] = getattr(task, "skipped", "nothing to score")
    if not any(data.values()):
        raise ConfigError("perplexity.path: nothing to evaluate (give blimp.path and/or perplexity.path, or "
                          "suite=babylm-full data=EVALUATION_DATA)")
    out = Path(opts.out) if opts.out else loaded.path / "eval" / results_name(opts, data)
    check_output(out, opts.overwrite)
    results, tasks = evaluate_model(loaded, opts, data, tasks=tasks)
    for name, reason in skipped.items():
        results[name] = {"skipped": reason}
    try:
        atomic_write_text(out, json.dumps(results, indent=1))
    except OSError as exc:
        print(json.dumps(results, indent=1))
        raise DataError(f"out: cannot write {str(out)!r} ({exc.strerror or exc}); the results are printed above") from None
    for name, task in tasks.items():
        if data.get(name):
            task.write_files(out, getattr(opts, name))
    return results, out


def describe_results(results: dict) -> str:
    lines = []
    blimp = results.get("blimp")
    if blimp:
        lines.append(f"minimal pairs: {blimp['overall']:.1%} overall ({blimp['pairs']:,} pairs, "
                     f"{blimp['paradigms']} paradigms, ties {blimp['tie_rate']:.2%}, half a point each)")
        for name, v in blimp["by_phenomenon"].items():
            lines.append(f"  {name:<40} {v['accuracy']:.1%}  ({v['n']} pairs)")
    babylm = results.get("babylm")
    if babylm and "datasets" in babylm:
        from sleeptrain.evaluate.task_babylm import describe

        lines += describe(babylm)
    ppl = results.get("perplexity")
    if ppl and "overall" in ppl:
        lines.append(f"perplexity ({ppl['split']}): {ppl['overall']['ppl']:.2f} over {ppl['overall']['tokens']:,} "
                     f"tokens; {ppl['kind']}")
        for name, v in ppl["by_source"].items():
            lines.append(f"  {name:<40} {v['ppl']:.2f}")
    return "\n".join(lines)

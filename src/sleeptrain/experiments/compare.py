"""`sleeptrain compare`: several arms x several seeds at one token budget, resumable, then a report.

    sleeptrain compare epochs sleep_strict seeds=3 model=tiny data=babylm data.path=...
    sleeptrain compare baseline=schedule=epochs,schedule.epochs=2 strict=schedule=sleep_strict seeds=3
    sleeptrain compare arms.yaml

Words on the command line:
- `NAME` (no `=`): a schedule preset as an arm named after it; `FILE.yaml`: arms (and settings) from a file;
- `NAME=o1,o2,...` where NAME is not a config key: an arm with its own overrides (group=preset or key=value,
  comma-separated; brackets keep lists together: `sleep.ops=[replay,downscale]`);
- `seeds=N`, `budget.tokens=T`, `budget.natural=ARM,...`, `priority=ARM,...`, `dir=EXP_DIR`, `parallel=P`,
  `verdict.model=final|pre_end_ops` (which model of a run the verdicts score; `experiments/report.py`): the
  experiment. Runs go seed by seed (seed 0 of every arm, then seed 1, ...) so a partial experiment is already paired;
  with `priority`, every seed of the named arms runs before the other arms start (the core of a study first);
- any other `group=preset` / `key=value`: common to every arm.

**Budget accounting.** The budget counts token positions through the model — `train.batch_size x data.seq_len`
per optimizer step, wake and replay alike (padding included, so every arm processes the same number of positions
to within one batch). Each arm gets `train.max_steps = budget / (batch x seq_len)`; an arm whose schedule is shorter
than that gets more passes (`schedule.epochs`), which the summary notes. Without `budget.tokens`, the budget is the
first arm's natural length. Real (non-padding) tokens are reported too. Arms named in `budget.natural` (a floor
such as `single_pass`) keep their natural length and stay off the budget; the summary says so.

**Resuming and extending.** Re-running into the same `dir=` skips finished runs and resumes interrupted ones. The
folder also takes the same experiment with arms added (same common settings, every earlier arm with its overrides,
the same budget): the new arms' runs join the finished ones. Anything else is refused with a one-line error.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import threading
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from sleeptrain.errors import ConfigError
from sleeptrain.experiments.tuning import (TUNE_SETTINGS, TuneSpec, apply_tune_settings, arm_grid, arm_trials,
                                           check_grid, choose, parse_tune_block, trial_dir, trials, value_word,
                                           write_tuning)
from sleeptrain.fsutil import timestamp, timestamped_dir
from sleeptrain.presets import GROUPS, all_keys, load_yaml, list_presets, load_config

EXPERIMENT_KEYS = ("seeds", "budget.tokens", "budget.natural", "priority", "dir", "parallel", "verdict.model")
# what an arms file may hold at its top level and in its sections (a misspelt key is an error, not ignored)
ARMS_FILE_KEYS = ("arms", "common", "tune", "seeds", "dir", "parallel", "priority", "budget", "verdict")
ARMS_FILE_SECTIONS = {"budget": ("tokens", "natural"), "verdict": ("model",)}


@dataclass
class Arm:
    name: str
    overrides: list[str]


@dataclass
class Experiment:
    arms: list[Arm]
    common: list[str] = field(default_factory=list)
    seeds: int = 3
    budget_tokens: int | None = None
    natural: list[str] = field(default_factory=list)  # arms kept at their natural length (off the budget)
    priority: list[str] = field(default_factory=list)  # arms whose every seed runs before the others start
    dir: Path | None = None
    parallel: int = 1
    verdict_model: str = "final"  # which model of a run the verdicts score: final | pre_end_ops (report.py)
    tune: TuneSpec | None = None  # symmetric tuning (experiments/tuning.py); None: the arms run as given


def split_overrides(text: str) -> list[str]:
    """Split `a=1,b=[x,y],model=tiny` at commas outside brackets."""
    out, depth, current = [], 0, ""
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(current)
            current = ""
        else:
            current += ch
    if current:
        out.append(current)
    return [o.strip() for o in out if o.strip()]


def _is_config_word(key: str) -> bool:
    """A group or a key of the training config (a misspelt key under a known section counts too, so it fails
    as an unknown key instead of becoming an arm)."""
    return key in GROUPS or key.split(".")[0] in {k.split(".")[0] for k in all_keys()}


def parse_args(words: list[str], extra_file_keys: tuple[str, ...] = ()) -> Experiment:
    """An experiment from `sleeptrain compare` words. `extra_file_keys`: top-level keys an arms file may also hold
    for a tool built on compare (tools/lm_study.py: its study keys); compare reads none of them."""
    exp = Experiment(arms=[])
    settings: dict[str, str] = {}
    tune_words = [w for w in words if w.startswith("tune.")]
    for word in (w for w in words if not w.startswith("tune.")):
        if "=" not in word:
            if word.endswith((".yaml", ".yml")):
                _read_arms_file(Path(word), exp, settings, extra_file_keys)
            elif word in list_presets("schedule"):
                exp.arms.append(Arm(word, [f"schedule={word}"]))
            else:
                raise ConfigError(f"{word!r}: not a schedule preset ({', '.join(list_presets('schedule'))}) or an "
                                  "arms .yaml file; a named arm is NAME=overrides")
            continue
        key, value = word.split("=", 1)
        if key in EXPERIMENT_KEYS:
            settings[key] = value
        elif _is_config_word(key):
            exp.common.append(word)
        else:
            exp.arms.append(Arm(key, split_overrides(value)))
    _apply_settings(exp, settings)
    _apply_tune_words(exp, tune_words)
    names = [a.name for a in exp.arms]
    if len(names) < 2:
        raise ConfigError("compare: give at least two arms (schedule presets, NAME=overrides, or an arms .yaml)")
    if len(set(names)) != len(names):
        raise ConfigError(f"compare: arm names must differ, got {names}")
    for key, listed in (("budget.natural", exp.natural), ("priority", exp.priority)):
        unknown = [n for n in listed if n not in names]
        if unknown:
            raise ConfigError(f"{key}: {unknown} are not arms of this experiment (arms: {names})")
    if len(exp.natural) == len(names):
        raise ConfigError("budget.natural: at least one arm must be on the budget")
    for arm in exp.arms:  # every arm (and trial) must be a valid config: fails now, not after hours of the first arms
        load_config([*exp.common, *arm.overrides])
        for values in trials(arm_grid(exp.tune, arm.name)) if exp.tune else []:
            load_config([*exp.common, *arm.overrides, *(value_word(k, v) for k, v in values.items())])
    if exp.tune:
        for key, listed in (("tune.skip", exp.tune.skip), ("arms.*.tune", list(exp.tune.arm_keys))):
            unknown = [n for n in listed if n not in names]
            if unknown:
                raise ConfigError(f"{key}: {unknown} are not arms of this experiment (arms: {names})")
        if not any(arm_grid(exp.tune, n) for n in names):
            raise ConfigError("tune: no arm has keys to tune (give tune.KEY=[values] or a tune: block with keys)")
    return exp


def _apply_tune_words(exp: Experiment, words: list[str]) -> None:
    """`tune.KEY=[v1,v2]` (a grid key for every arm), `tune.seeds=[...]`, `tune.objective=...`, `tune.skip=...`,
    `tune.widen=N`;
    values read as every override is (`3e-3` is a number)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not words and exp.tune is None:
        return
    exp.tune = exp.tune or TuneSpec()
    settings = {}
    for word in words:
        key, _, value = word.partition("=")
        name = key.removeprefix("tune.")
        if not value:
            raise ConfigError(f"{key}: give a value ({key}=[v1,v2,...])")
        if name in TUNE_SETTINGS:
            settings[name] = value
        else:
            try:
                values = OmegaConf.to_container(OmegaConf.from_dotlist([f"values={value}"]))["values"]
            except OmegaConfBaseException:
                raise ConfigError(f"{key}: cannot parse value {value!r}") from None
            exp.tune.keys.update(check_grid("tune", {name: values}))
    apply_tune_settings(exp.tune, settings)


def check_arms_file_keys(path: Path, data: dict, extra: tuple[str, ...]) -> None:
    unknown = sorted(set(map(str, data)) - set(ARMS_FILE_KEYS) - set(extra))
    if unknown:
        raise ConfigError(f"compare: {path}: unknown keys {unknown}; an arms file holds "
                          f"{', '.join(ARMS_FILE_KEYS + tuple(extra))}")
    for section, allowed in ARMS_FILE_SECTIONS.items():
        if section in data and not isinstance(data[section], dict):
            raise ConfigError(f"compare: {path}: {section} must be a mapping of {', '.join(allowed)}")
        unknown = sorted(set(map(str, data.get(section) or {})) - set(allowed))
        if unknown:
            raise ConfigError(f"compare: {path}: unknown keys {unknown} under {section}; allowed: {', '.join(allowed)}")


def _read_arms_file(path: Path, exp: Experiment, settings: dict[str, str], extra_keys: tuple[str, ...] = ()) -> None:
    if not path.is_file():
        raise ConfigError(f"compare: arms file {str(path)!r} does not exist")
    data = load_yaml(path, "compare")
    check_arms_file_keys(path, data, extra_keys)
    arms = data.get("arms")
    if not isinstance(arms, dict) or not arms:
        raise ConfigError(f"compare: {path} needs `arms:` mapping arm names to lists of overrides")
    if "tune" in data:
        exp.tune = exp.tune or TuneSpec()
        parse_tune_block(data["tune"], exp.tune)
    for name, overrides in arms.items():
        if isinstance(overrides, dict):  # {overrides: [...], tune: {key: [values]}}
            unknown = sorted(set(overrides) - {"overrides", "tune"})
            if unknown:
                raise ConfigError(f"arms.{name}: unknown entries {unknown}; allowed: overrides, tune")
            if overrides.get("tune"):
                exp.tune = exp.tune or TuneSpec()
                exp.tune.arm_keys[str(name)] = check_grid(f"arms.{name}.tune", overrides["tune"])
            overrides = overrides.get("overrides") or []
        if isinstance(overrides, str):
            overrides = split_overrides(overrides)
        exp.arms.append(Arm(str(name), [str(o) for o in overrides or []]))
    exp.common.extend(str(o) for o in data.get("common", []) or [])
    budget, verdict = data.get("budget") or {}, data.get("verdict") or {}
    found = {**{k: data[k] for k in ("seeds", "dir", "parallel", "priority") if k in data},
             **{f"budget.{k}": budget[k] for k in ("tokens", "natural") if k in budget},
             **{f"verdict.{k}": verdict[k] for k in ("model",) if k in verdict}}
    for key, value in found.items():  # the command line's words win over the file's
        settings.setdefault(key, ",".join(map(str, value)) if isinstance(value, list) else str(value))


def _apply_settings(exp: Experiment, settings: dict[str, str]) -> None:
    def positive_int(key: str) -> int:
        try:
            value = int(float(settings[key]))
        except ValueError:
            raise ConfigError(f"{key}: expected a whole number, got {settings[key]!r}") from None
        if value <= 0:
            raise ConfigError(f"{key}: must be > 0, got {value}")
        return value

    if "seeds" in settings:
        exp.seeds = positive_int("seeds")
    if "budget.tokens" in settings:
        exp.budget_tokens = positive_int("budget.tokens")

    def names(key: str) -> list[str]:
        return [n.strip() for n in settings[key].strip("[]").split(",") if n.strip()]

    if "budget.natural" in settings:
        exp.natural = names("budget.natural")
    if "priority" in settings:
        exp.priority = names("priority")
    if "parallel" in settings:
        exp.parallel = positive_int("parallel")
    if "dir" in settings:
        exp.dir = Path(settings["dir"]).expanduser()
    if "verdict.model" in settings:
        from sleeptrain.experiments.records import VERDICT_MODELS

        if settings["verdict.model"] not in VERDICT_MODELS:
            raise ConfigError(f"verdict.model: {settings['verdict.model']!r} is not allowed; choose one of "
                              f"{', '.join(VERDICT_MODELS)}")
        exp.verdict_model = settings["verdict.model"]


# --- budget ---------------------------------------------------------------------------------------------------------

def arm_budgets(exp: Experiment) -> dict[str, dict]:
    """Per arm: positions per step, the natural plan length, and the overrides that put it on the budget."""
    from sleeptrain.lm.phases import truncate, truncation
    from sleeptrain.lm.run_setup import load_run_data

    info = {}
    for arm in exp.arms:
        cfg = load_config([*exp.common, *arm.overrides]).config
        data = load_run_data(cfg)
        per_step = cfg.train.batch_size * cfg.data.seq_len
        natural_steps = data.plan.total_steps
        info[arm.name] = {"positions_per_step": per_step, "natural_steps": natural_steps,
                          "epochs": cfg.schedule.epochs, "natural_positions": natural_steps * per_step,
                          "stages": data.plan.stages}
    on_budget = [arm for arm in exp.arms if arm.name not in exp.natural]
    budget = exp.budget_tokens or info[on_budget[0].name]["natural_positions"]
    for arm in exp.arms:
        a = info[arm.name]
        if arm.name in exp.natural:  # a floor: its own length, no cap, no extra passes
            a.pop("stages")
            a["steps"], a["budget_positions"] = a["natural_steps"], a["natural_positions"]
            a["budget_overrides"] = []
            a["note"] = (f"natural length ({a['natural_positions']:,} token positions), kept off the budget "
                         "(budget.natural)")
            continue
        a["steps"] = max(1, round(budget / a["positions_per_step"]))
        a["budget_positions"] = a["steps"] * a["positions_per_step"]
        extra = [f"train.max_steps={a['steps']}"]
        if a["natural_steps"] < a["steps"]:  # more passes, then the cap cuts the plan at the budget
            epochs = math.ceil(a["epochs"] * a["steps"] / a["natural_steps"])
            extra.append(f"schedule.epochs={epochs}")
            a["note"] = f"schedule.epochs raised from {a['epochs']} to {epochs} to reach the budget"
        stages = a.pop("stages")
        cut = truncation(stages, truncate(stages, a["steps"])) if a["natural_steps"] > a["steps"] else None
        if cut:
            a["truncated"] = cut
            a["note"] = (f"the budget cuts its schedule short: {cut['steps']} of {cut['planned_steps']} steps, "
                         f"{cut['cycles_completed']} of {cut['cycles_planned']} wake/sleep cycles complete, "
                         f"{cut['wake_share']:.0%} of its planned training data seen")
        a["budget_overrides"] = extra
    return {"budget_positions": budget, "arms": info}


# --- running --------------------------------------------------------------------------------------------------------

def run_dir_of(exp_dir: Path, arm: str, seed: int) -> Path:
    return exp_dir / "runs" / arm / f"seed{seed}"


def run_state(run_dir: Path) -> str:
    """finished | resumable | empty (never started, or died before its first checkpoint)."""
    from sleeptrain.lm.checkpoint import latest_checkpoint

    if (run_dir / "summary.json").is_file():
        return "finished"
    if latest_checkpoint(run_dir) is not None:
        return "resumable"
    return "empty"


def run_one(exp: Experiment, exp_dir: Path, arm: Arm, seed: int, budget: dict, log,
            recorded: frozenset = frozenset(), run_dir: Path | None = None) -> dict:
    run_dir = run_dir or run_dir_of(exp_dir, arm.name, seed)
    state = run_state(run_dir)
    if state == "finished":
        log(f"  {arm.name} seed {seed}: finished earlier, skipped")
        return {"arm": arm.name, "seed": seed, "status": "skipped"}
    if str(run_dir.relative_to(exp_dir)) in recorded and state == "empty":
        log(f"  {arm.name} seed {seed}: finished earlier (kept in the caller's records), skipped")
        return {"arm": arm.name, "seed": seed, "status": "skipped"}
    if state == "resumable":
        args = ["train", f"resume={run_dir}"]
    else:
        if run_dir.exists():  # a start that died before its first checkpoint: keep it aside, start again
            run_dir.rename(run_dir.with_name(f"{run_dir.name}.failed-{timestamp()}"))
        args = ["train", *exp.common, *arm.overrides, *budget["budget_overrides"], f"seed={seed}",
                f"run.dir={run_dir}", "run.progress=false"]
    log(f"  {arm.name} seed {seed}: {'resuming' if state == 'resumable' else 'training'} -> {run_dir}")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f"seed{seed}.log", "a") as out:
        proc = subprocess.run([sys.executable, "-m", "sleeptrain", *args], stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        tail = (run_dir.parent / f"seed{seed}.log").read_text().strip().splitlines()[-1:]
        raise ConfigError(f"compare: {arm.name} seed {seed} failed ({tail[0] if tail else proc.returncode}); "
                          f"log: {run_dir.parent / f'seed{seed}.log'}")
    return {"arm": arm.name, "seed": seed, "status": "resumed" if state == "resumable" else "trained"}


def job_order(exp: Experiment) -> list[tuple[Arm, int]]:
    """Seeds outer (early results are paired); the `priority` arms' seeds all before the other arms'."""
    first = [a for a in exp.arms if a.name in exp.priority]
    rest = [a for a in exp.arms if a.name not in exp.priority]
    return [(arm, seed) for group in (first, rest) for seed in range(exp.seeds) for arm in group]


def continuation_conflict(before: dict, record: dict, arms_may_drop: bool = False) -> str | None:
    """Why the experiment `record` cannot continue the saved one `before` (None when it can): the common settings and
    the token budget must match and every arm both name must keep its overrides — so the finished runs stay valid.
    Arms may be added; with `arms_may_drop` (a ledger of records that outlives one command) also left out. The one
    rule behind `compare dir=` and `tools/lm_study.py --results`; each caller names its own field in the message."""
    if before.get("common") != record.get("common"):
        was, now = before.get("common") or [], record.get("common") or []
        dropped, added = [w for w in was if w not in now], [w for w in now if w not in was]
        what = "; ".join(part for part in (f"now {', '.join(added)}" if added else "",
                                            f"no longer {', '.join(dropped)}" if dropped else "") if part)
        return f"other common settings ({what or 'the same words in another order'})"
    if tune_identity(before.get("tune")) != tune_identity(record.get("tune")):
        return "other tuning (tune: keys, seeds, objective or skip)"
    was, now = (r.get("budget", {}).get("budget_positions") for r in (before, record))
    if was != now:
        return f"budget {was if was is None else f'{was:,}'} token positions, now {now if now is None else f'{now:,}'}"
    arms = record.get("arms", {})
    changed = [arm for arm, overrides in before.get("arms", {}).items()
               if arms.get(arm) != overrides and (arm in arms or not arms_may_drop)]
    if changed:
        how = "with other overrides" if arms_may_drop else "missing or with other overrides"
        return f"arm(s) {', '.join(changed)} {how}; arms may only be added"
    return None


def tune_identity(tune: dict | None) -> dict | None:
    """What the finished tuning trials depend on: `widen` only adds trials after them (experiments/tuning.py), so a
    tuning may gain or change it and continue."""
    return None if tune is None else {k: v for k, v in tune.items() if k != "widen"}


def added_arms(before: dict, record: dict, exp_dir: Path) -> list[str]:
    """An experiment folder takes its own experiment again, or the same one with arms added (the finished runs stay
    valid). Returns the added arms; anything else is refused (see `continuation_conflict`)."""
    why = continuation_conflict(before, record)
    if why:
        raise ConfigError(f"dir: {str(exp_dir)!r} holds a different experiment ({why}); finished runs would not be "
                          "comparable — choose another dir=")
    return [arm for arm in record["arms"] if arm not in before.get("arms", {})]


def run_compare(exp: Experiment, log=print, recorded: frozenset = frozenset(), on_start=None,
                on_finished=None, record_of=None) -> Path:
    """Train every arm x seed not finished yet, then write the report.

    For a caller that keeps its own record of finished runs outside `dir` (tools/lm_study.py commits one per run, so
    a study outlives its run folders): `recorded` holds the run folders (relative to `dir`: `runs/ARM/seedK`,
    `tuning/ARM/tNN/seedK`) finished earlier — they are skipped where `dir` has no trace of them; `record_of(run_dir)`
    gives such a run's figures (`records.run_record`'s) for the tuning choice; `on_start(record)` receives the
    experiment record (arms, common settings, seeds, budget, tuning: what `dir`/experiment.json holds) before the first
    run and may refuse it by raising; and `on_finished(label, seed, run_dir)` is called as each run finishes here
    (label: the arm, or `ARM/tNN` for a tuning trial), after its learning-curve points are scored."""
    exp_dir = exp.dir or timestamped_dir("experiments")
    saved = exp_dir / "experiment.json"
    before = json.loads(saved.read_text()) if saved.is_file() else None
    if before is None or before.get("common") != exp.common:  # the same words: a folder made before pinning
        exp = pin_precision(exp, log)  # before the folder exists: a refusal leaves nothing behind
    exp_dir.mkdir(parents=True, exist_ok=True)
    budgets = arm_budgets(exp)
    record = {"arms": {a.name: a.overrides for a in exp.arms}, "common": exp.common, "seeds": exp.seeds,
              "budget": budgets, "verdict": {"model": exp.verdict_model}}
    if exp.natural:
        record["natural"] = exp.natural
    if exp.tune:
        record["tune"] = exp.tune.record()
    if before is not None:
        added = added_arms(before, record, exp_dir)
        if added:
            log(f"compare: adding arm(s) {', '.join(added)} to the experiment in {exp_dir}; its finished runs stay")
    if on_start is not None:  # before experiment.json: a refused experiment leaves no trace in dir
        on_start(record)
    saved.write_text(json.dumps(record, indent=1))
    log(f"compare: {len(exp.arms)} arms x {exp.seeds} seeds, budget {budgets['budget_positions']:,} token "
        f"positions per run -> {exp_dir}")
    done = []
    if exp.tune:
        done += run_tuning(exp, exp_dir, budgets, log, recorded, on_finished, record_of)
        exp = tuned_experiment(exp, exp_dir, budgets["budget_positions"], record_of)
        budgets = arm_budgets(exp)
    jobs = [(arm, seed, run_dir_of(exp_dir, arm.name, seed)) for arm, seed in job_order(exp)]
    done += run_jobs(exp, exp_dir, jobs, budgets, log, recorded, on_finished)
    score_curves(exp_dir, [run_dir for _, _, run_dir in jobs], log)
    from sleeptrain.experiments.report import write_report

    report = write_report(exp_dir)
    log(f"runs: {sum(d['status'] != 'skipped' for d in done)} run, "
        f"{sum(d['status'] == 'skipped' for d in done)} skipped; report: {report}")
    return exp_dir


def pin_precision(exp: Experiment, log) -> Experiment:
    """`train.precision=auto` resolves per machine (bf16 where this CPU or GPU runs it natively, lm/precision.py): an
    experiment resolves it once, here, and adds the choice to its common words — so every run has one precision and
    experiment.json records it; a resume on a machine that resolves otherwise is refused as other common settings,
    never mixed. Arms that set their own precision keep it; nothing changes when every arm has one."""
    from sleeptrain.lm.precision import resolve_precision

    configs = [load_config([*exp.common, *arm.overrides]).config for arm in exp.arms]
    if all(cfg.train.precision != "auto" for cfg in configs):
        return exp
    import torch

    on_cuda = configs[0].train.device != "cpu" and torch.cuda.is_available()
    chosen, why = resolve_precision("auto", on_cuda)
    pinned = replace(exp, common=[*exp.common, f"train.precision={chosen}"])
    still = [arm.name for arm in pinned.arms
             if load_config([*pinned.common, *arm.overrides]).config.train.precision == "auto"]
    if still:
        raise ConfigError(f"train.precision: arm(s) {', '.join(still)} set auto; an experiment runs one precision "
                          "per arm on every machine: give fp32 or bf16")
    log(f"compare: {why}; pinned as train.precision={chosen} for every run (a resume on a machine that resolves "
        "auto otherwise is refused; give train.precision to choose)")
    return pinned


def run_jobs(exp: Experiment, exp_dir: Path, jobs: list[tuple[Arm, int, Path]], budgets: dict, log,
             recorded: frozenset = frozenset(), on_finished=None, curves: bool = True) -> list[dict]:
    """Run (arm, seed, run folder) jobs, `exp.parallel` at once, with a progress line and an ETA after each; with
    `curves`, each finished run's learning-curve points are scored right away (tuning runs: not needed)."""
    progress = {"finished": 0, "trained_seconds": 0.0, "trained": 0}
    lock = threading.Lock()
    start = time.time()

    stop = threading.Event()  # set by a failed run (or Ctrl-C): no further run starts

    def one(job):
        arm, seed, run_dir = job
        if stop.is_set():
            return {"arm": arm.name, "seed": seed, "status": "not started"}
        t0 = time.time()
        try:
            result = run_one(exp, exp_dir, arm, seed, budgets["arms"][arm.name], log, recorded, run_dir)
        except BaseException:
            stop.set()
            raise
        if result["status"] != "skipped":
            if curves:
                score_curves(exp_dir, [run_dir], log)  # while the run's folders are surely there
            if on_finished is not None:
                on_finished(arm.name, seed, run_dir)
        with lock:
            progress["finished"] += 1
            if result["status"] != "skipped":
                progress["trained"] += 1
                progress["trained_seconds"] += time.time() - t0
            left = len(jobs) - progress["finished"]
            per_run = progress["trained_seconds"] / progress["trained"] if progress["trained"] else 0.0
            eta = f", about {left * per_run / exp.parallel / 60:.0f} min left" if left and per_run else ""
            log(f"  [{progress['finished']}/{len(jobs)} runs, {(time.time() - start) / 60:.1f} min{eta}]")
        return result

    pool = ThreadPoolExecutor(max_workers=exp.parallel)
    futures = [pool.submit(one, job) for job in jobs]
    try:
        return [future.result() for future in futures]
    except BaseException:  # a failed run, or Ctrl-C: no further run starts (the ones in progress end or checkpoint)
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_tuning(exp: Experiment, exp_dir: Path, budgets: dict, log, recorded: frozenset = frozenset(),
               on_finished=None, record_of=None) -> list[dict]:
    """Every tuned arm's grid on the tuning seeds, at the experiment's budget (`experiments/tuning.py`); with
    `tune.widen`, rounds of the trials an edge choice adds, until no arm adds one."""
    ordered = [a for a in exp.arms if a.name in exp.priority] + [a for a in exp.arms if a.name not in exp.priority]
    done, queued = [], set()
    while True:
        trial_arms, jobs = [], []
        for arm in ordered:  # the `priority` arms' trials first, as their seeds
            rows, _, _ = arm_trials(exp_dir, exp.tune, arm.name, record_of)
            for i, values in enumerate(rows):
                label = f"{arm.name}/t{i:02d}"
                if label in queued:
                    continue
                queued.add(label)
                trial_arms.append(Arm(label, [*arm.overrides, *(value_word(k, v) for k, v in values.items())]))
                jobs += [(trial_arms[-1], seed, trial_dir(exp_dir, arm.name, i, seed)) for seed in exp.tune.seeds]
        if not jobs:
            return done
        natural = [t.name for t in trial_arms if t.name.split("/")[0] in exp.natural]
        trial_budgets = arm_budgets(Experiment(trial_arms, exp.common, budget_tokens=budgets["budget_positions"],
                                               natural=natural))
        log(f"compare: tuning {len(trial_arms)} {'more ' if done else ''}trials x {len(exp.tune.seeds)} seed(s) "
            f"on dev {exp.tune.objective}" + (" (grid widened: tune.widen)" if done else ""))
        done += run_jobs(exp, exp_dir, jobs, trial_budgets, log, recorded, on_finished, curves=False)


def tuned_experiment(exp: Experiment, exp_dir: Path, budget_positions: int, record_of=None) -> Experiment:
    """The experiment with each arm at its chosen values (written to `tuning.json`), at the same budget."""
    choices = {arm.name: choose(exp_dir, exp.tune, arm.name, record_of) for arm in exp.arms}
    unfinished = [name for name, c in choices.items() if c is None]
    if unfinished:
        raise ConfigError(f"compare: tuning of {unfinished} did not finish; re-run the command to resume it")
    write_tuning(exp_dir, choices)
    arms = [Arm(a.name, [*a.overrides, *(value_word(k, v) for k, v in choices[a.name].get("chosen", {}).items())])
            for a in exp.arms]
    return replace(exp, arms=arms, budget_tokens=budget_positions)


def score_curves(exp_dir: Path, run_dirs: list[Path], log) -> None:
    """Score the word-count checkpoints of every finished run that has them (`experiments/curves.py`; what is scored
    already is kept)."""
    from sleeptrain.experiments.curves import points, score_run

    for run_dir in run_dirs:
        if not (run_dir / "summary.json").is_file():
            continue
        found = points(run_dir)
        new = [p for p in found if not (p["dir"] / "eval" / "milestone.json").is_file()]
        if new and any(p["point"].startswith("chck_") for p in found):
            log(f"  {run_dir.relative_to(exp_dir)}: scoring {len(new)} learning-curve point(s)")
            score_run(run_dir)

"""`sleeptrain sweep SPACE.yaml [key=value ...]`: grid or random search over config keys, one run per trial.

SPACE.yaml:

    method: random            # grid | random
    trials: 12                # random: how many
    objective: final_val_loss # final_val_loss | best_val_loss (minimised) | blimp_overall (maximised)
    seed: 0                   # random: the sampler's seed
    common: [model=tiny, train.max_steps=300]
    space:
      train.lr: {low: 3.0e-4, high: 1.0e-2, log: true}   # random: (log-)uniform (int: true rounds); grid: a list
      replay.ratio: [0.1, 0.2, 0.4]                      # grid: every value; random: one of them
      replay.strategy: [weighted, strict]

Writes `EXP_DIR/sweep.json` (every trial, its overrides and figures), `sweep.md` (the table, best first),
`best.yaml` (the best trial's settings as a preset file: `sleeptrain train schedule=EXP_DIR/best.yaml ...`), and for
random sweeps `importance.png` (|Spearman rank correlation| of each parameter with the objective — a first look,
not a causal measure). Re-running skips finished trials and resumes unfinished ones, like `compare`.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import yaml

from sleeptrain.experiments.compare import Arm, Experiment, run_one
from sleeptrain.errors import ConfigError
from sleeptrain.fsutil import timestamped_dir
from sleeptrain.presets import load_yaml, load_config
from sleeptrain.experiments.records import METRICS, run_record


SWEEP_FILE_KEYS = ("method", "objective", "space", "common", "trials", "seed", "dir")


def load_space(path: Path, overrides: list[str]) -> dict:
    if not path.is_file():
        raise ConfigError(f"sweep: search-space file {str(path)!r} does not exist")
    spec = load_yaml(path, "sweep")
    unknown = sorted(set(map(str, spec)) - set(SWEEP_FILE_KEYS))
    if unknown:
        raise ConfigError(f"sweep: {path}: unknown keys {unknown}; a search-space file holds {', '.join(SWEEP_FILE_KEYS)}")
    settings = {}
    common = [str(c) for c in spec.get("common", []) or []]
    for word in overrides:
        key, _, value = word.partition("=")
        if key in ("trials", "dir", "method", "objective", "seed"):
            settings[key] = value
        else:
            common.append(word)
    method = settings.get("method", spec.get("method", "random"))
    if method not in ("grid", "random"):
        raise ConfigError(f"sweep.method: {method!r} is not allowed; choose grid or random")
    objective = settings.get("objective", spec.get("objective", "final_val_loss"))
    if objective not in METRICS:
        raise ConfigError(f"sweep.objective: {objective!r} is not allowed; choose one of {', '.join(METRICS)}")
    space = spec.get("space")
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"sweep: {path} needs `space:` mapping config keys to value lists or {{low, high}}")
    for key, dim in space.items():
        if isinstance(dim, dict):
            if set(map(str, dim)) - {"low", "high", "log"}:
                raise ConfigError(f"space.{key}: unknown keys {sorted(set(map(str, dim)) - {'low', 'high', 'log'})}; "
                                  "a range holds low, high and log")
            if method == "grid":
                raise ConfigError(f"space.{key}: a grid needs a list of values, not a range")
            if not {"low", "high"} <= set(dim) or not dim["low"] < dim["high"]:
                raise ConfigError(f"space.{key}: a range needs low < high, got {dim}")
            if dim.get("log") and dim["low"] <= 0:
                raise ConfigError(f"space.{key}: a log range needs low > 0")
        elif not isinstance(dim, list) or not dim:
            raise ConfigError(f"space.{key}: expected a non-empty list of values or {{low, high[, log]}}")
    try:
        trials = int(settings.get("trials", spec.get("trials", 10)))
    except ValueError:
        raise ConfigError(f"sweep.trials: expected a whole number, got {settings['trials']!r}") from None
    if trials <= 0:
        raise ConfigError(f"sweep.trials: must be > 0, got {trials}")
    try:
        seed = int(settings.get("seed", spec.get("seed", 0)))
    except ValueError:
        raise ConfigError(f"sweep.seed: expected a whole number, got {settings.get('seed', spec.get('seed'))!r}") from None
    out_dir = Path(settings.get("dir", spec.get("dir") or timestamped_dir("sweeps")))
    return {"method": method, "objective": objective, "space": space, "common": common, "trials": trials,
            "seed": seed, "dir": out_dir.expanduser()}


def _value(v) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def trial_settings(spec: dict) -> list[dict]:
    """The trials: every grid point, or `trials` random draws (seeded)."""
    space = spec["space"]
    if spec["method"] == "grid":
        keys = list(space)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(space[k] for k in keys))]
    rng = np.random.default_rng(spec["seed"])
    out = []
    for _ in range(spec["trials"]):
        trial = {}
        for key, dim in space.items():
            if isinstance(dim, list):
                trial[key] = dim[int(rng.integers(len(dim)))]
            elif dim.get("log"):
                trial[key] = float(math.exp(rng.uniform(math.log(dim["low"]), math.log(dim["high"]))))
            else:
                trial[key] = float(rng.uniform(dim["low"], dim["high"]))
            if isinstance(trial[key], float) and isinstance(dim, dict) and dim.get("int"):
                trial[key] = int(round(trial[key]))
        out.append(trial)
    return out


def run_sweep(spec: dict, log=print) -> Path:
    exp_dir = spec["dir"]
    trials = trial_settings(spec)
    arms = [Arm(f"trial-{i:03d}", [f"{k}={_value(v)}" for k, v in t.items()]) for i, t in enumerate(trials)]
    for arm in arms:  # every trial is a valid config before anything runs
        load_config([*spec["common"], *arm.overrides])
    exp_dir.mkdir(parents=True, exist_ok=True)
    exp = Experiment(arms=arms, common=spec["common"], seeds=1)
    log(f"sweep: {spec['method']}, {len(arms)} trials, objective {spec['objective']} -> {exp_dir}")
    start, trained, trained_seconds = time.time(), 0, 0.0
    for i, arm in enumerate(arms, 1):
        t0 = time.time()
        if run_one(exp, exp_dir, arm, 0, {"budget_overrides": []}, log)["status"] != "skipped":
            trained, trained_seconds = trained + 1, trained_seconds + time.time() - t0
        left = len(arms) - i
        eta = f", about {left * trained_seconds / trained / 60:.0f} min left" if left and trained else ""
        log(f"  [{i}/{len(arms)} trials, {(time.time() - start) / 60:.1f} min{eta}]")
    return write_sweep_results(exp_dir, spec, trials, arms, log)


def write_sweep_results(exp_dir: Path, spec: dict, trials: list[dict], arms: list[Arm], log=print) -> Path:
    label, higher = METRICS[spec["objective"]]
    rows = []
    for trial, arm in zip(trials, arms):
        record = run_record(exp_dir / "runs" / arm.name / "seed0") or {}
        rows.append({"trial": arm.name, "settings": trial, "objective": record.get(spec["objective"]),
                     **{k: record.get(k) for k in METRICS}})
    scored = [r for r in rows if r["objective"] is not None]
    scored.sort(key=lambda r: r["objective"], reverse=higher)
    best = scored[0] if scored else None
    (exp_dir / "sweep.json").write_text(json.dumps({"spec": {**spec, "dir": str(spec["dir"])}, "trials": rows,
                                                    "best": best}, indent=1, default=str))
    keys = list(spec["space"])
    lines = [f"# Sweep {exp_dir.name}: {spec['method']}, objective {label} "
             f"({'higher' if higher else 'lower'} is better)", "",
             "| trial | " + " | ".join(keys) + f" | {label} |", "|---|" + "---|" * (len(keys) + 1)]
    for r in scored:
        lines.append(f"| {r['trial']} | " + " | ".join(_fmt(r["settings"][k]) for k in keys) +
                     f" | {r['objective']:.4f} |")
    if best:
        preset = {}
        for item in [*spec["common"], *(f"{k}={_value(v)}" for k, v in best["settings"].items())]:
            key, _, value = item.partition("=")
            if "." in key:
                node = preset
                *parents, leaf = key.split(".")
                for p in parents:
                    node = node.setdefault(p, {})
                node[leaf] = yaml.safe_load(value)
        (exp_dir / "best.yaml").write_text(f"# best trial {best['trial']} of sweep {exp_dir.name}: "
                                           f"{label} {best['objective']:.4f}\n" + yaml.safe_dump(preset))
        lines += ["", f"Best: **{best['trial']}** ({label} {best['objective']:.4f}); its settings are in "
                      "`best.yaml` (use as `sleeptrain train schedule=best.yaml ...`; group presets in `common` are "
                      "not part of it)."]
    if spec["method"] == "random" and len(scored) >= 3:
        lines += ["", "![importance](importance.png)"]
        plot_importance(exp_dir / "importance.png", scored, keys, label)
    (exp_dir / "sweep.md").write_text("\n".join(lines) + "\n")
    log(f"sweep: {len(scored)} of {len(rows)} trials scored; table: {exp_dir / 'sweep.md'}")
    return exp_dir


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def plot_importance(out: Path, rows: list[dict], keys: list[str], label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import spearmanr

    y = [r["objective"] for r in rows]
    scores = []
    for key in keys:
        values = [r["settings"][key] for r in rows]
        if not all(isinstance(v, (int, float)) for v in values):  # categorical: rank by category mean
            means = {v: np.mean([yy for vv, yy in zip(values, y) if vv == v]) for v in set(map(str, values))}
            values = [means[str(v)] for v in values]
        rho = spearmanr(values, y).statistic if len(set(values)) > 1 else 0.0
        scores.append(0.0 if rho != rho else abs(float(rho)))
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(keys) + 1.5), dpi=100)
    ax.barh(keys, scores, color="#4477aa")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"|Spearman rank correlation| with {label}")
    ax.set_title("parameter importance (random sweep)")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)

"""Symmetric tuning for `sleeptrain compare`: every arm gets the same grid on the same tuning seeds and the same
budget, each picks its own best on the **dev** split, and the experiment's seeds then run at each arm's choice.

In an arms file (the command line takes the common part as `tune.KEY=[v1,v2,...]`, `tune.seeds=[0]`,
`tune.objective=NAME`, `tune.skip=ARM,...`):

    tune:
      keys: {train.lr: [3.0e-3, 6.0e-3, 1.2e-2]}   # every arm's grid (the cartesian product of the keys)
      seeds: [0]                                   # the tuning seeds (default [0])
      objective: final_val_loss                    # final_val_loss (default) | best_val_loss | blimp_overall
      skip: [single_pass]                          # arms that are not tuned (a floor); reported as such
      widen: 1                                     # an edge choice extends its key's grid (default 0: flag only)
    arms:
      epochs: [schedule=epochs]
      sleep: {overrides: [schedule=sleep], tune: {replay.ratio: [0.1, 0.3]}}   # extra keys: extra tuning, reported

A trial's runs live in `EXP_DIR/tuning/ARM/tNN/seedS` (resumable like every run; `tuning.json` lists each trial's
values and scores). The objective is read from the dev split only (`experiments/report.METRICS`); BLiMP as the
objective is the user's explicit choice, and the report says so. An arm's choice on the edge of its grid (the
smallest or largest value of a key with 3 or more values) is flagged: the grid may not contain its optimum.

`widen: N` (default 0) acts on that flag by one rule for every arm (decide it before looking at scores): when an arm's
choice lies on an edge of a key whose values are positive numbers in strictly monotone order, the key gains the next
value of its geometric progression beyond that edge (sleeptrain/grids.py, the rule `sleeptrain continual` shares;
3e-3, 6e-3, 1.2e-2 chosen at 3e-3: 1.5e-3; integer keys are rounded, and a value that rounds onto the grid is not
added), one new trial per combination of the other keys, run on the same tuning seeds; then the choice is made again, up to N times. The added trials take the next trial numbers
(`tNN` of the given grid keep theirs), so adding `widen` to a finished tuning runs only the new trials.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from sleeptrain.errors import ConfigError
from sleeptrain.experiments.records import METRICS, run_record
from sleeptrain.grids import widen_grid  # the widening rule, shared with `sleeptrain continual`

TUNE_SETTINGS = ("seeds", "objective", "skip", "widen")
MAX_WIDEN = 5


@dataclass
class TuneSpec:
    keys: dict[str, list] = field(default_factory=dict)             # every arm's grid
    arm_keys: dict[str, dict[str, list]] = field(default_factory=dict)  # an arm's extra keys
    seeds: list[int] = field(default_factory=lambda: [0])
    objective: str = "final_val_loss"
    skip: list[str] = field(default_factory=list)
    widen: int = 0                                                   # edge choices extend the grid this many times

    def record(self) -> dict:
        record = {"keys": self.keys, "arm_keys": self.arm_keys, "seeds": self.seeds, "objective": self.objective,
                  "skip": self.skip}
        return {**record, "widen": self.widen} if self.widen else record  # records from before `widen` stay equal

    @classmethod
    def from_record(cls, record: dict) -> "TuneSpec":
        return cls(record["keys"], record.get("arm_keys", {}), record["seeds"], record["objective"],
                   record.get("skip", []), record.get("widen", 0))


def value_word(key: str, value) -> str:
    """`key=value` as an override word (YAML flow style, as the command line reads it)."""
    import yaml

    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def check_grid(where: str, keys) -> dict[str, list]:
    if not isinstance(keys, dict):
        raise ConfigError(f"{where}: expected a mapping of config keys to lists of candidate values")
    for key, values in keys.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.{key}: expected a non-empty list of candidate values, got {values!r}")
        if len(set(repr(as_number(x)) for x in values)) != len(values):
            raise ConfigError(f"{where}.{key}: candidate values repeat: {values}")
    return {str(k): [as_number(x) for x in v] for k, v in keys.items()}


def as_number(value):
    """`3e-3` is a number on the command line; PyYAML reads it from a file as a string: read it as the number."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def parse_tune_block(data, spec: TuneSpec) -> None:
    """The `tune:` block of an arms file into `spec` (command-line `tune.*` words come later and win)."""
    if not isinstance(data, dict):
        raise ConfigError("tune: expected a mapping with keys (and optionally seeds, objective, skip)")
    unknown = sorted(set(data) - {"keys", *TUNE_SETTINGS})
    if unknown:
        raise ConfigError(f"tune: unknown entries {unknown}; allowed: keys, {', '.join(TUNE_SETTINGS)}")
    spec.keys.update(check_grid("tune.keys", data.get("keys", {})))
    settings = {k: data[k] for k in TUNE_SETTINGS if k in data}
    apply_tune_settings(spec, {k: ",".join(map(str, v)) if isinstance(v, list) else str(v)
                               for k, v in settings.items()})


def apply_tune_settings(spec: TuneSpec, settings: dict[str, str]) -> None:
    if "seeds" in settings:
        try:
            spec.seeds = [int(s) for s in settings["seeds"].strip("[]").split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"tune.seeds: expected whole numbers, got {settings['seeds']!r}") from None
        if not spec.seeds or min(spec.seeds) < 0 or len(set(spec.seeds)) != len(spec.seeds):
            raise ConfigError(f"tune.seeds: expected distinct seeds >= 0, got {settings['seeds']!r}")
    if "objective" in settings:
        if settings["objective"] not in METRICS:
            raise ConfigError(f"tune.objective: {settings['objective']!r} is not allowed; choose one of "
                              f"{', '.join(METRICS)} (dev-side figures: nothing selects on the test split)")
        spec.objective = settings["objective"]
    if "skip" in settings:
        spec.skip = [n.strip() for n in settings["skip"].strip("[]").split(",") if n.strip()]
    if "widen" in settings:
        word = str(settings["widen"]).strip()
        if not word.isdigit() or int(word) > MAX_WIDEN:
            raise ConfigError(f"tune.widen: expected a whole number from 0 to {MAX_WIDEN} (how many times an edge "
                              f"choice extends its grid), got {settings['widen']!r}")
        spec.widen = int(word)


def arm_grid(spec: TuneSpec, arm: str) -> dict[str, list]:
    """The keys an arm is tuned over: the common grid, then its own extra keys (which may override a common one)."""
    if arm in spec.skip:
        return {}
    return {**spec.keys, **spec.arm_keys.get(arm, {})}


def trials(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in a fixed order (the first key varies slowest)."""
    if not grid:
        return []
    return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]


def trial_dir(exp_dir: Path, arm: str, index: int, seed: int) -> Path:
    return exp_dir / "tuning" / arm / f"t{index:02d}" / f"seed{seed}"


def score_trials(exp_dir: Path, spec: TuneSpec, arm: str, rows: list[dict], record_of) -> list[dict] | None:
    """Each trial's per-seed objective and mean; None while one of its runs is unfinished."""
    scored = []
    for i, values in enumerate(rows):
        scores = []
        for seed in spec.seeds:
            record = record_of(trial_dir(exp_dir, arm, i, seed))
            if record is None:
                return None
            scores.append(record[spec.objective])
        mean = sum(scores) / len(scores) if None not in scores else None
        scored.append({"trial": f"t{i:02d}", "values": values, "scores": scores, "mean": mean})
    return scored


def best_trial(rows: list[dict], spec: TuneSpec, arm: str) -> dict:
    scored = [r for r in rows if r["mean"] is not None]
    if not scored:
        raise ConfigError(f"tune.objective: no trial of arm {arm!r} has {spec.objective} (is eval.final off?)")
    return (max if METRICS[spec.objective][1] else min)(scored, key=lambda r: r["mean"])  # ties: the earlier


def edge_keys(grid: dict[str, list], chosen: dict) -> list[str]:
    return [key for key, values in grid.items() if len(values) >= 3 and chosen[key] in (values[0], values[-1])]


def arm_trials(exp_dir: Path, spec: TuneSpec, arm: str,
               record_of=None) -> tuple[list[dict], dict[str, list], list[dict] | None]:
    """The arm's trials in run order (the grid's, then those `spec.widen` added), the grid they span, and their
    scores (`score_trials`; None while one is unfinished). An unfinished trial stops the widening: what it adds
    depends on the scores."""
    record_of = record_of or run_record
    grid = {k: list(v) for k, v in arm_grid(spec, arm).items()}
    rows = trials(grid)
    scored = score_trials(exp_dir, spec, arm, rows, record_of)
    for _ in range(spec.widen if grid else 0):
        if scored is None:
            break
        chosen = best_trial(scored, spec, arm)["values"]
        added = widen_grid(grid, chosen, edge_keys(grid, chosen))
        if not added:
            break
        rows += added
        scored = score_trials(exp_dir, spec, arm, rows, record_of)
    return rows, grid, scored


def choose(exp_dir: Path, spec: TuneSpec, arm: str, record_of=None) -> dict | None:
    """The arm's tuning: every trial with its values and per-seed objective, the chosen trial (best mean over the
    tuning seeds; ties: the earlier trial), the keys whose choice lies on an edge of the grid (after any widening)
    and the values `widen` added. None while a tuning run is unfinished; {} for an arm without a grid.
    `record_of(run_dir)`: a run's figures (default: read from its folder, `records.run_record`; a caller with its own
    records of runs whose folders are gone passes its own)."""
    record_of = record_of or run_record
    given = arm_grid(spec, arm)
    if not given:
        return {}
    rows, grid, scored = arm_trials(exp_dir, spec, arm, record_of)
    if scored is None:
        return None
    best = best_trial(scored, spec, arm)
    label, _ = METRICS[spec.objective]
    widened = {k: [v for v in grid[k] if v not in given[k]] for k in grid if len(grid[k]) > len(given[k])}
    return {"grid": grid, "extra_keys": sorted(spec.arm_keys.get(arm, {})), "objective": spec.objective,
            "objective_label": label, "trials": scored, "chosen": best["values"], "chosen_trial": best["trial"],
            "on_edge": edge_keys(grid, best["values"]), "widened": widened, "runs": len(rows) * len(spec.seeds)}


def write_tuning(exp_dir: Path, choices: dict[str, dict]) -> None:
    (exp_dir / "tuning.json").write_text(json.dumps(choices, indent=1))


def tuning_section(tuning: dict, spec: dict) -> list[str]:
    """The report's account of the tuning: every arm's grid, its choice, edge flags, extra tuning, compute."""
    if not tuning:
        return []
    selected_on = ("dev **BLiMP** (the experiment asked for it: BLiMP verdicts then judge the figure that chose)"
                   if spec.get("objective") == "blimp_overall" else f"dev {spec.get('objective')}")
    lines = ["## Tuning (every arm alike)", "",
             f"Each arm ran its grid on tuning seed(s) {spec.get('seeds')} at the experiment's budget and chose on "
             f"{selected_on}; the seeds above ran at each arm's choice. Tuning runs: "
             f"{sum(t.get('runs', 0) for t in tuning.values())} (in `tuning/`, compute on top of the table above).",
             "", "| arm | grid | chosen | objective (mean over tuning seeds) | note |", "|---|---|---|---|---|"]
    for arm, t in tuning.items():
        if not t:
            lines.append(f"| {arm} | — | — | — | not tuned (tune.skip) |")
            continue
        best = next(r for r in t["trials"] if r["trial"] == t["chosen_trial"])
        grid = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in t["grid"].items())
        chosen = ", ".join(f"{k}={v}" for k, v in t["chosen"].items())
        widened = t.get("widened") or {}
        notes = ([f"grid widened (tune.widen) by {k}: {', '.join(map(str, v))}" for k, v in widened.items()]
                 + ([f"choice on the grid's edge ({', '.join(t['on_edge'])}): "
                     + ("still, after widening" if widened else "widen it")] if t["on_edge"] else [])
                 + ([f"extra tuning: {', '.join(t['extra_keys'])}"] if t["extra_keys"] else []))
        lines.append(f"| {arm} | {grid} | {chosen} | {best['mean']:.4f} | {'; '.join(notes) or '—'} |")
    return lines

"""Every continual method tuned alike: a grid per key, run on the tuning seeds, chosen on validation accuracy.

    sleeptrain continual benchmark=split_mnist method=ewc validation=500 tune=ewc_strength:[1,10,100,1000,10000]
    sleeptrain continual benchmark=split_mnist method=si validation=500 tune=default

Each point of the grid (the product of the keys' values, in order) trains the method on every seed of `tune_seeds`
(their own task orders) and is scored by the average accuracy over all tasks on the validation split after the last
stage; the first best point is the choice (a point whose training diverges is recorded and never chosen). The
reported seeds then run once at the choice, on the test split — nothing that chose saw it. `tune_widen=N` (default
0: the edge is only flagged, `choice_on_edge`) acts on a choice at a grid's edge by one rule for every method: the
key gains the next value of its geometric progression beyond that edge (sleeptrain/grids.py; OWM's scaled vectors
continue coordinate by coordinate), run on the same tuning seeds, and the choice is made again, up to N times.
`results.json` holds the grid, every point's validation scores and the choice, so an untuned row and a tuned one can
be tabled side by side (tools/src_table.py).

Default grids (`tune=default`), each the method's one strength knob on a log grid around the project's default,
meant to be wide enough that both ends are visibly worse on Split-MNIST at the authors' SGD:
- ewc: ewc_strength λ ∈ {1, 10, 100, 1e3, 1e4} (Kirkpatrick et al. 2017 tuned λ per benchmark and give no grid;
  with SGD at lr 0.1 λ · max F must stay below 2 / lr, so larger λ diverges — recorded as such);
- si: si_strength c ∈ {0.01, 0.1, 1, 10} (Zenke et al. 2017 searched c on a log grid per benchmark);
- owm: owm_alphas = the OWM code's vector (0.9 decaying, 0.6, ...) × {0.001, 0.01, …, 100} (α sets how strongly
  the projector shuts old input directions; Zeng et al. 2019 set it per benchmark);
- rehearsal, rehearsal_src: sgd.lr ∈ {0.01, 0.03, 0.1, 0.3, 1} (the replayed images change the loss landscape the
  authors' lr was set for);
- src, icarl_src: the SRC vector is tuned by the search (`search_trials=N validation=M`: scored on validation),
  then run with `src=RUN/best_src.yaml`; sequential, joint, icarl: nothing to tune at the authors' settings.
OWM's and rehearsal's ranges were widened (from × {0.01 … 10} and {0.03, 0.1, 0.3}) after the first tuned tables
chose an end on both benchmarks (docs/LOG.md, 2026-12-04).

`tune_points=N` respaces every key of the default grid to N values in geometric progression between the documented
ends (3 significant digits; OWM: its scales), the inner value nearest the run's own setting replaced by it (λ 100,
lr 0.1, OWM's vector × 1: the untuned point is one of the trials, as the authors' vector is trial 0 of SRC's
search), so every method can be given the same number of validation-scored trials as SRC's search
(`tools/src_table.py` gives each grid as many points as `--search-trials`): equal budgets rather than grids whose
sizes happen to differ.
"""

from __future__ import annotations

import itertools
import math
import sys
from typing import Any

import yaml

from sleeptrain.errors import ConfigError
from sleeptrain.grids import widen_grid

GRID_SOURCES = {
    "ewc": {"ewc_strength": [1.0, 10.0, 100.0, 1000.0, 10000.0]},
    "si": {"si_strength": [0.01, 0.1, 1.0, 10.0]},
    "owm": {"owm_alphas": "scaled"},
    "rehearsal": {"sgd.lr": [0.01, 0.03, 0.1, 0.3, 1.0]},
    "rehearsal_src": {"sgd.lr": [0.01, 0.03, 0.1, 0.3, 1.0]},
}
OWM_SCALES = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


def parse_tune_words(args: list[str]) -> tuple[list[str], dict[str, Any] | str | None]:
    """Split `tune=KEY:[v1,...]` (repeatable) and `tune=default` off the command's words."""
    rest, grid, default = [], {}, False
    for word in args:
        if not word.startswith("tune="):
            rest.append(word)
            continue
        value = word[len("tune="):]
        if value == "default":
            default = True
            continue
        key, sep, values = value.partition(":")
        try:
            parsed = yaml.safe_load(values) if sep else None
        except yaml.YAMLError:
            parsed = None
        if not key or not isinstance(parsed, list) or not parsed:
            raise ConfigError(f"tune: {value!r}; write tune=KEY:[v1,v2,...] (e.g. tune=ewc_strength:[10,100]) or "
                              f"tune=default")
        grid[key] = parsed
    if default and grid:
        raise ConfigError("tune: give tune=default or tune=KEY:[...], not both")
    return rest, ("default" if default else grid or None)


def spaced(values, points: int, through: float | None = None) -> list[float]:
    """`points` values in geometric progression from the first of `values` to the last, to 3 significant digits
    (the ends exact): 0.01 … 1 in 5 -> 0.01, 0.0316, 0.1, 0.316, 1. `through`: the inner value nearest it (in log)
    is replaced by it, so the grid holds the method's untuned setting as SRC's search holds the authors' vector."""
    low, high = float(values[0]), float(values[-1])
    out = [low, *(float(f"{low * (high / low) ** (i / (points - 1)):.3g}") for i in range(1, points - 1)), high]
    if through is not None and low < through < high and through not in out and points > 2:
        nearest = min(range(1, points - 1), key=lambda i: abs(math.log(out[i] / through)))
        out[nearest] = float(through)
    return out


def default_grid(cfg, points: int | None = None) -> dict[str, list]:
    """The documented grid of `cfg.method` (empty when it has nothing to tune here), each key respaced to `points`
    values through the config's own value of the key (default `cfg.tune_points`; 0: as documented)."""
    from sleeptrain.presets import flat_config

    points = cfg.tune_points if points is None else points
    sources, own = GRID_SOURCES.get(cfg.method, {}), flat_config(cfg)
    grid = {key: spaced(values, points, through=float(own[key])) if points else list(values)
            for key, values in sources.items() if values != "scaled"}
    if sources.get("owm_alphas") == "scaled":
        n_layers = len(cfg.net.hidden) + 1
        base = cfg.owm_alphas or [0.9] + [0.6] * (n_layers - 1)
        scales = spaced(OWM_SCALES, points, through=1.0) if points else OWM_SCALES
        grid["owm_alphas"] = [[float(f"{a * s:.6g}") for a in base] for s in scales]
    return grid


def flatten(tune: dict) -> dict[str, list]:
    """{sgd: {lr: [...]}} and {"sgd.lr": [...]} alike -> {"sgd.lr": [...]}."""
    out = {}
    for key, value in tune.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in flatten(value).items()})
        else:
            out[key] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def with_values(cfg, point: dict[str, Any]):
    """`cfg` with the point's keys set, validated like any config (a bad value is a one-line error)."""
    from omegaconf import OmegaConf

    from sleeptrain.continual.config import ContinualConfig
    from sleeptrain.presets import flat_config, merge_config, to_config

    known = flat_config(cfg)
    merged = OmegaConf.structured(cfg)
    for key, value in point.items():
        if key not in known or key.startswith(("tune", "seed", "run.")):
            raise ConfigError(f"tune: {key!r} is not a setting a grid may tune (a key of `sleeptrain continual "
                              f"--help`, not tune/seed/run)")
        update = value
        for part in reversed(key.split(".")):
            update = {part: update}
        merged = merge_config(merged, update, f"tune={key}", user_key=key, schema=ContinualConfig)
    OmegaConf.update(merged, "tune", {}, merge=False)
    return to_config(merged, ContinualConfig)


def check_grid_values(cfg) -> None:
    """Every value of the grid as a config of its own: a key a grid may not tune, or a value the key cannot take,
    is a one-line ConfigError naming it."""
    for key, values in flatten(cfg.tune).items():
        for value in values:
            with_values(cfg, {key: value})


def run_points(cfg, points: list[dict], build_benchmark, run_method) -> list[dict]:
    """Each point trained on every tuning seed and scored on validation (a diverging point: recorded, never chosen)."""
    trials = []
    for point in points:
        point_cfg, scores, note = with_values(cfg, point), [], None
        for seed in cfg.tune_seeds:
            try:
                result = run_method(build_benchmark(point_cfg, seed), cfg.method, point_cfg, seed,
                                    evaluate_on="validation")
            except ConfigError as exc:   # diverged: recorded, never chosen
                scores, note = None, str(exc)
                break
            scores.append(float(result.matrix[-1].mean()))
        mean = None if scores is None else sum(scores) / len(scores)
        trials.append({"values": point, "validation_accuracy": mean, "per_seed": scores, "note": note})
        shown = "diverged" if mean is None else f"{mean:.4f}"
        print(f"  tune {point}: validation accuracy {shown}", file=sys.stderr, flush=True)
    return trials


def best_of(trials: list[dict], grid: dict) -> dict:
    usable = [t for t in trials if t["validation_accuracy"] is not None]
    if not usable:
        raise ConfigError(f"tune: every point of the grid diverged ({grid}); lower sgd.lr or the grid's values")
    return max(usable, key=lambda t: t["validation_accuracy"])  # the first of equals


def on_edge(grid: dict, values: dict) -> list[str]:
    return [k for k, vals in grid.items() if len(vals) > 1 and values[k] in (vals[0], vals[-1])]


def tune(cfg, build_benchmark, run_method) -> tuple[Any, dict]:
    """Run the grid (widened up to `cfg.tune_widen` times while the choice sits on an edge); returns (cfg at the
    choice, the record for results.json)."""
    from sleeptrain.presets import flat_config

    given = flatten(cfg.tune)  # each value as the config types it ("1e-6" -> 1e-06), checked before anything trains
    grid = {k: [flat_config(with_values(cfg, {k: v}))[k] for v in values] for k, values in given.items()}
    first = {k: list(v) for k, v in grid.items()}
    trials = run_points(cfg, grid_points(grid), build_benchmark, run_method)
    best = best_of(trials, grid)
    for _ in range(cfg.tune_widen):
        added = widen_grid(grid, best["values"], on_edge(grid, best["values"]))   # sleeptrain/grids.py
        if not added:
            break
        trials += run_points(cfg, added, build_benchmark, run_method)
        best = best_of(trials, grid)
    widened = {k: [v for v in grid[k] if v not in first[k]] for k in grid if len(grid[k]) > len(first[k])}
    record = {"grid": grid, "seeds": list(cfg.tune_seeds), "scored_on": "validation (mean over tasks, last stage)",
              "trials": trials, "choice": best["values"], "choice_validation_accuracy": best["validation_accuracy"],
              "choice_on_edge": on_edge(grid, best["values"])}
    if cfg.tune_widen:
        record.update(widen=cfg.tune_widen, widened=widened)   # records from before tune_widen stay as they were
    return with_values(cfg, best["values"]), record

"""Fit SRC to a new dataset: search over the paper's parameter vector x = [max_rate, inc, dec, beta_1..L,
alpha_scale] (and, optionally, the sleep length), scored on *training* accuracy only, as the paper did (it used a
genetic algorithm; test data is never looked at) — or, with a validation split (`validation=N`), on validation
accuracy (the trials' key is then `validation_accuracy`), the rule every tuned method here follows.

Trial 0 is the starting vector. `random` draws every later trial's entries log-uniformly within a factor `spread` of
the starting vector; `evolve` is a (1+1) evolution strategy: each trial mutates the best vector so far in about two
of its entries (each with probability 2/len(x), at least one), the mutation range narrowing from `spread` to its
square root, so late trials refine what early ones found (changing every entry at once rarely improves a good
vector: on Split-MNIST all three first trials of that kind lost 0.15-0.66 training accuracy).
With `sleep_length` the vector gets one more entry, a factor on `src.iterations` and `src.growth`: the sleep that
suits SRC alone (where old tasks are forgotten) is too long when rehearsal already holds them (docs/LOG.md).

The score is the average training accuracy over all tasks after the last stage, averaged over the benchmarks given
(one per task order: a vector fitted on one order did not transfer to others on Split-MNIST, docs/LOG.md). The same
method without its sleeps (`sequential` for `src`, `rehearsal` for `rehearsal_src`) is scored too, as the reference
a sleep must beat.

A trial whose run diverges (a sleep can leave weights the next task's SGD blows up on: seen on Split-MNIST with a
validation split) is recorded with no score and a note, never chosen, and the search goes on. `earlier` resumes an
interrupted search: the trials are drawn again from the same seed, and a trial whose vector equals the earlier
run's trial of that number takes its recorded score instead of training again.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from sleeptrain.continual.data import Benchmark
from sleeptrain.errors import ConfigError
from sleeptrain.continual.config import ContinualConfig
from sleeptrain.continual.methods import run_method

STRATEGIES = ("random", "evolve")
WITHOUT_SLEEP = {"src": "sequential", "rehearsal_src": "rehearsal"}


def trial_config(cfg: ContinualConfig, x: list[float], sleep_length: bool) -> ContinualConfig:
    """The method config of one trial vector (the last entry is the sleep-length factor when `sleep_length`)."""
    factor = x[-1] if sleep_length else 1.0
    vector = x[:-1] if sleep_length else x
    src = cfg.src.with_vector(vector, iterations=max(1, round(cfg.src.iterations * factor)),
                              growth=max(0, round(cfg.src.growth * factor)))
    return replace(cfg, src=src)


def as_overrides(cfg: ContinualConfig) -> str:
    """The `key=value` words that reproduce a trial with `sleeptrain continual`."""
    s = cfg.src
    return (f"src.max_rate={s.max_rate:.6g} src.inc={s.inc:.6g} src.dec={s.dec:.6g} "
            f"src.betas=[{','.join(f'{b:.6g}' for b in s.betas)}] src.alpha_scale={s.alpha_scale:.6g} "
            f"src.iterations={s.iterations} src.growth={s.growth}")


def search(benches: Benchmark | list[Benchmark], cfg: ContinualConfig, trials: int, seed: int = 0, spread: float = 4.0,
           method: str = "src", strategy: str = "random", sleep_length: bool = True,
           on_trial=None, evaluate_on: str = "train", earlier: list[dict] | None = None) -> dict:
    """Run `trials` trials, each scored on every benchmark in `benches` (benchmark k trains with seed + k) on the
    `evaluate_on` split (train | validation); returns {"trials": best first, "reference": the method without sleep,
    "score_key": the trials' score key}. `earlier`: the trials of an interrupted run of the same search."""
    benches = benches if isinstance(benches, list) else [benches]
    key = f"{evaluate_on}_accuracy"

    def score(method_name: str, method_cfg: ContinualConfig) -> tuple[float, list[float]]:
        each = [float(run_method(b, method_name, method_cfg, seed + k, evaluate_on=evaluate_on).matrix[-1].mean())
                for k, b in enumerate(benches)]
        return float(np.mean(each)), each

    if method not in WITHOUT_SLEEP:
        raise ValueError(f"method must be one of {', '.join(WITHOUT_SLEEP)}, got {method!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    mean, each = score(WITHOUT_SLEEP[method], cfg)
    reference = {"method": WITHOUT_SLEEP[method], key: mean, "per_order": each}
    rng = np.random.default_rng([seed, 0x5EA6C])
    start = np.asarray(cfg.src.vector() + ([1.0] if sleep_length else []), dtype=np.float64)
    done = {r["trial"]: r for r in earlier or []}
    results: list[dict] = []
    best_x, best_score = start, -math.inf
    for trial in range(trials):
        x = draw(trial, trials, strategy, start, best_x, rng, math.log(spread))
        before = done.get(trial)
        if before is not None and np.allclose(before["x"], x, rtol=1e-9, atol=0.0):
            results.append(before)
        else:
            results.append(run_trial(trial, x, trial_config(cfg, x.tolist(), sleep_length), method, key, score))
        if results[-1][key] is not None and results[-1][key] > best_score:
            best_x, best_score = x, results[-1][key]
        if on_trial is not None:
            on_trial(results[-1], {"trials": ranked(results, key), "reference": reference, "score_key": key})
    if best_score == -math.inf:
        raise ConfigError(f"search_trials: every one of the {trials} trials diverged; lower sgd.lr or search_spread")
    return {"trials": ranked(results, key), "reference": reference, "score_key": key}


def draw(trial: int, trials: int, strategy: str, start, best_x, rng, log_spread: float):
    """Trial `trial`'s vector (the rng draws the same numbers whatever the scores, for `random`)."""
    if trial == 0:
        return start
    if strategy == "random":
        return start * np.exp(rng.uniform(-log_spread, log_spread, start.shape))
    narrowing = 1.0 - 0.5 * (trial - 1) / max(1, trials - 2)   # spread -> sqrt(spread)
    mutate = rng.random(start.shape) < 2.0 / start.size
    mutate[rng.integers(start.size)] = True
    step = rng.uniform(-log_spread * narrowing, log_spread * narrowing, start.shape)
    return best_x * np.exp(np.where(mutate, step, 0.0))


def run_trial(trial: int, x, tcfg: ContinualConfig, method: str, key: str, score) -> dict:
    try:
        mean, each, note = *score(method, tcfg), None
    except ConfigError as exc:   # diverged: recorded without a score, never chosen
        mean, each, note = None, None, f"diverged: {exc}"
    return {"trial": trial, "x": x.tolist(), key: mean, "per_order": each, "as_overrides": as_overrides(tcfg),
            **({"note": note} if note else {})}


def ranked(results: list[dict], key: str) -> list[dict]:
    """Best first; the diverged trials (no score) last."""
    return sorted(results, key=lambda r: -r[key] if r[key] is not None else math.inf)

"""Replay strategies: which past samples a sleep replays.

A strategy is one function `(k, scores, ages, rng, cfg) -> positions` that picks `k` distinct candidates, registered
with `@register_strategy("name")` (then `replay.strategy=name` is valid). All are vectorised (numpy), so selecting
from 10^7 candidates takes well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from sleeptrain.sleep.registry import STRATEGIES, register_strategy
from sleeptrain.sleep.scores import ScoreBook

if TYPE_CHECKING:
    from sleeptrain.config import ReplayConfig

Strategy = Callable[[int, np.ndarray, np.ndarray, np.random.Generator, "ReplayConfig"], np.ndarray]


def _top_k(keys: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest keys, in no particular order (the sleep reshuffles the buffer anyway)."""
    if k >= keys.shape[0]:
        return np.arange(keys.shape[0])
    return np.argpartition(keys, keys.shape[0] - k)[keys.shape[0] - k:]


def _weighted_without_replacement(weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Efraimidis & Spirakis (2006): the k largest keys log(u)/w are a weighted sample without replacement."""
    u = rng.random(weights.shape[0])
    with np.errstate(divide="ignore"):
        keys = np.log(u) / np.where(weights > 0, weights, 0.0)
    keys[~(weights > 0)] = -np.inf
    return _top_k(keys, k)


@register_strategy("random")
def select_random(k, scores, ages, rng, cfg):
    """Uniform, without replacement."""
    return rng.choice(scores.shape[0], size=min(k, scores.shape[0]), replace=False)


@register_strategy("weighted")
def select_weighted(k, scores, ages, rng, cfg):
    """Probability proportional to the decayed score, without replacement."""
    return _weighted_without_replacement(np.clip(np.nan_to_num(scores), 0, None), k, rng)


@register_strategy("strict")
def select_strict(k, scores, ages, rng, cfg):
    """The k highest decayed scores."""
    return _top_k(np.nan_to_num(scores, nan=-np.inf), k)


@register_strategy("recency")
def select_recency(k, scores, ages, rng, cfg):
    """Naturalistic rehearsal: P(replay) falls as a power law of the steps since the sample was last seen."""
    return _weighted_without_replacement(np.power(ages.astype(np.float64) + 1.0, -cfg.recency_alpha), k, rng)


@dataclass
class Selection:
    indices: np.ndarray          # chosen sample indices
    replay_score_mean: float     # mean decayed score of the chosen samples
    candidate_score_mean: float  # mean decayed score over all candidates


def select_buffer(book: ScoreBook, k: int, cycle: int, step: int, cfg: "ReplayConfig",
                  rng: np.random.Generator) -> Selection:
    book.flush()
    candidates = book.candidates()
    if candidates.size == 0 or k <= 0:
        return Selection(np.zeros(0, dtype=np.int64), float("nan"), float("nan"))
    scores = book.decayed_scores(candidates, cycle, cfg)
    ages = np.maximum(step - book.last_seen_step[candidates], 0)
    positions = STRATEGIES[cfg.strategy](min(k, candidates.size), scores, ages, rng, cfg)
    return Selection(candidates[positions], float(np.nanmean(scores[positions])), float(np.nanmean(scores)))



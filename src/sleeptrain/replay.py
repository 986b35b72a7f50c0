"""Replay: per-sample scores, selection strategies, and sleep batches in new contexts.

Scores are the mean token loss of each sample taken from the training forward pass itself (no second forward;
CLIMB-Sleep's SleepSampler scored by loss too). They accumulate over cycles and decay with age:
`decayed = score * max(decay_rate ** age_in_cycles, min_decay)`.

A strategy is one function `(k, scores, ages, rng, cfg) -> positions` that picks `k` distinct candidates; add one
by writing the function and registering it in `STRATEGIES`. All are vectorised (numpy), so selecting from 10^7
candidates takes well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from sleeptrain.config import ReplayConfig


class ScoreBook:
    """Scores and ages of every training sample. Device tensors are queued and copied to the host in one
    transfer per flush (once per log interval / phase boundary), so the step itself never syncs.

    With several processes each one records the samples of its own shard; `gather` (an all-gather of Python
    objects, e.g. accelerate's `gather_object`) merges the queues at every flush, so every process holds the same
    book and selects the same buffer. Flushes are therefore collective: every process calls them at the same points.
    """

    def __init__(self, n_samples: int, gather=None):
        self.scores = np.full(n_samples, np.nan, dtype=np.float32)
        self.scored_cycle = np.full(n_samples, -1, dtype=np.int32)
        self.last_seen_step = np.full(n_samples, -1, dtype=np.int64)
        self.gather = gather
        self._pending: list[tuple[np.ndarray, torch.Tensor, int, int]] = []

    def record(self, indices: np.ndarray, values: torch.Tensor, cycle: int, step: int) -> None:
        self._pending.append((np.asarray(indices), values.detach(), cycle, step))

    def mark_seen(self, indices: np.ndarray, step: int) -> None:
        self.last_seen_step[indices] = step

    def flush(self) -> None:
        if self._pending:
            values = torch.cat([v.reshape(-1).float() for _, v, _, _ in self._pending]).cpu().numpy()
            indices = np.concatenate([i for i, _, _, _ in self._pending])
            cycles = np.concatenate([np.full(len(i), c, dtype=np.int32) for i, _, c, _ in self._pending])
            steps = np.concatenate([np.full(len(i), s, dtype=np.int64) for i, _, _, s in self._pending])
        else:
            values, indices = np.zeros(0, np.float32), np.zeros(0, np.int64)
            cycles, steps = np.zeros(0, np.int32), np.zeros(0, np.int64)
        self._pending.clear()
        parts = [(indices, values, cycles, steps)]
        if self.gather is not None:
            parts = self.gather(parts)
        for indices, values, cycles, steps in parts:
            self.scores[indices] = values
            self.scored_cycle[indices] = cycles
            self.last_seen_step[indices] = np.maximum(self.last_seen_step[indices], steps)

    def candidates(self) -> np.ndarray:
        """Indices of every sample scored so far."""
        return np.flatnonzero(self.scored_cycle >= 0)

    def decayed_scores(self, indices: np.ndarray, cycle: int, cfg: ReplayConfig) -> np.ndarray:
        age = np.maximum(cycle - self.scored_cycle[indices], 0)
        factor = np.maximum(np.power(cfg.decay_rate, age, dtype=np.float64), cfg.min_decay)
        return (self.scores[indices] * factor).astype(np.float64)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors (for `torch.save`/`torch.load(weights_only=True)`); flush first (collectively)."""
        if self._pending:
            raise RuntimeError("ScoreBook.state_dict: flush() first")
        return {"scores": torch.from_numpy(self.scores.copy()),
                "scored_cycle": torch.from_numpy(self.scored_cycle.copy()),
                "last_seen_step": torch.from_numpy(self.last_seen_step.copy())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("scores", "scored_cycle", "last_seen_step"):
            value = state[name].numpy()
            if value.shape != getattr(self, name).shape:
                raise ValueError(f"replay scores for {value.shape[0]} samples, this run has "
                                 f"{getattr(self, name).shape[0]}")
            setattr(self, name, value.copy())
        self._pending.clear()


# --- strategies -------------------------------------------------------------------------------------------------

Strategy = Callable[[int, np.ndarray, np.ndarray, np.random.Generator, ReplayConfig], np.ndarray]


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


def select_random(k, scores, ages, rng, cfg):
    """Uniform, without replacement."""
    return rng.choice(scores.shape[0], size=min(k, scores.shape[0]), replace=False)


def select_weighted(k, scores, ages, rng, cfg):
    """Probability proportional to the decayed score, without replacement."""
    return _weighted_without_replacement(np.clip(np.nan_to_num(scores), 0, None), k, rng)


def select_strict(k, scores, ages, rng, cfg):
    """The k highest decayed scores."""
    return _top_k(np.nan_to_num(scores, nan=-np.inf), k)


def select_recency(k, scores, ages, rng, cfg):
    """Naturalistic rehearsal: P(replay) falls as a power law of the steps since the sample was last seen."""
    return _weighted_without_replacement(np.power(ages.astype(np.float64) + 1.0, -cfg.recency_alpha), k, rng)


STRATEGIES: dict[str, Strategy] = {
    "random": select_random,
    "weighted": select_weighted,
    "strict": select_strict,
    "recency": select_recency,
}


@dataclass
class Selection:
    indices: np.ndarray          # chosen sample indices
    replay_score_mean: float     # mean decayed score of the chosen samples
    candidate_score_mean: float  # mean decayed score over all candidates


def select_buffer(book: ScoreBook, k: int, cycle: int, step: int, cfg: ReplayConfig,
                  rng: np.random.Generator) -> Selection:
    book.flush()
    candidates = book.candidates()
    if candidates.size == 0 or k <= 0:
        return Selection(np.zeros(0, dtype=np.int64), float("nan"), float("nan"))
    scores = book.decayed_scores(candidates, cycle, cfg)
    ages = np.maximum(step - book.last_seen_step[candidates], 0)
    positions = STRATEGIES[cfg.strategy](min(k, candidates.size), scores, ages, rng, cfg)
    return Selection(candidates[positions], float(np.nanmean(scores[positions])), float(np.nanmean(scores)))


# --- sleep batches -----------------------------------------------------------------------------------------------

class BufferSamples:
    """The replay buffer as a sample source (original contexts)."""

    def __init__(self, samples, indices: np.ndarray):
        self.samples, self.indices = samples, indices

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def get(self, positions):
        return self.samples.get(self.indices[np.asarray(positions)])

    def sample_ids(self, positions) -> np.ndarray | None:
        return self.indices[np.asarray(positions)]


class RepackedSamples:
    """Context-augmented replay: the documents of the buffer's samples are shuffled and packed into new
    fixed-length contexts. Document pieces are cut at `<s>` and after `</s>` (and at sample edges); a piece never straddles
    two contexts; the rest of a context is padding with attention mask 0, so no real token attends to it (the
    reference implementation attended to padding)."""

    def __init__(self, samples, indices: np.ndarray, pad_id: int, rng: np.random.Generator,
                 doc_start_id: int | None = None, doc_end_id: int | None = None):
        ids, mask = samples.get(indices)
        ids, mask = ids.numpy(), mask.numpy().astype(bool)
        seq_len = ids.shape[1]
        pieces: list[np.ndarray] = []
        for row, valid in zip(ids, mask):
            row = row[valid]
            starts = np.flatnonzero(row == doc_start_id) if doc_start_id is not None else np.zeros(0, np.int64)
            ends = np.flatnonzero(row == doc_end_id) + 1 if doc_end_id is not None else np.zeros(0, np.int64)
            cuts = np.union1d(np.union1d(starts, ends), [0])
            cuts = cuts[cuts < row.size]
            pieces.extend(p for p in np.split(row, cuts[1:]) if p.size)
        order = rng.permutation(len(pieces))
        blocks: list[np.ndarray] = []
        current: list[np.ndarray] = []
        used = 0
        for i in order:
            piece = pieces[i]
            if used + piece.size > seq_len and current:
                blocks.append(np.concatenate(current))
                current, used = [], 0
            current.append(piece)
            used += piece.size
        if current:
            blocks.append(np.concatenate(current))
        out = np.full((len(blocks), seq_len), pad_id, dtype=np.int64)
        out_mask = np.zeros((len(blocks), seq_len), dtype=np.int64)
        for r, block in enumerate(blocks):
            out[r, :block.size] = block
            out_mask[r, :block.size] = 1
        self.ids, self.mask = torch.from_numpy(out), torch.from_numpy(out_mask)
        self.source_indices = indices

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def get(self, positions):
        positions = torch.as_tensor(np.asarray(positions), dtype=torch.long)
        return self.ids[positions], self.mask[positions]

    def sample_ids(self, positions) -> None:
        return None  # new contexts mix samples: their losses are not any one sample's score


def sleep_order(n_items: int, n_needed: int, rng: np.random.Generator) -> np.ndarray:
    """Positions for a sleep phase: reshuffled passes over the buffer until `n_needed` are drawn."""
    if n_items == 0:
        return np.zeros(0, dtype=np.int64)
    repeats = -(-n_needed // n_items)
    return np.concatenate([rng.permutation(n_items) for _ in range(repeats)])[:n_needed]

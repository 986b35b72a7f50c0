"""Replay, the sleep phase itself: every training sample is scored as it trains; when a sleep starts a buffer of
past samples is chosen by `replay.strategy` and laid out as the sleep's batches (original or re-packed contexts).

The loop calls, in order: `record` after each step (per-sample losses), `sync` at log intervals and before
checkpoints (collective with several processes), `choose` when a sleep starts, `batch(offset)` for each sleep step
(`rebuild` first when a resumed run re-enters a sleep), `state_dict` / `load_state_dict` with every checkpoint.
"""

from __future__ import annotations

import json
from typing import IO, TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from sleeptrain.sleep.contexts import BufferSamples, RepackedSamples, sleep_order
from sleeptrain.sleep.scores import ScoreBook
from sleeptrain.sleep.strategies import select_buffer

if TYPE_CHECKING:
    from sleeptrain.config import Config


class Replay:
    """Scores, buffer and sleep batches of one run. `samples` is the training sample source (`get(indices)` ->
    ids, mask); `gather` merges the scores of several processes (None for one); `sample_log` (or None) receives
    the chosen buffer of every sleep as one JSON line."""

    def __init__(self, cfg: "Config", samples, pad_id: int, doc_start_id: int | None, doc_end_id: int | None,
                 gather: Callable | None = None, sample_log: IO[str] | None = None):
        self.cfg, self.samples = cfg, samples
        self.pad_id, self.doc_start_id, self.doc_end_id = pad_id, doc_start_id, doc_end_id
        self.enabled = cfg.sleep.replays  # scores are only recorded when a sleep replays them
        self.scores = ScoreBook(len(samples), gather=gather)
        self.sample_log = sample_log
        self._clear()

    def _clear(self) -> None:
        self.indices, self.rng_state = np.zeros(0, dtype=np.int64), None
        self.source, self.positions = None, np.zeros(0, dtype=np.int64)

    # --- every step ---
    def record(self, sample_ids: np.ndarray, losses: torch.Tensor, cycle: int, step: int) -> None:
        self.scores.record(sample_ids, losses, cycle, step)

    def sync(self) -> None:
        """Copy queued scores to the host (and merge them across processes): collective."""
        self.scores.flush()

    # --- a sleep ---
    def choose(self, stage, step: int) -> dict[str, Any]:
        """Select this sleep's buffer and lay out its batches; returns the fields of the `sleep_start` record."""
        self._clear()
        if not stage.steps:
            return {"buffer_size": 0, "replay_score_mean": None, "candidate_score_mean": None}
        rng = np.random.default_rng([self.cfg.seed, 0x51EE9, stage.cycle])
        selection = select_buffer(self.scores, stage.buffer_size, stage.cycle, step, self.cfg.replay, rng)
        self.scores.mark_seen(selection.indices, step)
        self.indices, self.rng_state = selection.indices, rng.bit_generator.state
        if self.sample_log is not None:
            self.sample_log.write(json.dumps({"step": step, "phase": "buffer", "cycle": stage.cycle,
                                              "indices": np.sort(selection.indices).tolist()}) + "\n")
        self.rebuild(stage)
        return {"buffer_size": int(selection.indices.size), "contexts": len(self.source),
                "replay_score_mean": selection.replay_score_mean,
                "candidate_score_mean": selection.candidate_score_mean,
                "candidates": int(self.scores.candidates().size), "strategy": self.cfg.replay.strategy}

    def rebuild(self, stage) -> None:
        """The sleep's sample source and batch order: a pure function of the buffer and the RNG state after the
        selection, so a resumed sleep rebuilds exactly the batches of the interrupted one."""
        if self.rng_state is None:
            self.source, self.positions = None, np.zeros(0, dtype=np.int64)
            return
        rng = np.random.default_rng()
        rng.bit_generator.state = self.rng_state
        if self.cfg.replay.context_augment:
            self.source = RepackedSamples(self.samples, self.indices, self.pad_id, rng,
                                          doc_start_id=self.doc_start_id, doc_end_id=self.doc_end_id)
        else:
            self.source = BufferSamples(self.samples, self.indices)
        self.positions = sleep_order(len(self.source), stage.steps * self.cfg.train.batch_size, rng)

    def batch(self, offset: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray | None]:
        """(ids, mask, sample ids or None) of sleep step `offset`."""
        size = self.cfg.train.batch_size
        positions = self.positions[offset * size:(offset + 1) * size]
        return (*self.source.get(positions), self.source.sample_ids(positions))

    # --- checkpoints ---
    def state_dict(self, sleeping: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Scores and the current buffer; the buffer's RNG state only inside a sleep (to rebuild its batches)."""
        return ({"sleep_rng_state": self.rng_state if sleeping else None},
                {**{f"scores.{k}": v for k, v in self.scores.state_dict().items()},
                 "sleep_indices": torch.from_numpy(self.indices)})

    def load_state_dict(self, values: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.scores.load_state_dict({k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("scores.")})
        self.indices = tensors["sleep_indices"].numpy().astype(np.int64)
        self.rng_state = values["sleep_rng_state"]

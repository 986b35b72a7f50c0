"""The sleep's samples: the replay buffer in its original contexts, or re-packed into new ones, and their order."""

from __future__ import annotations

import numpy as np
import torch


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
        self.ids, self.mask = out, out_mask  # NumPy, gathered with NumPy as the wake samples are (see `get`)
        self.source_indices = indices

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def get(self, positions):
        """The contexts at `positions`, as torch tensors over NumPy gathers: this runs on the prefetch thread
        while the step trains, and NumPy work there stays off torch's intra-op thread pool."""
        positions = np.asarray(positions, dtype=np.int64)
        return torch.from_numpy(self.ids[positions]), torch.from_numpy(self.mask[positions])

    def sample_ids(self, positions) -> None:
        return None  # new contexts mix samples: their losses are not any one sample's score


def sleep_order(n_items: int, n_needed: int, rng: np.random.Generator) -> np.ndarray:
    """Positions for a sleep phase: reshuffled passes over the buffer until `n_needed` are drawn."""
    if n_items == 0:
        return np.zeros(0, dtype=np.int64)
    repeats = -(-n_needed // n_items)
    return np.concatenate([rng.permutation(n_items) for _ in range(repeats)])[:n_needed]

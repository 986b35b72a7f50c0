"""Training samples over a token tape, addressed by integer index, and the batches built from them.

A *sample* is what the sampler orders and (later) what replay scores and re-visits, so it has a stable index:
- `PackedBlocks`: sample i = tokens [i*L, (i+1)*L) of the tape (the last block padded, no token dropped);
- `RandomWindows`: sample i = a window of L tokens at a seeded random offset (random windows over one tape); the
  set of windows is fixed for the run, so a sample means the same tokens every time;
- `EpochWindows`: FORGETTER's epochs (Miura et al.; the authors' `torch.randint` window starts): every epoch draws
  its own `per_epoch` window starts uniformly from the tape, from a generator seeded by (run seed, epoch); sample
  i is window i % per_epoch of epoch i // per_epoch, so a resumed run draws exactly the same windows.
Batch builders turn `(input_ids, attention_mask)` into model inputs with labels: causal LM labels are the inputs
(pad -> -100, the model shifts); masked LM uses HF's `DataCollatorForLanguageModeling` masking (15%, 80/10/10).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import torch

from sleeptrain.data.token_store import TokenStore
from sleeptrain.errors import DataError

IGNORE_INDEX = -100


class PackedBlocks:
    def __init__(self, store: TokenStore, seq_len: int, pad_id: int):
        if store.n_tokens == 0:
            raise DataError("data: the split has no tokens")
        self.store, self.seq_len, self.pad_id = store, seq_len, pad_id
        self.starts = np.arange(0, store.n_tokens, seq_len, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def get(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), each (len(indices), seq_len) int64; padding where the tape ends."""
        pos = self.starts[np.asarray(indices, dtype=np.int64)][:, None] + np.arange(self.seq_len)
        valid = pos < self.store.n_tokens
        ids = np.asarray(self.store.ids[np.minimum(pos, self.store.n_tokens - 1)], dtype=np.int64)
        ids[~valid] = self.pad_id
        return torch.from_numpy(ids), torch.from_numpy(valid.astype(np.int64))

    @property
    def n_tokens(self) -> int:
        return self.store.n_tokens


class RandomWindows(PackedBlocks):
    """`n_windows` windows at uniform random starts, drawn once from a generator seeded by (seed, *stream);
    `key` names the setting that asked for them in errors."""

    def __init__(self, store: TokenStore, seq_len: int, pad_id: int, n_windows: int | None, seed: int,
                 stream: tuple[int, ...] = (0x57A11,), key: str = "data.packing"):
        if store.n_tokens < seq_len:
            raise DataError(f"{key}: windows need at least data.seq_len={seq_len} tokens, "
                            f"the split has {store.n_tokens}")
        self.store, self.seq_len, self.pad_id = store, seq_len, pad_id
        n = n_windows or max(1, store.n_tokens // seq_len)
        rng = np.random.default_rng([seed, *stream])
        self.starts = rng.integers(0, store.n_tokens - seq_len + 1, size=n, dtype=np.int64)


class EpochWindows(PackedBlocks):
    def __init__(self, store: TokenStore, seq_len: int, pad_id: int, per_epoch: int, n_epochs: int, seed: int):
        if store.n_tokens < seq_len:
            raise DataError(f"schedule.steps_per_epoch: windows need at least data.seq_len={seq_len} tokens, "
                            f"the split has {store.n_tokens}")
        self.store, self.seq_len, self.pad_id = store, seq_len, pad_id
        self.per_epoch, self.n_epochs, self.seed = per_epoch, n_epochs, seed
        self._epoch_starts = lru_cache(maxsize=2)(self._draw)

    def _draw(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 0xE90C, epoch])
        return rng.integers(0, self.store.n_tokens - self.seq_len + 1, size=self.per_epoch, dtype=np.int64)

    def __len__(self) -> int:
        return self.per_epoch * self.n_epochs

    def epoch_starts(self, epoch: int) -> np.ndarray:
        """The window starts of `epoch`, in the order training visits them."""
        return self._epoch_starts(epoch)

    def windows_sha256(self, epoch: int) -> str:
        """A digest of `epoch`'s window starts (logged with every epoch: same seed, same windows)."""
        return hashlib.sha256(self.epoch_starts(epoch).tobytes()).hexdigest()

    def get(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        indices = np.asarray(indices, dtype=np.int64)
        epochs, positions = np.divmod(indices, self.per_epoch)
        starts = np.empty(indices.shape[0], dtype=np.int64)
        for epoch in np.unique(epochs):
            rows = epochs == epoch
            starts[rows] = self.epoch_starts(int(epoch))[positions[rows]]
        pos = starts[:, None] + np.arange(self.seq_len)
        ids = np.asarray(self.store.ids[pos], dtype=np.int64)
        return torch.from_numpy(ids), torch.ones(ids.shape, dtype=torch.int64)


def make_samples(store: TokenStore, seq_len: int, pad_id: int, packing: str = "blocks",
                 n_windows: int | None = None, seed: int = 0) -> PackedBlocks:
    if packing == "windows":
        return RandomWindows(store, seq_len, pad_id, n_windows, seed)
    return PackedBlocks(store, seq_len, pad_id)


class CausalBatcher:
    """Labels = inputs (HF causal models shift them inside); padding is ignored."""

    masked = False

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class MaskedBatcher:
    """RoBERTa-style masking via HF's collator, drawing from our own seeded generator (reproducible)."""

    masked = True

    def __init__(self, tokenizer, mlm_probability: float, seed: int):
        from transformers import DataCollatorForLanguageModeling

        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mlm_probability)
        self.generator = torch.Generator().manual_seed(seed)
        self.collator.generator = self.generator
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        special = torch.isin(input_ids, self.special_ids) | (attention_mask == 0)
        inputs, labels = self.collator.torch_mask_tokens(input_ids.clone(), special_tokens_mask=special)
        return {"input_ids": inputs, "attention_mask": attention_mask, "labels": labels}


def make_batcher(tokenizer, masked: bool, mlm_probability: float = 0.15, seed: int = 0):
    return MaskedBatcher(tokenizer, mlm_probability, seed) if masked else CausalBatcher()

"""Words, not steps: how many words of training text a run has consumed, and BabyLM's word-count checkpoints.

BabyLM budgets and checkpoints are counted in words (the 2025 rules: a model folder at 1M, 2M, ..., 10M words seen,
then every 10M up to 100M, uploaded as branches `chck_1M` ... `chck_100M`). A word here is a whitespace-delimited
word of the training lines, counted every time the tokens that carry it are trained on (epochs and replay count
again). It is counted from the trained token ids themselves, so it holds for blocks, random windows and replay's
re-packed contexts alike: a word starts at every token whose text starts a whitespace word — byte-level BPE's `Ġ`
(the tokenizers here add a prefix space, so a line's first word has it too) or SentencePiece's `▁` followed by text,
a bare space token followed by a token without one (the vocabulary had no merge for that word's first letter), or,
for WordPiece, every token that does not continue a word (`##`). Special tokens and padding never count. With
byte-level BPE this equals `len(line.split())` summed over the lines exactly, odd spacing included (tested), except
where a context ends between a bare space and its word (counted in the context holding the space).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sleeptrain.config import BABYLM_2025_MILESTONES  # noqa: F401  (the schema declares the default)


def token_tables(tokenizer) -> dict[str, np.ndarray]:
    """Per token id: `start` — the token opens a word by itself (a space marker followed by text, or a WordPiece
    token that does not continue one); `bare` — the token is only space markers (extra spaces, or a word's leading
    space that the vocabulary could not merge with its first letter); `text` — a non-special token that does not
    begin with a space marker (what follows a bare space when it opened a word)."""
    vocab = tokenizer.get_vocab()
    size = max(len(tokenizer), max(vocab.values()) + 1)
    start, bare, text = (np.zeros(size, dtype=bool) for _ in range(3))
    marker = next((m for m in ("Ġ", "▁") if any(p.startswith(m) for p in vocab)), None)
    for piece, i in vocab.items():
        if marker is None:  # WordPiece
            start[i] = not piece.startswith("##")
            continue
        spaces = len(piece) - len(piece.lstrip(marker))
        start[i] = 0 < spaces < len(piece)
        bare[i] = spaces == len(piece) and spaces > 0
        text[i] = spaces == 0
    special = list(set(tokenizer.all_special_ids))
    start[special] = bare[special] = text[special] = False
    return {"start": start, "bare": bare, "text": text}


def word_start_table(tokenizer) -> np.ndarray:
    """bool per token id: True where the token opens a word by itself (see `token_tables`)."""
    return token_tables(tokenizer)["start"]


def count_word_starts(ids: torch.Tensor, mask: torch.Tensor, tables: dict[str, torch.Tensor]) -> int:
    """Words begun in a batch of rows: tokens that open a word, plus bare space tokens followed by text (or ending
    the row: the word goes on in the next context)."""
    ids = ids.clamp(min=0, max=len(tables["start"]) - 1)
    mask = mask.bool()
    starts = tables["start"][ids] & mask
    bare = tables["bare"][ids] & mask
    followed = tables["text"][ids[:, 1:]] & mask[:, 1:]
    opened = bare[:, :-1] & followed
    ends_row = bare[:, -1]
    return int(starts.sum()) + int(opened.sum()) + int(ends_row.sum())


def milestone_name(words: int) -> str:
    """`chck_1M`, `chck_100M`, `chck_300K`, or the plain count when it is not a round thousand."""
    if words % 1_000_000 == 0:
        return f"chck_{words // 1_000_000}M"
    if words % 1_000 == 0:
        return f"chck_{words // 1_000}K"
    return f"chck_{words}"


class WordMeter:
    """Counts the words trained on and saves a model folder when the count passes a milestone."""

    def __init__(self, tokenizer, milestones: list[int], run_dir: Path, is_main: bool = True):
        self.tables = {k: torch.from_numpy(v) for k, v in token_tables(tokenizer).items()}
        self.pending = sorted(set(milestones))  # not handled yet by this process (smallest first)
        self.run_dir, self.is_main = Path(run_dir), is_main

    def count(self, ids: torch.Tensor, mask: torch.Tensor) -> int:
        """The words of a (global) batch: its attended word-start tokens (the loop adds them to its `LoopState`)."""
        return count_word_starts(ids, mask, self.tables)

    def save_due(self, words: int, save: Callable[[Path], None], log: Callable[[dict[str, Any]], None],
                 step: int) -> None:
        """With `words` trained on so far, write the folder of every milestone just reached with `save(folder)` (the
        main process only) and log it; one comparison per step otherwise. A folder that exists (written before a
        resume) is kept."""
        while self.pending and self.pending[0] <= words:
            milestone = self.pending.pop(0)
            folder = self.run_dir / milestone_name(milestone)
            if folder.exists():
                continue
            if self.is_main:
                save(folder)
            log({"event": "milestone", "words": milestone, "words_seen": words, "step": step,
                 "dir": str(folder)})

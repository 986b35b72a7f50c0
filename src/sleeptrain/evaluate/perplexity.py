"""Perplexity on a corpus split, overall and per source file.

Causal LM: token perplexity over the split's token tape (documents wrapped as in training), evaluated in
windows of `seq_len` tokens that each score `stride` new tokens (default seq_len - 1: packed blocks overlapping by
the one context token; smaller: sliding windows, each token scored once with more context). Document-start tokens are not scored (after `</s>` they are certain).
Masked LM: pseudo-perplexity on a seeded sample of `mlm_positions` token positions, each masked alone within its
block of `seq_len` tokens: exp(-mean log p(token | rest of block)).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sleeptrain.data.token_store import TokenStore, encode_documents
from sleeptrain.evaluate.scoring import batch_progress


def scoring_windows(n_tokens: int, seq_len: int, stride: int):
    """(begin, end, first scored target) of each window of at most `seq_len` tokens: `stride` new targets per
    window (at most seq_len - 1, so every target has context); every position 1..n-1 is scored exactly once."""
    stride = max(1, min(stride, seq_len - 1))
    first = 1
    while first < n_tokens:
        end = min(first + stride, n_tokens)
        yield max(0, end - seq_len), end, first
        first = end


@torch.no_grad()
def causal_nll(model, store: TokenStore, seq_len: int, stride: int, batch_size: int, skip_id: int | None,
               pad_id: int, progress: bool = False) -> tuple[float, int]:
    device = next(model.parameters()).device
    ids = np.asarray(store.ids, dtype=np.int64)
    windows = list(scoring_windows(len(ids), seq_len, stride))
    total, count = 0.0, 0
    for i in batch_progress(range(0, len(windows), batch_size), progress, "perplexity"):
        chunk = windows[i:i + batch_size]
        width = max(e - b for b, e, _ in chunk)
        inputs = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attn = torch.zeros_like(inputs)
        scored = torch.zeros((len(chunk), width), dtype=torch.bool)
        for r, (b, e, first) in enumerate(chunk):
            inputs[r, :e - b] = torch.from_numpy(ids[b:e])
            attn[r, :e - b] = 1
            scored[r, first - b:e - b] = True
        if skip_id is not None:
            scored &= inputs != skip_id
        logits = model(input_ids=inputs.to(device), attention_mask=attn.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, inputs[:, 1:, None].to(device))[..., 0]
        take = scored[:, 1:].to(device)
        total -= float(logp[take].sum(dtype=torch.float64))
        count += int(take.sum())
    return total, count


@torch.no_grad()
def masked_nll(model, store: TokenStore, seq_len: int, n_positions: int, batch_size: int, special_ids: set[int],
               mask_id: int, seed: int, progress: bool = False) -> tuple[float, int]:
    device = next(model.parameters()).device
    ids = np.asarray(store.ids, dtype=np.int64)
    candidates = np.flatnonzero(~np.isin(ids, list(special_ids)))
    if candidates.size == 0:
        return 0.0, 0
    rng = np.random.default_rng([seed, 0xE7A1])
    chosen = np.sort(rng.choice(candidates, size=min(n_positions, candidates.size), replace=False))
    total = 0.0
    for i in batch_progress(range(0, len(chosen), batch_size), progress, "pseudo-perplexity"):
        pos = chosen[i:i + batch_size]
        starts = (pos // seq_len) * seq_len
        ends = np.minimum(starts + seq_len, len(ids))
        width = int((ends - starts).max())
        inputs = torch.full((len(pos), width), mask_id, dtype=torch.long)
        attn = torch.zeros_like(inputs)
        for r, (b, e) in enumerate(zip(starts, ends)):
            inputs[r, :e - b] = torch.from_numpy(ids[b:e])
            attn[r, :e - b] = 1
        offsets = torch.from_numpy(pos - starts)
        answers = inputs[torch.arange(len(pos)), offsets].clone()
        inputs[torch.arange(len(pos)), offsets] = mask_id
        logits = model(input_ids=inputs.to(device), attention_mask=attn.to(device)).logits
        picked = logits[torch.arange(len(pos)), offsets.to(device)].float()
        total -= float(torch.log_softmax(picked, -1)[torch.arange(len(pos)), answers.to(device)].sum(dtype=torch.float64))
    return total, len(chosen)


def perplexity(model, tokenizer, lines_by_source: dict[str, list[str]], masked: bool, seq_len: int,
               stride: int | None = None, batch_size: int = 32, mlm_positions: int = 2000, seed: int = 0,
               progress: bool = False) -> dict:
    results, total_nll, total_count = {}, 0.0, 0
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for source in sorted(lines_by_source):
        store = encode_documents({source: lines_by_source[source]}, tokenizer)
        if masked:
            nll, count = masked_nll(model, store, seq_len, mlm_positions, batch_size,
                                    set(tokenizer.all_special_ids), tokenizer.mask_token_id, seed, progress)
        else:
            skip = tokenizer.bos_token_id if tokenizer.bos_token_id != tokenizer.eos_token_id else None
            nll, count = causal_nll(model, store, seq_len, stride or seq_len - 1, batch_size, skip, pad_id, progress)
        results[source] = _summary(nll, count)
        total_nll += nll
        total_count += count
    kind = ("pseudo-perplexity of masked tokens (sampled positions)" if masked
            else "token perplexity (document-start tokens not scored)")
    return {"overall": _summary(total_nll, total_count), "by_source": results, "kind": kind,
            "seq_len": seq_len, "stride": None if masked else (stride or seq_len - 1),
            "positions_per_source": mlm_positions if masked else None}


def _summary(nll: float, count: int) -> dict:
    loss = nll / count if count else float("nan")
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)) if count else float("nan"), "tokens": count}

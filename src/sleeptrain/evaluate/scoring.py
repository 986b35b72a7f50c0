"""Sentence scores in float32, batched and sorted by length.

- Causal LM: log P(sentence) = sum of log-probabilities of all its tokens, with the tokenizer's BOS (or, lacking
  one, its EOS/separator) prepended so the first word is scored too.
- Masked LM: pseudo-log-likelihood (Salazar et al. 2020): each token masked in turn, all masked copies batched
  together; `pll_word_l2r` (Kauf & Ivanova 2023) also masks the rest of the current word to the right, which
  removes PLL's bias towards multi-token words.
The `naive_*` functions score one sentence (or one masked copy) at a time without padding: the reference the
batched versions are tested and benchmarked against.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from sleeptrain.config import MLM_METHODS


def _prefix_id(tokenizer) -> int:
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.cls_token_id):
        if tid is not None:
            return tid
    raise ValueError("the tokenizer has no BOS, EOS or CLS token to put before a sentence")


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else _prefix_id(tokenizer)


def batch_progress(starts, progress: bool, desc: str):
    """`starts` wrapped in a progress bar on stderr (with an ETA) when `progress`."""
    if not progress:
        return starts
    from tqdm.auto import tqdm

    return tqdm(starts, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def _batches(lengths, batch_size: int, progress: bool = False, desc: str = "") -> Iterator[np.ndarray]:
    order = np.argsort(-np.asarray(lengths), kind="stable")
    for i in batch_progress(range(0, len(order), batch_size), progress, desc):
        yield order[i:i + batch_size]


def _pad(sequences: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """(padded ids (n, max_len) int64, lengths (n,)) built once, so batches are slices, not Python loops."""
    lengths = np.fromiter((len(x) for x in sequences), dtype=np.int64, count=len(sequences))
    padded = np.full((len(sequences), int(lengths.max()) if len(sequences) else 0), pad, dtype=np.int64)
    for i, x in enumerate(sequences):
        padded[i, :len(x)] = x
    return padded, lengths


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def causal_token_ids(tokenizer, sentences: list[str]) -> list[list[int]]:
    prefix = _prefix_id(tokenizer)
    encoded = tokenizer(sentences, add_special_tokens=False)["input_ids"]
    return [[prefix] + ids for ids in encoded]


@torch.no_grad()
def causal_logprobs(model, tokenizer, sentences: list[str], batch_size: int = 64,
                    progress: bool = False) -> np.ndarray:
    """log P(sentence) for each sentence (float64 array), the model run in float32."""
    device = _device_of(model)
    padded, lengths = _pad(causal_token_ids(tokenizer, sentences), _pad_id(tokenizer))
    out = np.zeros(len(sentences), dtype=np.float64)
    for batch in _batches(lengths, batch_size, progress, f"scoring {len(sentences):,} sentences"):
        width = int(lengths[batch].max())
        inputs = torch.from_numpy(padded[batch, :width]).to(device)
        mask = torch.from_numpy(np.arange(width)[None, :] < lengths[batch][:, None]).to(device)
        logits = model(input_ids=inputs, attention_mask=mask.long()).logits[:, :-1].float()
        target = logits.gather(-1, inputs[:, 1:, None])[..., 0] - torch.logsumexp(logits, dim=-1)
        out[batch] = (target * mask[:, 1:]).sum(dim=1, dtype=torch.float64).cpu().numpy()
    return out


@torch.no_grad()
def naive_causal_logprob(model, tokenizer, sentence: str) -> float:
    ids = torch.tensor([causal_token_ids(tokenizer, [sentence])[0]], device=_device_of(model))
    logits = model(input_ids=ids).logits.float()
    logp = torch.log_softmax(logits[0, :-1], dim=-1)
    return float(logp.gather(-1, ids[0, 1:, None]).sum(dtype=torch.float64))


def masked_targets(tokenizer, sentences: list[str], method: str = "pll"):
    """Per sentence: input ids (with the model's special tokens) and, per scored position, the positions masked."""
    if method not in MLM_METHODS:
        raise ValueError(f"unknown masked-LM scoring method {method!r}; choose one of {', '.join(MLM_METHODS)}")
    enc = tokenizer(sentences, add_special_tokens=True, return_special_tokens_mask=True)
    items = []
    for s in range(len(sentences)):
        ids, special = enc["input_ids"][s], enc["special_tokens_mask"][s]
        words = enc.word_ids(s) if method == "pll_word_l2r" else None
        targets = []
        for i, is_special in enumerate(special):
            if is_special:
                continue
            masked = [i]
            if words is not None and words[i] is not None:
                masked += [j for j in range(i + 1, len(ids)) if words[j] == words[i] and not special[j]]
            targets.append((i, masked))
        items.append((ids, targets))
    return items


@torch.no_grad()
def masked_pll(model, tokenizer, sentences: list[str], batch_size: int = 64, method: str = "pll",
               progress: bool = False) -> np.ndarray:
    """Pseudo-log-likelihood of each sentence (float64 array): all masked copies of all sentences, batched."""
    device, mask_id = _device_of(model), tokenizer.mask_token_id
    if mask_id is None:
        raise ValueError("the tokenizer has no mask token, which masked-LM scoring needs")
    items = masked_targets(tokenizer, sentences, method)
    padded, lengths = _pad([ids for ids, _ in items], _pad_id(tokenizer))
    row_sentence = np.array([s for s, (_, targets) in enumerate(items) for _ in targets], dtype=np.int64)
    row_position = np.array([i for _, targets in items for i, _ in targets], dtype=np.int64)
    row_extra = [masked[1:] for _, targets in items for _, masked in targets]  # pll_word_l2r: rest of the word
    out = np.zeros(len(sentences), dtype=np.float64)
    for batch in _batches(lengths[row_sentence], batch_size, progress,
                          f"scoring {len(sentences):,} sentences ({len(row_sentence):,} masked copies)"):
        owners, positions = row_sentence[batch], row_position[batch]
        width = int(lengths[owners].max())
        inputs = padded[owners, :width].copy()
        answers = inputs[np.arange(len(batch)), positions]
        inputs[np.arange(len(batch)), positions] = mask_id
        for r, k in enumerate(batch):
            if row_extra[k]:
                inputs[r, row_extra[k]] = mask_id
        attn = (np.arange(width)[None, :] < lengths[owners][:, None]).astype(np.int64)
        logits = model(input_ids=torch.from_numpy(inputs).to(device), attention_mask=torch.from_numpy(attn).to(device)).logits
        picked = logits[torch.arange(len(batch), device=device), torch.from_numpy(positions).to(device)].float()
        logp = picked.gather(-1, torch.from_numpy(answers).to(device)[:, None])[:, 0] - torch.logsumexp(picked, dim=-1)
        np.add.at(out, owners, logp.double().cpu().numpy())
    return out


@torch.no_grad()
def naive_masked_pll(model, tokenizer, sentence: str, method: str = "pll") -> float:
    device, mask_id = _device_of(model), tokenizer.mask_token_id
    (ids, targets), = masked_targets(tokenizer, [sentence], method)
    total = 0.0
    for i, masked in targets:
        inputs = torch.tensor([ids], device=device)
        inputs[0, masked] = mask_id
        logp = torch.log_softmax(model(input_ids=inputs).logits[0, i].float(), dim=-1)
        total += float(logp[ids[i]])
    return total


def sentence_scores(model, tokenizer, sentences: list[str], masked: bool, batch_size: int = 64,
                    method: str = "pll", progress: bool = False) -> np.ndarray:
    if masked:
        return masked_pll(model, tokenizer, sentences, batch_size, method, progress)
    return causal_logprobs(model, tokenizer, sentences, batch_size, progress)

"""Validation loss: token-weighted mean of the training loss over the dev split, in float32.

Masked LMs draw their masks from a generator re-seeded at every evaluation, so successive evaluations score the
same masked positions and their losses are comparable.
"""

from __future__ import annotations

import math

import torch

from sleeptrain.data.samples import PackedBlocks, make_batcher
from sleeptrain.lm.losses import token_losses


@torch.no_grad()
def validation_loss(model, samples: PackedBlocks, tokenizer, *, masked: bool, batch_size: int, device,
                    max_batches: int | None = None, mlm_probability: float = 0.15, seed: int = 0,
                    autocast=None) -> dict[str, float]:
    batcher = make_batcher(tokenizer, masked, mlm_probability, seed=seed + 1_000_003)
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    n_batches = math.ceil(len(samples) / batch_size)
    if max_batches:
        n_batches = min(n_batches, max_batches)
    for b in range(n_batches):
        idx = range(b * batch_size, min((b + 1) * batch_size, len(samples)))
        batch = {k: v.to(device) for k, v in batcher(*samples.get(list(idx))).items()}
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss, mask = token_losses(logits, batch["labels"], causal=not masked)
        total += loss.sum(dtype=torch.float64)
        count += mask.sum()
    model.train(was_training)
    mean = (total / count.clamp_min(1)).item()
    return {"val_loss": mean, "val_ppl": math.exp(min(mean, 50.0)), "val_tokens": int(count.item())}

"""Token losses computed from the training forward pass itself, in float32.

Why ours and not the model's built-in loss: the same per-token losses give the step loss *and* per-sample scores
(mean loss over the positions that count), which replay strategies rank without a second forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sleeptrain.data.samples import IGNORE_INDEX


def token_losses(logits: torch.Tensor, labels: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, counts) per position, shape (B, T'): causal LMs predict token t+1 from position t (shifted labels);
    masked LMs predict the masked positions. Positions with label -100 have loss 0 and count 0."""
    if causal:
        logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE_INDEX
    loss = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1).clamp_min(0), reduction="none"
    ).view(labels.shape)
    return loss * mask, mask


def per_sample_loss(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean token loss of each sample over the positions that count (0 where none do)."""
    counts = mask.sum(dim=1)
    return loss.sum(dim=1) / counts.clamp_min(1)

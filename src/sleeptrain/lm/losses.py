"""Token losses computed from the training forward pass itself, in float32.

Why ours and not the model's built-in loss: the same per-token losses give the step loss *and* per-sample scores
(mean loss over the positions that count), which replay strategies rank without a second forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sleeptrain.data.samples import IGNORE_INDEX
from sleeptrain.lm.chunked_loss import DEFAULT_CHUNK_BYTES, causal_chunked_losses


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


def sample_loss_from_logits(logits: torch.Tensor, labels: torch.Tensor, causal: bool) -> torch.Tensor:
    """Each row's mean token loss from the model's logits (what a sleep hook differentiates per sample)."""
    loss, counted = token_losses(logits, labels, causal)
    return per_sample_loss(loss, counted)


def resolve_loss_impl(impl: str, masked: bool) -> str:
    """`auto` -> chunked for causal LMs, plain for masked LMs (their head is not one bias-free Linear)."""
    return ("plain" if masked else "chunked") if impl == "auto" else impl


def forward_losses(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor,
                   masked: bool, scale: float, impl: str = "plain",
                   chunk_bytes: int = DEFAULT_CHUNK_BYTES, compiled: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training forward pass: (scale × summed token loss, per-token losses, counted mask), through the model's
    logits (`plain`) or through `chunked_loss.causal_chunked_losses` (`chunked`, causal LMs; `compiled`: its blocks
    under torch.compile, as `train.compile=true` asks)."""
    if impl == "chunked":
        return causal_chunked_losses(model, input_ids, attention_mask, labels, scale, chunk_bytes, compiled)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    token_loss, counted = token_losses(logits, labels, causal=not masked)
    return token_loss.sum() * scale, token_loss, counted

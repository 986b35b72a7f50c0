"""The output projection and cross-entropy fused and chunked: no full-vocabulary float32 logits.

A causal LM's loss needs logits of shape (tokens, vocab) — at vocab 32k, seq 512, batch 12 that is 786 MB in
float32, and autograd keeps several such tensors (the logits, their log-softmax, the gradient). `linear_cross_entropy`
computes the same per-token losses a block of rows at a time (at most `chunk_bytes` of logits alive), and in the same
pass the gradients with respect to the hidden states and the projection weight — the idea of Liger-Kernel's fused
linear cross-entropy (Hsu et al. 2024), in plain PyTorch for any device. The gradients are stored (hidden-sized and
weight-sized) and scaled by the incoming gradient in backward, which is exact because the returned loss is a scalar.

It also returns every token's loss (detached): the per-sample replay scores come from the same pass.

With `train.compile=true` each block goes through `torch.compile` as well (`compiled=True`): the block's
log-sum-exp, gather, softmax and scaling fuse into a couple of passes over its logits instead of one per operation
(measured in docs/PERFORMANCE.md); the eager path works in place on one logits buffer instead.
"""

from __future__ import annotations

import torch

from sleeptrain.data.samples import IGNORE_INDEX

DEFAULT_CHUNK_BYTES = 64 * 2**20


def block_terms(h: torch.Tensor, weight: torch.Tensor, t: torch.Tensor, tw: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One block of rows: (per-token losses, their weighted gradient w.r.t. `h`, the block's share of the gradient
    w.r.t. `weight`), eagerly and in place on one float32 logits buffer."""
    valid = t != IGNORE_INDEX
    t = t.clamp_min(0)
    logits = (h @ weight.t()).float()
    lse = torch.logsumexp(logits, dim=-1)
    losses = (lse - logits.gather(1, t[:, None]).squeeze(1)) * valid
    probs = logits.sub_(lse[:, None]).exp_()          # softmax, in the logits' memory
    probs[torch.arange(t.shape[0], device=t.device), t] -= 1.0
    probs.mul_((tw * valid)[:, None])
    return losses, probs.to(weight.dtype) @ weight, probs.t().to(h.dtype) @ h


def _block_terms_functional(h, weight, t, tw):
    """`block_terms` without in-place updates, for torch.compile to fuse (the target's -1 as a comparison with
    the class index, which fuses into the softmax pass instead of a scatter)."""
    valid = t != IGNORE_INDEX
    t = t.clamp_min(0)
    logits = (h @ weight.t()).float()
    lse = torch.logsumexp(logits, dim=-1)
    losses = (lse - logits.gather(1, t[:, None]).squeeze(1)) * valid
    classes = torch.arange(logits.shape[1], device=logits.device)
    probs = (logits - lse[:, None]).exp() - (classes[None, :] == t[:, None]).to(logits.dtype)
    probs = probs * (tw * valid)[:, None]
    return losses, probs.to(weight.dtype) @ weight, probs.t().to(h.dtype) @ h


_compiled_block_terms = None


def compiled_block_terms():
    """`block_terms` under torch.compile (built on first use; shapes become dynamic after the first new one)."""
    global _compiled_block_terms
    if _compiled_block_terms is None:
        _compiled_block_terms = torch.compile(_block_terms_functional)
    return _compiled_block_terms


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, token_weights, rows, compiled):
        n = hidden.shape[0]
        losses = torch.zeros(n, dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        terms = compiled_block_terms() if compiled else block_terms
        for start in range(0, n, rows):
            block = slice(start, start + rows)
            losses[block], grad_hidden[block], grad_w = terms(hidden[block], weight, targets[block],
                                                              token_weights[block])
            grad_weight += grad_w
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        ctx.mark_non_differentiable(losses)
        return (losses * token_weights).sum(), losses

    @staticmethod
    def backward(ctx, grad_loss, grad_losses):
        grad_hidden, grad_weight = ctx.saved_tensors
        return ((grad_hidden * grad_loss).to(ctx.dtypes[0]), (grad_weight * grad_loss).to(ctx.dtypes[1]),
                None, None, None, None)


def rows_per_chunk(vocab_size: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Rows of float32 logits that fit in `chunk_bytes`."""
    return max(1, chunk_bytes // (4 * vocab_size))


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         token_weights: torch.Tensor, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                         compiled: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_i w_i * CE(hidden_i @ weight.T, target_i), per-token losses) for hidden (N, H), weight (V, H), targets
    (N,) with IGNORE_INDEX where nothing is predicted (loss 0) and float weights (N,). Differentiable in hidden and
    weight; the per-token losses are not. `compiled`: each block through torch.compile."""
    rows = rows_per_chunk(weight.shape[0], chunk_bytes)
    return _LinearCrossEntropy.apply(hidden, weight, targets, token_weights.float(), rows, compiled)


def causal_chunked_losses(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor,
                          scale: float, chunk_bytes: int = DEFAULT_CHUNK_BYTES, compiled: bool = False
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A causal LM's training loss through its own forward (wrappers, autocast and compile intact) without the
    full logits: the model computes logits for the last position only (`logits_to_keep=1`) and hands back its
    final hidden states, which meet `lm_head.weight` here. Returns (scalar loss = scale × summed token loss,
    per-token losses (B, T-1), counted mask (B, T-1)) — the shapes of `losses.token_losses`."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1, output_hidden_states=True)
    hidden = out.hidden_states[-1][:, :-1]
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    weight = output_weight(model)
    flat_weights = torch.full((targets.numel(),), scale, dtype=torch.float32, device=hidden.device)
    loss, token_loss = linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), weight, targets.reshape(-1),
                                            flat_weights, chunk_bytes, compiled)
    return loss, token_loss.view(targets.shape), mask


def output_weight(model) -> torch.Tensor:
    """The (vocab, hidden) output projection of a (possibly DDP- or compile-wrapped) causal LM."""
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    head = inner.get_output_embeddings()
    if head is None or getattr(head, "bias", None) is not None:
        raise ValueError("train.loss=chunked: the model's output layer must be a bias-free Linear")
    return head.weight

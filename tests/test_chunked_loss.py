"""Chunked linear + cross-entropy: the plain loss, its gradients and the per-sample scores, without the full logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sleeptrain.config import ModelConfig
from sleeptrain.data.samples import IGNORE_INDEX
from sleeptrain.errors import ConfigError
from sleeptrain.lm.chunked_loss import causal_chunked_losses, linear_cross_entropy, rows_per_chunk
from sleeptrain.lm.losses import forward_losses, per_sample_loss, resolve_loss_impl, token_losses
from sleeptrain.lm.models import build_model

SPECIAL = {"bos": 0, "eos": 2, "pad": 1, "mask": 4}


def reference(hidden, weight, targets, weights):
    logits = (hidden @ weight.t()).float()
    losses = F.cross_entropy(logits, targets.clamp_min(0), reduction="none") * (targets != IGNORE_INDEX)
    return (losses * weights).sum(), losses


@pytest.mark.parametrize("rows", [1, 7, 64, 1000])
def test_equals_the_plain_loss_and_gradients_for_any_chunking(rows):
    torch.manual_seed(0)
    hidden = torch.randn(50, 16, requires_grad=True)
    weight = torch.randn(300, 16, requires_grad=True)
    targets = torch.randint(0, 300, (50,))
    targets[[3, 17, 40]] = IGNORE_INDEX
    weights = torch.rand(50)
    loss, losses = linear_cross_entropy(hidden, weight, targets, weights, chunk_bytes=rows * 300 * 4)
    grads = torch.autograd.grad(loss * 1.7, (hidden, weight))
    ref_loss, ref_losses = reference(hidden, weight, targets, weights)
    ref_grads = torch.autograd.grad(ref_loss * 1.7, (hidden, weight))
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    assert torch.allclose(losses, ref_losses, atol=1e-5) and not losses.requires_grad
    assert losses[[3, 17, 40]].eq(0).all()
    for ours, theirs in zip(grads, ref_grads):
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_compiled_blocks_equal_the_eager_ones():
    """`train.compile=true` runs each block through torch.compile (fused, not in place): same losses and gradients,
    a remainder block included."""
    torch.manual_seed(2)
    hidden = torch.randn(50, 16, requires_grad=True)
    weight = torch.randn(300, 16, requires_grad=True)
    targets = torch.randint(0, 300, (50,))
    targets[[3, 40]] = IGNORE_INDEX
    weights = torch.rand(50)
    results = []
    for compiled in (False, True):
        loss, losses = linear_cross_entropy(hidden, weight, targets, weights, 16 * 300 * 4, compiled=compiled)
        results.append((loss, losses, *torch.autograd.grad(loss, (hidden, weight))))
    for eager, fused in zip(*results):
        torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-6)


def test_bf16_inputs_stay_within_bf16_tolerance():
    torch.manual_seed(1)
    hidden = torch.randn(40, 32).bfloat16().requires_grad_()
    weight = torch.randn(500, 32).bfloat16().requires_grad_()
    targets, weights = torch.randint(0, 500, (40,)), torch.full((40,), 1 / 40)
    loss, _ = linear_cross_entropy(hidden, weight, targets, weights, chunk_bytes=9 * 500 * 4)
    grads = torch.autograd.grad(loss, (hidden, weight))
    ref_loss, _ = reference(hidden.float(), weight.float(), targets, weights)
    ref_grads = torch.autograd.grad(ref_loss, (hidden, weight))
    assert loss.item() == pytest.approx(ref_loss.item(), rel=2e-2)
    assert all(g.dtype == torch.bfloat16 for g in grads)
    for ours, theirs in zip(grads, ref_grads):
        assert (ours.float() - theirs.float()).abs().max() <= 2e-2 * theirs.float().abs().max() + 1e-3


@pytest.mark.parametrize("arch", ["llama", "gemma", "gpt2"])
def test_through_the_model_matches_plain_logits_and_per_sample_scores(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, hidden_size=32, num_heads=2, intermediate_size=64, num_layers=2),
                        300, 32, SPECIAL)
    ids = torch.randint(5, 300, (3, 16))
    labels = ids.clone()
    labels[0, 10:] = IGNORE_INDEX
    mask = torch.ones_like(ids)
    plain_loss, plain_tokens, plain_counted = forward_losses(model, ids, mask, labels, False, 1 / 40, "plain")
    plain_loss.backward()
    plain_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    loss, tokens, counted = causal_chunked_losses(model, ids, mask, labels, 1 / 40, chunk_bytes=5 * 300 * 4)
    loss.backward()
    assert loss.item() == pytest.approx(plain_loss.item(), rel=1e-6)
    assert torch.equal(counted, plain_counted)
    assert torch.allclose(per_sample_loss(tokens, counted), per_sample_loss(plain_tokens.detach(), plain_counted),
                          atol=1e-5)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, plain_grads[name], atol=1e-6), name


def test_memory_budget_sets_the_rows_and_auto_picks_by_model_kind():
    assert rows_per_chunk(32_000, 64 * 2**20) == 524
    assert rows_per_chunk(10**9, 1) == 1
    assert resolve_loss_impl("auto", masked=False) == "chunked"
    assert resolve_loss_impl("auto", masked=True) == "plain"
    assert resolve_loss_impl("plain", masked=False) == "plain"


def test_chunked_is_refused_for_masked_lms():
    from sleeptrain.presets import load_config

    with pytest.raises(ConfigError, match="train.loss: chunked needs a causal LM"):
        load_config(["model=roberta-tiny", "train.loss=chunked"])
    assert load_config(["model=roberta-tiny"]).config.train.loss == "auto"


def test_token_losses_is_unchanged_for_plain():
    logits = torch.randn(2, 5, 11)
    labels = torch.randint(0, 11, (2, 5))
    loss, counted = token_losses(logits, labels, causal=True)
    assert loss.shape == (2, 4) and counted.all()

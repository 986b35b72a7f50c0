"""Attention for training on CPU under bf16 autocast: SDPA run in fp32 there, transformers' SDPA everywhere else.

Why: torch's CPU flash-attention kernel is much slower backward in bf16 than in fp32 (B=32, 4 heads, T=128,
head_dim 32, forward + backward: 33 ms bf16 vs 13 ms fp32 on our 2-core CPU), and under CPU autocast SDPA runs in
bf16. Casting q, k, v up and the output back costs far less than that, so whole training steps get faster (tiny
1.3x, small 1.4x; docs/PERFORMANCE.md) and the attention itself is computed more precisely. On GPU, in fp32, or
without autocast it is transformers' `sdpa_attention_forward` unchanged.

Registered with transformers' `AttentionInterface` (and the SDPA mask builder) under ATTENTION_NAME; the name lives
only in the running model: `save_pretrained` writes no attention setting, so saved folders load with transformers'
default anywhere.
"""

from __future__ import annotations

import torch

ATTENTION_NAME = "sdpa_fp32_on_cpu"
LOW_PRECISION = (torch.bfloat16, torch.float16)


def sdpa_fp32_on_cpu(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.device.type != "cpu" or query.dtype not in LOW_PRECISION:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if attention_mask is not None and attention_mask.dtype in LOW_PRECISION:
        attention_mask = attention_mask.float()
    with torch.autocast("cpu", enabled=False):  # else autocast casts SDPA's inputs straight back to bf16
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask,
                                              **kwargs)
    return out.to(query.dtype), weights


def register() -> str:
    """Make ATTENTION_NAME known to transformers (idempotent); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, sdpa_fp32_on_cpu)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    return ATTENTION_NAME

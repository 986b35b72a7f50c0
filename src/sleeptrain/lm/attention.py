"""`train.attention=auto`: the model's attention kernel, chosen where it was measured.

Measured on a 2-core CPU with AVX-512 BF16 / AMX (docs/PERFORMANCE.md, "The attention kernel on a bf16 CPU"): under
bf16 autocast, SDPA's CPU flash kernel spends about 15x its forward time in its backward (21 ms per call against
1.4 ms, the tiny model, batch 32 x 128), a third of the whole step; the plain ("eager") attention of transformers —
matmul, softmax, matmul — runs the tiny model's forward + backward 1.2x faster eager and 1.45x faster under
torch.compile, where Inductor fuses it. In fp32 the two are level (within 6 %), and on GPUs SDPA's flash and
memory-efficient kernels are what pays, so `auto` takes eager only on a CPU under bf16. A resumed run keeps the
kernel it started with (the two differ in rounding); checkpoints written before the choice existed ran SDPA.
"""

from __future__ import annotations


def resolve_attention(requested: str, precision: str, on_cuda: bool, resumed: str | None = None
                      ) -> tuple[str, str]:
    """(attn_implementation, a line saying why). `requested`: auto | sdpa | eager; `precision`: the resolved one;
    `resumed`: what the run chose when it started (None for a new run)."""
    if requested != "auto":
        return requested, f"train.attention={requested} (as set)"
    if resumed is not None:
        return resumed, f"train.attention=auto -> {resumed} (as the run chose when it started)"
    if not on_cuda and precision == "bf16":
        return "eager", ("train.attention=auto -> eager (a CPU under bf16: SDPA's CPU kernel has a slow bf16 "
                         "backward)")
    return "sdpa", f"train.attention=auto -> sdpa ({'GPU' if on_cuda else 'CPU, ' + precision})"

"""Peak memory and time of the training loss: plain logits + cross-entropy vs the chunked linear cross-entropy.

    python -m benchmarks.loss_memory [--vocab 32000] [--seq 512] [--batch 12] [--hidden 512] [--device cpu]

Each variant runs in a fresh subprocess: the loss's forward and backward from final hidden states (tokens x hidden,
requiring grad) and the output projection (vocab x hidden). CPU: the peak is the process's maximum resident set
(`ru_maxrss`) above what it held once the inputs existed; CUDA: `torch.cuda.max_memory_allocated` above the same
baseline. Issue 21's bar: the chunked loss cuts the loss's peak by >= 4x at vocab 32k, seq 512, batch 12.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks.common import machine, write_json


def one(variant: str, vocab: int, tokens: int, hidden_size: int, device: str, chunk_mb: int) -> dict:
    from sleeptrain.lm.chunked_loss import linear_cross_entropy

    torch.manual_seed(0)
    hidden = torch.randn(tokens, hidden_size, device=device, requires_grad=True)
    weight = torch.randn(vocab, hidden_size, device=device, requires_grad=True)
    targets = torch.randint(0, vocab, (tokens,), device=device)
    scale = torch.full((tokens,), 1.0 / tokens, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    if variant == "plain":
        logits = (hidden @ weight.t()).float()
        losses = F.cross_entropy(logits, targets, reduction="none")
        (losses * scale).sum().backward()
    else:
        loss, _ = linear_cross_entropy(hidden, weight, targets, scale, chunk_mb * 2**20)
        loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"variant": variant, "peak_bytes": peak, "seconds": time.perf_counter() - start}


def run(vocab: int, seq: int, batch: int, hidden_size: int, device: str, chunk_mb: int = 64) -> dict:
    tokens = batch * (seq - 1)
    rows = {}
    for variant in ("plain", "chunked"):
        code = (f"import json; from benchmarks.loss_memory import one; print(json.dumps(one({variant!r}, {vocab}, "
                f"{tokens}, {hidden_size}, {device!r}, {chunk_mb})))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        rows[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    return {"machine": machine(), "vocab": vocab, "seq": seq, "batch": batch, "hidden": hidden_size, "device": device,
            "chunk_mb": chunk_mb, "logits_fp32_bytes": tokens * vocab * 4, "rows": rows,
            "peak_ratio_plain_over_chunked": rows["plain"]["peak_bytes"] / max(rows["chunked"]["peak_bytes"], 1),
            "time_ratio_chunked_over_plain": rows["chunked"]["seconds"] / rows["plain"]["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--chunk-mb", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    result = run(args.vocab, args.seq, args.batch, args.hidden, args.device, args.chunk_mb)
    mib = 2**20
    for name, row in result["rows"].items():
        print(f"{name:8s} peak {row['peak_bytes'] / mib:8.0f} MiB  {row['seconds']:.2f} s")
    print(f"peak plain / chunked = {result['peak_ratio_plain_over_chunked']:.1f}x; time chunked / plain = "
          f"{result['time_ratio_chunked_over_plain']:.2f}")
    print(write_json("loss_memory", result))


if __name__ == "__main__":
    main()

"""Batched minimal-pair scorer vs a naive one-sentence-at-a-time scorer on the same model and pairs.

    python -m benchmarks.blimp_scorer [--model-dir RUN/final] [--pairs DIR] [--n 100] [--batch-size 64]
Without --model-dir a tiny random Llama (or --masked: RoBERTa) with a BPE trained on the generated corpus is used.
Prints both accuracies (they must be identical) and the speed ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import write_json
from sleeptrain.config import ModelConfig
from sleeptrain.data.grammar import generate_minimal_pairs, generate_splits, write_minimal_pairs
from sleeptrain.data.tokenizer import train_bpe
from sleeptrain.evaluate.blimp import pair_points, score_pairs
from sleeptrain.evaluate.minimal_pairs import load_minimal_pairs
from sleeptrain.evaluate.harness import load_model_folder
from sleeptrain.evaluate.scoring import naive_causal_logprob, naive_masked_pll
from sleeptrain.lm.models import build_model, special_token_ids


def random_model(masked: bool):
    tokenizer = train_bpe(generate_splits(5000, 10, 10, seed=0)["train"], vocab_size=1000)
    torch.manual_seed(0)
    cfg = ModelConfig(arch="roberta" if masked else "llama", hidden_size=128, num_heads=4, intermediate_size=384,
                      num_layers=4, num_kv_heads=None if masked else 2)
    return build_model(cfg, len(tokenizer), 128, special_token_ids(tokenizer)).eval(), tokenizer


def run(model_dir: str | None, pairs_dir: str | None, n: int, batch_size: int, masked: bool) -> dict:
    if model_dir:
        loaded = load_model_folder(model_dir, "cpu")
        model, tokenizer, masked = loaded.model, loaded.tokenizer, loaded.masked
    else:
        model, tokenizer = random_model(masked)
    if pairs_dir is None:
        pairs_dir = write_minimal_pairs(generate_minimal_pairs(500, seed=1), Path(tempfile.mkdtemp()) / "pairs")
    pairs = load_minimal_pairs(pairs_dir, max_per_paradigm=n)

    start = time.perf_counter()
    good, bad = score_pairs(model, tokenizer, pairs, masked, batch_size)
    batched_s = time.perf_counter() - start

    naive = naive_masked_pll if masked else naive_causal_logprob
    start = time.perf_counter()
    cache: dict[str, float] = {}
    for p in pairs:
        for s in (p.good, p.bad):
            if s not in cache:
                cache[s] = naive(model, tokenizer, s)
    naive_s = time.perf_counter() - start
    good_n = np.array([cache[p.good] for p in pairs])
    bad_n = np.array([cache[p.bad] for p in pairs])

    acc_batched, acc_naive = float(pair_points(good, bad).mean()), float(pair_points(good_n, bad_n).mean())
    max_diff = float(np.max(np.abs(np.concatenate([good - good_n, bad - bad_n]))))
    print(f"{len(pairs)} pairs ({'masked PLL' if masked else 'causal log-prob'}), batch {batch_size}")
    print(f"  naive    {naive_s:8.2f} s   accuracy {acc_naive:.4f}")
    print(f"  batched  {batched_s:8.2f} s   accuracy {acc_batched:.4f}   max |score diff| {max_diff:.2e}")
    print(f"  speed-up {naive_s / batched_s:6.1f} x")
    return {"benchmark": "blimp_scorer", "pairs": len(pairs), "masked": masked, "batch_size": batch_size,
            "naive_seconds": naive_s, "batched_seconds": batched_s, "speedup": naive_s / batched_s,
            "accuracy_naive": acc_naive, "accuracy_batched": acc_batched, "max_abs_score_diff": max_diff}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir")
    parser.add_argument("--pairs")
    parser.add_argument("--n", type=int, default=100, help="pairs per paradigm")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--masked", action="store_true")
    args = parser.parse_args()
    result = run(args.model_dir, args.pairs, args.n, args.batch_size, args.masked)
    print(write_json("blimp_scorer" + ("_masked" if result["masked"] else ""), result))

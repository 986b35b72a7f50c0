"""Minimal-pair accuracy: the good sentence must score higher than the bad one.

Ties count as half a point and the tie rate is reported (the official BabyLM pipeline counts ties as correct,
which rewards degenerate models). `overall` is the macro mean over paradigms, as BLiMP reports it; phenomena and
fields are macro means over their paradigms.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np

from sleeptrain.evaluate.minimal_pairs import MinimalPair
from sleeptrain.evaluate.scoring import sentence_scores


def score_pairs(model, tokenizer, pairs: list[MinimalPair], masked: bool, batch_size: int = 64,
                method: str = "pll", progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(good scores, bad scores); each distinct sentence is scored once."""
    unique = sorted({p.good for p in pairs} | {p.bad for p in pairs})
    index = {s: i for i, s in enumerate(unique)}
    scores = sentence_scores(model, tokenizer, unique, masked, batch_size, method, progress)
    good = np.array([scores[index[p.good]] for p in pairs])
    bad = np.array([scores[index[p.bad]] for p in pairs])
    return good, bad


def pair_points(good: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """1 when good > bad, 0.5 on a tie, 0 otherwise."""
    return np.where(good > bad, 1.0, np.where(good == bad, 0.5, 0.0))


def summarize(pairs: list[MinimalPair], good: np.ndarray, bad: np.ndarray) -> dict:
    points = pair_points(good, bad)
    by_paradigm: dict[str, dict] = {}
    groups: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        groups[p.paradigm].append(i)
    meta = {}
    for paradigm, idx in sorted(groups.items()):
        idx = np.asarray(idx)
        ties = int((good[idx] == bad[idx]).sum())
        by_paradigm[paradigm] = {"accuracy": float(points[idx].mean()), "n": int(idx.size), "ties": ties}
        meta[paradigm] = (pairs[idx[0]].phenomenon, pairs[idx[0]].field)

    def macro(key_of) -> dict:
        buckets: dict[str, list[str]] = defaultdict(list)
        for paradigm, m in meta.items():
            buckets[key_of(m)].append(paradigm)
        return {k: {"accuracy": float(np.mean([by_paradigm[p]["accuracy"] for p in ps])),
                    "paradigms": len(ps), "n": int(sum(by_paradigm[p]["n"] for p in ps))}
                for k, ps in sorted(buckets.items())}

    n_ties = int((good == bad).sum())
    return {
        "overall": float(np.mean([v["accuracy"] for v in by_paradigm.values()])),
        "pairs": len(pairs), "paradigms": len(by_paradigm),
        "ties": n_ties, "tie_rate": n_ties / max(len(pairs), 1),
        "by_field": macro(lambda m: m[1]),
        "by_phenomenon": macro(lambda m: m[0]),
        "by_paradigm": by_paradigm,
    }


def evaluate_pairs(model, tokenizer, pairs: list[MinimalPair], masked: bool, batch_size: int = 64,
                   method: str = "pll", progress: bool = False) -> tuple[dict, np.ndarray, np.ndarray]:
    start = time.time()
    good, bad = score_pairs(model, tokenizer, pairs, masked, batch_size, method, progress)
    result = summarize(pairs, good, bad)
    result["method"] = (f"masked LM pseudo-log-likelihood ({method})" if masked
                        else "causal LM sentence log-probability (BOS prepended)")
    result["seconds"] = time.time() - start
    return result, good, bad

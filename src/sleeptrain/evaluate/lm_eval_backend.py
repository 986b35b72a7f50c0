"""`sleeptrain eval ... backend=lm-eval`: the minimal pairs scored by lm-evaluation-harness instead of our scorer.

The pairs (loaded and capped exactly as for the native scorer) are written to a temporary JSON-lines file and run as
the task shipped in `lm_eval_tasks/sleeptrain_minimal_pairs.yaml` through lm-eval's `hf` model (`HFLM`, wrapping the
model already loaded in float32): each sentence is a continuation of an empty context, which lm-eval scores after
the tokenizer's BOS (else EOS) — the native causal scorer's convention. The per-pair log-likelihoods lm-eval logs
are summarised by `evaluate.blimp.summarize`, so `results.json` has the same schema (and ties the same half point)
whichever backend scored it. Masked LMs are refused: lm-eval has no pseudo-log-likelihood.

lm-eval is an optional dependency: `pip install 'sleeptrain[lm-eval]'`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from sleeptrain.errors import ConfigError
from sleeptrain.evaluate.blimp import summarize
from sleeptrain.evaluate.minimal_pairs import MinimalPair

TASK_FILE = "sleeptrain_minimal_pairs.yaml"


def task_config(data_file: Path, cache_dir: Path) -> dict:
    """The shipped task, reading `data_file` and caching its Arrow copy in `cache_dir` (nothing left behind)."""
    text = (resources.files("sleeptrain") / "evaluate" / "lm_eval_tasks" / TASK_FILE).read_text()
    task = yaml.safe_load(text)
    task["dataset_kwargs"] = {"data_files": {"test": str(data_file)}, "cache_dir": str(cache_dir)}
    return task


def lm_eval_version() -> str:
    try:
        from importlib.metadata import version

        return version("lm_eval")
    except Exception:  # noqa: BLE001  (not installed: said by the caller)
        return "not installed"


def lm_eval_pair_scores(model, tokenizer, pairs: list[MinimalPair], batch_size: int,
                        device: str) -> tuple[np.ndarray, np.ndarray]:
    """(good, bad) summed log-probabilities of every pair, as lm-evaluation-harness computes them."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError("backend: lm-eval is not installed; pip install 'sleeptrain[lm-eval]' (or pip install "
                          "lm-eval), or use backend=native") from None
    with tempfile.TemporaryDirectory(prefix="sleeptrain-lm-eval-") as tmp:
        data_file = Path(tmp) / "pairs.jsonl"
        data_file.write_text("".join(json.dumps({"index": i, "sentence_good": p.good, "sentence_bad": p.bad}) + "\n"
                                     for i, p in enumerate(pairs)))
        task = task_config(data_file, Path(tmp) / "datasets")
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
        # only our task: indexing lm-eval's thousands of built-in task files takes tens of seconds
        manager = TaskManager(include_defaults=False)
        out = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=manager, log_samples=True,
                                      verbosity="ERROR")
    good, bad = np.full(len(pairs), np.nan), np.full(len(pairs), np.nan)
    for sample in out["samples"][task["task"]]:
        i = sample["doc"]["index"]
        good[i], bad[i] = sample["resps"][0][0][0], sample["resps"][1][0][0]
    if np.isnan(good).any() or np.isnan(bad).any():
        raise RuntimeError("lm-eval returned no score for some pairs")
    return good, bad


def evaluate_pairs_lm_eval(loaded, pairs: list[MinimalPair], batch_size: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """The native `evaluate_pairs` result, scored by lm-evaluation-harness."""
    if loaded.masked:
        raise ConfigError("backend: lm-eval scores causal LMs only here (it has no masked-LM pseudo-log-likelihood); "
                          "use backend=native for this model")
    start = time.time()
    device = str(next(loaded.model.parameters()).device)
    good, bad = lm_eval_pair_scores(loaded.model, loaded.tokenizer, pairs, batch_size, device)
    result = summarize(pairs, good, bad)
    result["method"] = (f"lm-evaluation-harness {lm_eval_version()} (hf model, loglikelihood of each sentence after "
                        f"BOS; task {TASK_FILE})")
    result["seconds"] = time.time() - start
    return result, good, bad

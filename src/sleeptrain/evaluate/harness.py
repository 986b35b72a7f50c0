"""`sleeptrain eval MODEL_DIR`: BLiMP-style accuracy and perplexity of any Hugging Face causal or masked LM folder.

The folder may come from sleeptrain (`RUN_DIR/final`: defaults for the minimal pairs and the perplexity data are
taken from the run) or from any plain `save_pretrained`. Models are loaded in float32 from local files only, with no
remote code, and scored in float32 whatever precision they were trained in.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sleeptrain.config import Config
from sleeptrain.evaluate.config import EvalCommandConfig
from sleeptrain.errors import ConfigError, DataError
from sleeptrain.evaluate.blimp import evaluate_pairs
from sleeptrain.evaluate.minimal_pairs import MinimalPair, load_minimal_pairs
from sleeptrain.evaluate.perplexity import perplexity
from sleeptrain.fsutil import atomic_write_text

MASKED_MODEL_TYPES = {"bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "xlm-roberta",
                      "camembert", "modernbert", "ltg_bert", "roberta-prelayernorm"}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: Any
    masked: bool
    path: Path


def is_masked_lm_config(config) -> bool:
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return True
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return False
    return config.model_type in MASKED_MODEL_TYPES


def load_model_folder(path: str | Path, device: str = "auto") -> LoadedModel:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"MODEL_DIR: {str(folder)!r} is not a folder")
    if not (folder / "config.json").is_file():
        raise DataError(f"MODEL_DIR: no config.json in {str(folder)!r} (expected a save_pretrained folder)")
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"MODEL_DIR: cannot read {folder / 'config.json'}: {str(exc).splitlines()[0]}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"MODEL_DIR: no usable tokenizer in {str(folder)!r} (save one with "
                        f"tokenizer.save_pretrained): {str(exc).splitlines()[0]}") from None
    masked = is_masked_lm_config(config)
    auto = AutoModelForMaskedLM if masked else AutoModelForCausalLM
    from safetensors import SafetensorError

    try:
        model = auto.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, SafetensorError) as exc:
        raise DataError(f"MODEL_DIR: cannot load the model weights in {str(folder)!r}: "
                        f"{str(exc).splitlines()[0]}") from None
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no GPU is visible")
    target = "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    return LoadedModel(model.to(target).eval(), tokenizer, masked, folder)


def run_config_of(model_dir: Path) -> tuple[Path, Config] | None:
    """The training run a model folder came from (RUN_DIR/final or RUN_DIR/checkpoints/step-N), if any."""
    from sleeptrain.presets import config_from_yaml

    for run_dir in (model_dir.parent, model_dir.parent.parent):
        if (run_dir / "config.yaml").is_file() and (run_dir / "metrics.jsonl").is_file():
            try:
                return run_dir, config_from_yaml((run_dir / "config.yaml").read_text())
            except (ConfigError, ValueError):
                return None
    return None


def default_blimp_path(model_dir: Path) -> Path | None:
    found = run_config_of(model_dir)
    if found and (found[0] / "minimal_pairs").is_dir():
        return found[0] / "minimal_pairs"
    return None


def perplexity_lines(opts: EvalCommandConfig, model_dir: Path) -> tuple[dict[str, list[str]], str] | None:
    """source -> lines of the split to evaluate, and where they came from."""
    from sleeptrain.data.corpus import load_corpus, read_babylm

    p = opts.perplexity
    if p.path:
        corpus = read_babylm(p.path, max_lines=p.max_lines)
        origin = p.path
    else:
        found = run_config_of(model_dir)
        if not found:
            return None
        cfg = found[1].data
        if p.max_lines:
            cfg.max_lines = p.max_lines
        corpus = load_corpus(cfg)
        origin = f"the training run's data ({corpus.description})"
    lines = corpus.splits.get(p.split)
    if not lines or not any(lines.values()):
        raise DataError(f"perplexity.split: the data has no {p.split!r} split ({origin})")
    if p.max_lines:
        lines = {k: v[:p.max_lines] for k, v in lines.items()}
    return lines, origin


def default_seq_len(loaded: LoadedModel, model_dir: Path) -> int:
    found = run_config_of(model_dir)
    if found:
        return found[1].data.seq_len
    positions = getattr(loaded.model.config, "max_position_embeddings", None) or 512
    if loaded.masked and getattr(loaded.model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert",
                                                                              "roberta-prelayernorm"):
        positions -= 2  # RoBERTa positions start after the padding index
    return int(min(positions, 512))


def write_pair_scores(path: Path, pairs: list[MinimalPair], good: np.ndarray, bad: np.ndarray) -> None:
    lines = [json.dumps({"paradigm": p.paradigm, "pair_id": p.pair_id, "sentence_good": p.good,
                         "sentence_bad": p.bad, "score_good": float(g), "score_bad": float(b)})
             for p, g, b in zip(pairs, good, bad)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def evaluate_model(loaded: LoadedModel, opts: EvalCommandConfig, pairs: list[MinimalPair] | None = None,
                   lines: tuple[dict[str, list[str]], str] | None = None, blimp_origin: str | None = None,
                   seq_len: int | None = None) -> tuple[dict, tuple | None]:
    """Results dict (and the raw pair scores) for an already loaded model."""
    start = time.time()
    results: dict[str, Any] = {"model": str(loaded.path), "model_type": "masked" if loaded.masked else "causal",
                               "precision": "float32"}
    raw = None
    if pairs:
        if opts.backend == "lm-eval":
            from sleeptrain.evaluate.lm_eval_backend import evaluate_pairs_lm_eval

            blimp, good, bad = evaluate_pairs_lm_eval(loaded, pairs, opts.batch_size)
        else:
            blimp, good, bad = evaluate_pairs(loaded.model, loaded.tokenizer, pairs, loaded.masked, opts.batch_size,
                                              opts.blimp.method, opts.progress)
        results["blimp"] = {"path": blimp_origin, "backend": opts.backend, **blimp}
        raw = (pairs, good, bad)
    if lines:
        seq = opts.perplexity.seq_len or seq_len or default_seq_len(loaded, loaded.path)
        ppl = perplexity(loaded.model, loaded.tokenizer, lines[0], loaded.masked, seq, opts.perplexity.stride,
                         max(1, opts.batch_size // 2), opts.perplexity.mlm_positions, opts.seed, opts.progress)
        results["perplexity"] = {"path": lines[1], "split": opts.perplexity.split, **ppl}
    results["seconds"] = time.time() - start
    return results, raw


def run_eval(model_dir: str | Path, opts: EvalCommandConfig) -> tuple[dict, Path]:
    """The `sleeptrain eval` command: load, resolve the data, score, write the results JSON."""
    loaded = load_model_folder(model_dir, opts.device)
    folder = loaded.path
    pairs, blimp_origin = None, None
    if opts.blimp.enabled:
        blimp_path = Path(opts.blimp.path) if opts.blimp.path else default_blimp_path(folder)
        if blimp_path is None:
            raise ConfigError("blimp.path: required (the model was not trained on the generated corpus); "
                              "or blimp.enabled=false")
        pairs = load_minimal_pairs(blimp_path, opts.blimp.max_pairs)
        blimp_origin = str(blimp_path)
    lines = perplexity_lines(opts, folder) if opts.perplexity.enabled else None
    if not pairs and not lines:
        raise ConfigError("perplexity.path: nothing to evaluate (give blimp.path and/or perplexity.path)")
    results, raw = evaluate_model(loaded, opts, pairs, lines, blimp_origin)
    if opts.perplexity.enabled and not lines:
        results["perplexity"] = {"skipped": "no perplexity.path given and the model's run data is unknown"}
    out = Path(opts.out) if opts.out else folder / "eval" / "results.json"
    atomic_write_text(out, json.dumps(results, indent=1))
    if opts.blimp.per_pair and raw:
        write_pair_scores(out.with_name("pairs.jsonl"), *raw)
    return results, out


def describe_results(results: dict) -> str:
    lines = []
    blimp = results.get("blimp")
    if blimp:
        lines.append(f"minimal pairs: {blimp['overall']:.1%} overall ({blimp['pairs']:,} pairs, "
                     f"{blimp['paradigms']} paradigms, ties {blimp['tie_rate']:.2%}, half a point each)")
        for name, v in blimp["by_phenomenon"].items():
            lines.append(f"  {name:<40} {v['accuracy']:.1%}  ({v['n']} pairs)")
    ppl = results.get("perplexity")
    if ppl and "overall" in ppl:
        lines.append(f"perplexity ({ppl['split']}): {ppl['overall']['ppl']:.2f} over {ppl['overall']['tokens']:,} "
                     f"tokens; {ppl['kind']}")
        for name, v in ppl["by_source"].items():
            lines.append(f"  {name:<40} {v['ppl']:.2f}")
    return "\n".join(lines)

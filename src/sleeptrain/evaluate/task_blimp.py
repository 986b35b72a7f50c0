"""Task `blimp`: BLiMP-style minimal pairs — accuracy by paradigm, phenomenon and field (`evaluate/blimp.py`), from
sleeptrain's batched scorer or, with `backend=lm-eval`, lm-evaluation-harness on the same pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sleeptrain.errors import ConfigError
from sleeptrain.evaluate.blimp import evaluate_pairs
from sleeptrain.evaluate.config import BlimpEvalConfig
from sleeptrain.evaluate.minimal_pairs import load_minimal_pairs
from sleeptrain.evaluate.tasks import EvalTask, LoadedModel, TaskContext, register_task
from sleeptrain.fsutil import atomic_write_text


@register_task
class BlimpTask(EvalTask):
    name = "blimp"
    description = "minimal pairs: is the good sentence more probable than the bad one (accuracy, ties half a point)"
    options = BlimpEvalConfig

    def prepare(self, options: BlimpEvalConfig, ctx: TaskContext) -> tuple[list, str]:
        """(pairs, where they came from): `blimp.path`, else the generated pairs of the run the model came from."""
        path = Path(options.path) if options.path else None
        if path is None:
            found = ctx.run_config()
            if found and (found[0] / "minimal_pairs").is_dir():
                path = found[0] / "minimal_pairs"
        if path is None:
            raise ConfigError("blimp.path: required — no minimal pairs are known for this folder (it is not the "
                              "final/ or a checkpoint of a run with minimal_pairs/, or was moved out of its run); give "
                              "blimp.path=DIR, or blimp.enabled=false")
        return load_minimal_pairs(path, options.max_pairs), str(path)

    def run(self, model: LoadedModel, options: BlimpEvalConfig, data: tuple[list, str],
            ctx: TaskContext) -> dict[str, Any]:
        pairs, origin = data
        opts = ctx.opts
        if opts.backend == "lm-eval":
            from sleeptrain.evaluate.lm_eval_backend import evaluate_pairs_lm_eval

            blimp, good, bad = evaluate_pairs_lm_eval(model, pairs, opts.batch_size)
        else:
            blimp, good, bad = evaluate_pairs(model.model, model.tokenizer, pairs, model.masked, opts.batch_size,
                                              options.method, opts.progress)
        self.scores = (pairs, good, bad)  # for write_files and callers that want the raw scores
        return {"path": origin, "backend": opts.backend, **blimp}

    def write_files(self, results_path: Path, options: BlimpEvalConfig) -> None:
        """`blimp.per_pair`: RESULTS.pairs.jsonl beside the results file, one line per pair with both scores."""
        if not options.per_pair or not hasattr(self, "scores"):
            return
        pairs, good, bad = self.scores
        lines = [json.dumps({"paradigm": p.paradigm, "pair_id": p.pair_id, "sentence_good": p.good,
                             "sentence_bad": p.bad, "score_good": float(g), "score_bad": float(b)})
                 for p, g, b in zip(pairs, good, bad)]
        atomic_write_text(results_path.with_name(f"{results_path.stem}.pairs.jsonl"), "\n".join(lines) + "\n")

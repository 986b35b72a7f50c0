"""Task `perplexity`: causal perplexity over packed or sliding windows, or masked-LM pseudo-perplexity
(`evaluate/perplexity.py`), per source of a BabyLM-layout split."""

from __future__ import annotations

from typing import Any

from sleeptrain.errors import DataError
from sleeptrain.evaluate.config import PerplexityEvalConfig
from sleeptrain.evaluate.perplexity import perplexity
from sleeptrain.evaluate.tasks import EvalTask, LoadedModel, TaskContext, register_task

Lines = tuple[dict[str, list[str]], str]  # source -> lines of the split, and where they came from


@register_task
class PerplexityTask(EvalTask):
    name = "perplexity"
    description = "(pseudo-)perplexity of a split, per source"
    options = PerplexityEvalConfig
    skipped = "no perplexity.path given and the model's run data is unknown"

    def prepare(self, options: PerplexityEvalConfig, ctx: TaskContext) -> Lines | None:
        """The split to evaluate: from `perplexity.path`, else from the data of the run the model came from (None
        when neither is known)."""
        from sleeptrain.data.corpus import load_corpus, read_babylm

        if options.path:
            corpus = read_babylm(options.path, max_lines=options.max_lines)
            origin = options.path
        else:
            found = ctx.run_config()
            if not found:
                return None
            cfg = found[1].data
            if options.max_lines:
                cfg.max_lines = options.max_lines
            corpus = load_corpus(cfg)
            origin = f"the training run's data ({corpus.description})"
        lines = corpus.splits.get(options.split)
        if not lines or not any(lines.values()):
            raise DataError(f"perplexity.split: the data has no {options.split!r} split ({origin})")
        if options.max_lines:
            lines = {k: v[:options.max_lines] for k, v in lines.items()}
        return lines, origin

    def run(self, model: LoadedModel, options: PerplexityEvalConfig, data: Lines,
            ctx: TaskContext) -> dict[str, Any]:
        opts = ctx.opts
        seq = options.seq_len or ctx.seq_len or default_seq_len(model, ctx)
        ppl = perplexity(model.model, model.tokenizer, data[0], model.masked, seq, options.stride,
                         max(1, opts.batch_size // 2), options.mlm_positions, opts.seed, opts.progress)
        return {"path": data[1], "split": options.split, **ppl}


def default_seq_len(loaded: LoadedModel, ctx: TaskContext) -> int:
    """The run's data.seq_len, else the model's positions (at most 512)."""
    found = ctx.run_config()
    if found:
        return found[1].data.seq_len
    positions = getattr(loaded.model.config, "max_position_embeddings", None) or 512
    if loaded.masked and getattr(loaded.model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert",
                                                                              "roberta-prelayernorm"):
        positions -= 2  # RoBERTa positions start after the padding index
    return int(min(positions, 512))

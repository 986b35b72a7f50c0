"""The typed options of `sleeptrain eval MODEL_DIR [key=value ...]`, validated at load time: the common keys, then
one section per registered evaluation task (`evaluate/tasks.py`), named as the task."""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Optional

from sleeptrain.config import MLM_METHODS, Config, check_choice, check_positive, help_field
from sleeptrain.errors import ConfigError


@dataclass
class BlimpEvalConfig:
    path: Optional[str] = help_field("folder of *.jsonl / *.jsonl.gz minimal pairs (default: the generated pairs of the "
                                     "run the model came from)", default=None)
    enabled: bool = help_field("score minimal pairs", default=True)
    method: str = help_field("masked-LM scoring: pll | pll_word_l2r (causal LMs always sum token log-probs)",
                             default="pll")
    max_pairs: Optional[int] = help_field("at most this many pairs per paradigm", default=None)
    per_pair: bool = help_field("also write per-pair scores (RESULTS.pairs.jsonl beside the results file)", default=False)

    def __post_init__(self) -> None:
        check_choice("blimp.method", self.method, MLM_METHODS)
        check_positive("blimp.max_pairs", self.max_pairs, allow_none=True)


@dataclass
class PerplexityEvalConfig:
    path: Optional[str] = help_field("BabyLM-layout folder (default: the data of the run the model came from)",
                                     default=None)
    enabled: bool = help_field("compute perplexity", default=True)
    split: str = help_field("split to evaluate: dev | test | train", default="dev")
    seq_len: Optional[int] = help_field("window length (default: the run's data.seq_len, else the model's positions)",
                                        default=None)
    stride: Optional[int] = help_field("causal: new tokens scored per window, < seq_len (default: seq_len - 1, packed "
                                       "blocks; smaller = sliding windows with more context)", default=None)
    mlm_positions: int = help_field("masked LM: positions sampled per source for pseudo-perplexity", default=2000)
    max_lines: Optional[int] = help_field("at most this many lines per source", default=None)

    def __post_init__(self) -> None:
        check_choice("perplexity.split", self.split, ("dev", "test", "train"))
        check_positive("perplexity.seq_len", self.seq_len, allow_none=True)
        check_positive("perplexity.stride", self.stride, allow_none=True)
        check_positive("perplexity.mlm_positions", self.mlm_positions)
        check_positive("perplexity.max_lines", self.max_lines, allow_none=True)
        if self.stride and self.seq_len and self.stride >= self.seq_len:
            raise ConfigError(f"perplexity.stride: must be smaller than perplexity.seq_len={self.seq_len}, "
                              f"got {self.stride}")


BACKENDS = ("native", "lm-eval")


@dataclass
class EvalCommandConfig:
    out: Optional[str] = help_field("results file (default: MODEL_DIR/eval/results-<what it scores>.json, e.g. "
                                    "results-blimp-blimp-perplexity-dev.json; a training run's own results.json is "
                                    "never the default)", default=None)
    overwrite: bool = help_field("replace an existing results file (otherwise refused before any scoring)",
                                 default=False)
    backend: str = help_field("who scores the minimal pairs: native (sleeptrain's batched scorer) | lm-eval "
                              "(lm-evaluation-harness's hf model on the same pairs, causal LMs; pip install "
                              "'sleeptrain[lm-eval]'); perplexity is always native", default="native")
    batch_size: int = help_field("sentences (or masked copies) per batch", default=64)
    device: str = help_field("auto | cpu | cuda", default="auto")
    seed: int = help_field("seeds the sampled positions of masked-LM pseudo-perplexity", default=0)
    progress: bool = help_field("progress bars with an ETA on stderr while scoring", default=True)
    blimp: BlimpEvalConfig = field(default_factory=BlimpEvalConfig)
    perplexity: PerplexityEvalConfig = field(default_factory=PerplexityEvalConfig)

    def __post_init__(self) -> None:
        check_positive("batch_size", self.batch_size)
        check_choice("backend", self.backend, BACKENDS)
        check_choice("device", self.device, ("auto", "cpu", "cuda"))


# task name -> its options dataclass: the built-in sections above, then those of tasks registered from outside
# (`evaluate.tasks.register_task` adds them)
TASK_SECTIONS: dict[str, type] = {"blimp": BlimpEvalConfig, "perplexity": PerplexityEvalConfig}


def eval_command_schema() -> type:
    """The schema of `sleeptrain eval` now: `EvalCommandConfig`, extended by a section for every task registered
    from outside (asked when the command line is read, so a plugin's task has its keys and `--help` lines)."""
    extra = [(name, cls, field(default_factory=cls)) for name, cls in TASK_SECTIONS.items()
             if name not in ("blimp", "perplexity")]
    if not extra:
        return EvalCommandConfig
    return make_dataclass("EvalCommandConfig", extra, bases=(EvalCommandConfig,))


def run_eval_options(cfg: Config, max_pairs: int | None = None, progress: bool | None = None):
    """The evaluation options of a training run (its final and periodic evaluations): the one place where the
    training config's `eval:` keys become task options — `eval.batch_size` -> `batch_size`, `eval.method` ->
    `blimp.method`, `max_pairs` (the final evaluation: `eval.final_max_pairs`; the periodic one: `eval.blimp_n`) ->
    `blimp.max_pairs`, `run.progress` -> `progress`; every other task with its defaults."""
    opts = eval_command_schema()(batch_size=cfg.eval.batch_size,
                                 progress=cfg.run.progress if progress is None else progress)
    opts.blimp.method = cfg.eval.method
    opts.blimp.max_pairs = max_pairs
    return opts

"""The typed schema of every option, validated at load time.

Each section is a dataclass; `__post_init__` checks ranges and choices and raises `ConfigError` with a one-line
message naming the full key and what is allowed (litgpt style). Loading presets and command-line overrides into this
schema lives in `presets.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from sleeptrain.errors import ConfigError


def _help(text: str, **kwargs: Any) -> Any:
    """A dataclass field carrying its help text (shown by `sleeptrain train --help`)."""
    return field(metadata={"help": text}, **kwargs)


def check_choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(map(str, allowed))}")


def check_positive(key: str, value: Optional[float], allow_zero: bool = False, allow_none: bool = False) -> None:
    if value is None:
        if allow_none:
            return
        raise ConfigError(f"{key}: a value is required")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key}: must be {bound}, got {value}")


def check_fraction(key: str, value: float, closed_low: bool = True, closed_high: bool = True) -> None:
    low_ok = value >= 0 if closed_low else value > 0
    high_ok = value <= 1 if closed_high else value < 1
    if not (low_ok and high_ok):
        lo, hi = ("[" if closed_low else "("), ("]" if closed_high else ")")
        raise ConfigError(f"{key}: must be in {lo}0, 1{hi}, got {value}")


@dataclass
class RunConfig:
    dir: Optional[str] = _help("run directory (default: runs/<date-time>-<schedule>)", default=None)
    progress: bool = _help("show a progress bar on stderr", default=True)
    plot: bool = _help("write RUN_DIR/loss.png at the end (loss curves, sleep phases shaded)", default=True)


@dataclass
class GeneratedDataConfig:
    train_sentences: int = _help("sentences in the generated training split", default=60_000)
    dev_sentences: int = _help("sentences in the generated dev split", default=2_000)
    test_sentences: int = _help("sentences in the generated test split", default=2_000)
    pairs_per_paradigm: int = _help("generated minimal pairs per agreement paradigm", default=500)
    seed: int = _help("grammar seed (the corpus is a pure function of it)", default=0)

    def __post_init__(self) -> None:
        for name in ("train_sentences", "dev_sentences", "test_sentences", "pairs_per_paradigm"):
            check_positive(f"data.generated.{name}", getattr(self, name))


@dataclass
class HFDataConfig:
    config_name: Optional[str] = _help("dataset configuration name passed to datasets.load_dataset", default=None)
    train_split: str = _help("split used for training", default="train")
    dev_split: Optional[str] = _help("split used for validation (held out from train when absent)", default="validation")
    text_field: str = _help("column holding the text", default="text")


@dataclass
class DataConfig:
    source: str = _help("generated (built-in grammar) | babylm (BabyLM-layout folder) | hf (datasets)", default="generated")
    path: Optional[str] = _help("babylm: folder with train/ dev/ test/; hf: dataset name or local path", default=None)
    strip_speaker_tags: bool = _help("babylm: drop leading speaker tags such as 'A:<tab>'", default=True)
    seq_len: int = _help("tokens per training sample (context length)", default=128)
    packing: str = _help("blocks (consecutive packed blocks) | windows (random windows over the token tape)", default="blocks")
    windows: Optional[int] = _help("packing=windows: number of windows (default: tokens // seq_len)", default=None)
    dev_fraction: float = _help("fraction of train held out as dev when the data has no dev split", default=0.02)
    max_lines: Optional[int] = _help("read at most this many lines per split and source (quick looks)", default=None)
    max_line_chars: Optional[int] = _help("babylm: refuse a file with a line longer than this (a wrong file; "
                                          "null: no limit)", default=1_000_000)
    cache_dir: Optional[str] = _help("tokenizer/token-store cache (default: $SLEEPTRAIN_CACHE or ~/.cache/sleeptrain)", default=None)
    generated: GeneratedDataConfig = field(default_factory=GeneratedDataConfig)
    hf: HFDataConfig = field(default_factory=HFDataConfig)

    def __post_init__(self) -> None:
        check_choice("data.source", self.source, ("generated", "babylm", "hf"))
        check_choice("data.packing", self.packing, ("blocks", "windows"))
        if self.seq_len < 8:
            raise ConfigError(f"data.seq_len: must be >= 8, got {self.seq_len}")
        check_positive("data.windows", self.windows, allow_none=True)
        check_positive("data.max_lines", self.max_lines, allow_none=True)
        check_positive("data.max_line_chars", self.max_line_chars, allow_none=True)
        check_fraction("data.dev_fraction", self.dev_fraction, closed_low=False, closed_high=False)
        if self.source in ("babylm", "hf") and not self.path:
            raise ConfigError(f"data.path: required with data.source={self.source} (a folder or dataset name)")


@dataclass
class TokenizerConfig:
    path: Optional[str] = _help("load this tokenizer folder instead of training a BPE", default=None)
    vocab_size: int = _help("byte-level BPE vocabulary size (trained on the training split)", default=4096)
    min_frequency: int = _help("BPE: minimum pair frequency for a merge", default=2)

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ConfigError(f"tokenizer.vocab_size: must be >= 300 (256 bytes + specials + merges), got {self.vocab_size}")
        check_positive("tokenizer.min_frequency", self.min_frequency)


MODEL_ARCHS = ("llama", "gpt2", "roberta")


@dataclass
class ModelConfig:
    arch: str = _help("llama (causal: RMSNorm, RoPE, GQA) | gpt2 (causal) | roberta (masked LM)", default="llama")
    hidden_size: int = _help("model width", default=128)
    num_layers: int = _help("transformer blocks", default=4)
    num_heads: int = _help("attention heads", default=4)
    num_kv_heads: Optional[int] = _help("llama: key/value heads for grouped-query attention (default: num_heads)", default=None)
    head_dim: Optional[int] = _help("llama: per-head dimension (default: hidden_size // num_heads)", default=None)
    intermediate_size: int = _help("MLP width", default=512)
    tie_embeddings: bool = _help("share input and output embeddings (gpt2 and roberta always do)", default=True)
    dropout: float = _help("dropout probability", default=0.0)
    rope_theta: float = _help("llama: RoPE base", default=10_000.0)
    norm_eps: float = _help("layer/RMS norm epsilon", default=1e-6)
    init_std: float = _help("std of the normal weight init", default=0.02)
    max_positions: Optional[int] = _help("position embeddings (default: data.seq_len)", default=None)
    mlm_probability: float = _help("roberta: fraction of tokens masked (80% <mask>, 10% random, 10% kept)", default=0.15)

    def __post_init__(self) -> None:
        check_choice("model.arch", self.arch, MODEL_ARCHS)
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size"):
            check_positive(f"model.{name}", getattr(self, name))
        check_positive("model.num_kv_heads", self.num_kv_heads, allow_none=True)
        check_positive("model.head_dim", self.head_dim, allow_none=True)
        check_positive("model.max_positions", self.max_positions, allow_none=True)
        check_fraction("model.dropout", self.dropout, closed_high=False)
        check_fraction("model.mlm_probability", self.mlm_probability, closed_low=False, closed_high=False)
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.num_heads: {self.num_heads} does not divide model.hidden_size={self.hidden_size}"
                " (set model.head_dim for llama, or change either)"
            )
        if self.arch != "llama" and (self.head_dim is not None or self.num_kv_heads not in (None, self.num_heads)):
            raise ConfigError(f"model.head_dim / model.num_kv_heads: only supported with model.arch=llama, not {self.arch}")
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise ConfigError(f"model.num_kv_heads: {kv} must divide model.num_heads={self.num_heads}")

    @property
    def is_masked_lm(self) -> bool:
        return self.arch == "roberta"


@dataclass
class TrainConfig:
    batch_size: int = _help("samples per optimizer step (global batch)", default=32)
    micro_batch_size: Optional[int] = _help("samples per forward pass; batch_size must be a multiple (default: batch_size)", default=None)
    lr: float = _help("peak learning rate", default=2e-3)
    lr_schedule: str = _help("cosine | linear | constant (after linear warm-up)", default="cosine")
    warmup_steps: int = _help("linear warm-up steps (capped at 20% of the run's steps)", default=50)
    min_lr_ratio: float = _help("final LR as a fraction of the peak (cosine/linear)", default=0.1)
    weight_decay: float = _help("decoupled AdamW weight decay", default=0.1)
    decay_norms_and_biases: bool = _help("also decay 1-D parameters (norm gains, biases)", default=False)
    beta1: float = _help("AdamW beta1", default=0.9)
    beta2: float = _help("AdamW beta2", default=0.95)
    eps: float = _help("AdamW epsilon", default=1e-8)
    adamw_impl: str = _help("AdamW kernel: auto (fused where torch has it for the device, else foreach) | fused | "
                            "foreach | for_loop", default="auto")
    prefetch: bool = _help("gather the next batch's tokens on a background thread while the current one trains "
                           "(runs are bit-identical either way)", default=True)
    compile: bool = _help("torch.compile the model (in place; state-dict names unchanged), warmed on every batch "
                          "shape of the plan before step 0 so no phase change recompiles mid-run", default=False)
    clip_grad: Optional[float] = _help("max global gradient norm (null: no clipping)", default=1.0)
    max_steps: Optional[int] = _help("cap on optimizer steps for any schedule (the LR schedule is fitted to the cap)", default=None)
    precision: str = _help("fp32 | bf16 (autocast, CPU or GPU) | fp16 (GPU only)", default="fp32")
    device: str = _help("auto | cpu | cuda", default="auto")
    log_every: int = _help("steps between training records in metrics.jsonl", default=10)
    eval_every: int = _help("steps between validation-loss evaluations (0: only at the end)", default=100)
    eval_max_batches: Optional[int] = _help("cap on validation batches per evaluation (null: whole dev split)", default=None)
    on_nan: str = _help("a NaN/inf training loss: stop (the newest checkpoint stays the last good one) | "
                        "skip_batch (drop that step's update, log it, go on; costs one host sync per step)",
                        default="stop")
    log_samples: bool = _help("write RUN_DIR/samples.rank<R>.jsonl: the sample indices of every wake step and "
                              "every replay buffer, per process (audits sharding and replay)", default=False)
    trackers: list[str] = _help("experiment trackers via Accelerate: tensorboard, wandb (default: none)", default_factory=list)

    def __post_init__(self) -> None:
        check_positive("train.batch_size", self.batch_size)
        check_positive("train.micro_batch_size", self.micro_batch_size, allow_none=True)
        if self.micro_batch_size and self.batch_size % self.micro_batch_size:
            raise ConfigError(
                f"train.micro_batch_size: {self.micro_batch_size} must divide train.batch_size={self.batch_size}"
            )
        check_positive("train.lr", self.lr)
        check_choice("train.lr_schedule", self.lr_schedule, ("cosine", "linear", "constant"))
        check_positive("train.warmup_steps", self.warmup_steps, allow_zero=True)
        check_fraction("train.min_lr_ratio", self.min_lr_ratio)
        check_positive("train.weight_decay", self.weight_decay, allow_zero=True)
        check_fraction("train.beta1", self.beta1, closed_high=False)
        check_fraction("train.beta2", self.beta2, closed_high=False)
        check_positive("train.eps", self.eps)
        check_positive("train.clip_grad", self.clip_grad, allow_none=True)
        check_choice("train.adamw_impl", self.adamw_impl, ("auto", "fused", "foreach", "for_loop"))
        check_positive("train.max_steps", self.max_steps, allow_none=True)
        check_choice("train.precision", self.precision, ("fp32", "bf16", "fp16"))
        check_choice("train.device", self.device, ("auto", "cpu", "cuda"))
        check_positive("train.log_every", self.log_every)
        check_positive("train.eval_every", self.eval_every, allow_zero=True)
        check_positive("train.eval_max_batches", self.eval_max_batches, allow_none=True)
        check_choice("train.on_nan", self.on_nan, ("stop", "skip_batch"))
        for tracker in self.trackers:
            check_choice("train.trackers", tracker, ("tensorboard", "wandb"))

    @property
    def grad_accum_steps(self) -> int:
        return self.batch_size // (self.micro_batch_size or self.batch_size)


@dataclass
class CheckpointConfig:
    every: int = _help("steps between periodic checkpoints (0: none)", default=500)
    phase_boundaries: bool = _help("also checkpoint at the end of every wake and sleep phase", default=True)
    keep: int = _help("checkpoints kept on disk (oldest removed first, only once a newer one is complete)",
                      default=2)

    def __post_init__(self) -> None:
        check_positive("checkpoint.every", self.every, allow_zero=True)
        check_positive("checkpoint.keep", self.keep)

    @property
    def enabled(self) -> bool:
        return bool(self.every) or self.phase_boundaries


SLEEP_OPS = ("replay", "optimizer_reset", "deep_reset", "downscale", "plasticity_decay")
RESET_OPS = ("optimizer_reset", "deep_reset")


@dataclass
class ScheduleConfig:
    name: str = _help("label of the schedule (run folder names, plots); behaviour comes from the keys below",
                      default="single_pass")
    epochs: int = _help("passes over the training data", default=1)
    n_cycles: int = _help("wake/sleep cycles per pass: the data is cut into this many folds", default=1)
    sleep_wake_ratio: float = _help("sleep steps = this x the wake steps before it (when replay_repeats is unset)",
                                    default=0.25)
    replay_repeats: Optional[float] = _help("sleep steps = this x buffer size / batch size (bounded replay)",
                                            default=None)
    sleep_after_last: bool = _help("also sleep after the last wake phase", default=True)
    controller: bool = _help("FORGETTER controller: light sleeps while val loss improves by >= criteria, then "
                             "roll back and deep sleeps; stop when a deep sleep fails", default=False)
    criteria: float = _help("controller: minimum val-loss improvement per cycle", default=0.01)

    def __post_init__(self) -> None:
        check_positive("schedule.epochs", self.epochs)
        check_positive("schedule.n_cycles", self.n_cycles)
        check_positive("schedule.sleep_wake_ratio", self.sleep_wake_ratio, allow_zero=True)
        check_positive("schedule.replay_repeats", self.replay_repeats, allow_none=True)
        check_positive("schedule.criteria", self.criteria, allow_zero=True)

    @property
    def passes(self) -> int:
        return self.epochs


REPLAY_STRATEGIES = ("random", "weighted", "strict", "recency")


@dataclass
class ReplayConfig:
    strategy: str = _help("random (uniform) | weighted (prop. to decayed score) | strict (top-k score) | "
                          "recency (power law of the time since last seen); all without replacement",
                          default="weighted")
    ratio: float = _help("replay buffer size per sleep, as a fraction of the samples seen so far", default=0.2)
    decay_rate: float = _help("scores are multiplied by this once per cycle of age", default=0.9)
    min_decay: float = _help("floor of the age decay factor", default=0.1)
    recency_alpha: float = _help("recency: P(replay) prop. to (steps since last seen + 1) ^ -alpha", default=1.0)
    context_augment: bool = _help("re-pack replayed documents into new contexts (padding masked out)",
                                  default=True)

    def __post_init__(self) -> None:
        check_choice("replay.strategy", self.strategy, REPLAY_STRATEGIES)
        check_fraction("replay.ratio", self.ratio)
        check_fraction("replay.decay_rate", self.decay_rate, closed_low=False)
        check_fraction("replay.min_decay", self.min_decay)
        check_positive("replay.recency_alpha", self.recency_alpha, allow_zero=True)


@dataclass
class SleepConfig:
    ops: list[str] = _help("sleep operations in order; ops before `replay` run at sleep start, after it at sleep "
                           "end: " + ", ".join(SLEEP_OPS), default_factory=list)
    shrink: float = _help("downscale: factor applied to every unprotected weight", default=0.95)
    protect_fraction: float = _help("downscale: fraction of weights protected by importance", default=0.1)
    importance: str = _help("downscale: taylor (|w*grad|) | fisher (grad^2), accumulated during wake",
                            default="taylor")
    scope: str = _help("downscale: protect the top fraction per tensor or globally", default="tensor")
    include_norms: bool = _help("downscale: also shrink 1-D parameters (norm gains, biases)", default=False)
    plasticity_decay: float = _help("plasticity_decay: peak LR of cycle k is multiplied by this^k", default=0.8)

    def __post_init__(self) -> None:
        for op in self.ops:
            check_choice("sleep.ops", op, SLEEP_OPS)
        if len(set(self.ops)) != len(self.ops):
            raise ConfigError(f"sleep.ops: each operation at most once, got {list(self.ops)}")
        if sum(op in RESET_OPS for op in self.ops) > 1:
            raise ConfigError("sleep.ops: optimizer_reset and deep_reset exclude each other (deep includes light)")
        check_fraction("sleep.shrink", self.shrink, closed_low=False)
        check_fraction("sleep.protect_fraction", self.protect_fraction)
        check_choice("sleep.importance", self.importance, ("taylor", "fisher"))
        check_choice("sleep.scope", self.scope, ("tensor", "global"))
        check_fraction("sleep.plasticity_decay", self.plasticity_decay, closed_low=False)

    @property
    def has_sleep(self) -> bool:
        return bool(self.ops)

    @property
    def replays(self) -> bool:
        return "replay" in self.ops

    def split_ops(self) -> tuple[list[str], list[str]]:
        """(ops run at sleep start, ops run at sleep end): those listed before / after `replay`."""
        if "replay" not in self.ops:
            return [op for op in self.ops], []
        i = self.ops.index("replay")
        return list(self.ops[:i]), list(self.ops[i + 1:])


MLM_SCORING = ("pll", "pll_word_l2r")


@dataclass
class EvalConfig:
    blimp_path: Optional[str] = _help("minimal pairs for BLiMP during/after training (default: the generated pairs "
                                      "with data=demo, else none)", default=None)
    blimp_every: int = _help("steps between fast BLiMP evaluations logged as event 'blimp' (0: none)", default=0)
    blimp_n: int = _help("pairs per paradigm in the fast periodic evaluation", default=50)
    final: bool = _help("full evaluation (BLiMP + dev perplexity) of the final model, written to "
                        "final/eval/results.json", default=True)
    final_max_pairs: Optional[int] = _help("final evaluation: at most this many pairs per paradigm (null: all)",
                                           default=None)
    method: str = _help("masked-LM scoring: pll | pll_word_l2r", default="pll")
    batch_size: int = _help("sentences (or masked copies) per scoring batch", default=64)

    def __post_init__(self) -> None:
        check_positive("eval.final_max_pairs", self.final_max_pairs, allow_none=True)
        check_positive("eval.blimp_every", self.blimp_every, allow_zero=True)
        check_positive("eval.blimp_n", self.blimp_n)
        check_choice("eval.method", self.method, MLM_SCORING)
        check_positive("eval.batch_size", self.batch_size)


@dataclass
class Config:
    seed: int = _help("seeds Python, NumPy and torch, the data order and the model init", default=0)
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    sleep: SleepConfig = field(default_factory=SleepConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"seed: must be >= 0, got {self.seed}")
        if self.model.max_positions is not None and self.model.max_positions < self.data.seq_len:
            raise ConfigError(
                f"model.max_positions: {self.model.max_positions} is smaller than data.seq_len={self.data.seq_len}"
            )
        if self.schedule.controller and not any(op in RESET_OPS for op in self.sleep.ops):
            raise ConfigError("schedule.controller: needs optimizer_reset (light sleep) in sleep.ops")
        if self.schedule.n_cycles > 1 and not self.sleep.ops:
            raise ConfigError(f"schedule.n_cycles: {self.schedule.n_cycles} cycles need sleep.ops (e.g. [replay]); "
                              "without sleep use schedule.n_cycles=1")
        if self.train.precision == "fp16" and self.train.device == "cpu":
            raise ConfigError("train.precision: fp16 needs a GPU; use bf16 on CPU")


# --- `sleeptrain eval MODEL_DIR [key=value ...]` ---------------------------------------------------------------

@dataclass
class BlimpEvalConfig:
    path: Optional[str] = _help("folder of *.jsonl / *.jsonl.gz minimal pairs (default: the generated pairs of the "
                                "run the model came from)", default=None)
    enabled: bool = _help("score minimal pairs", default=True)
    method: str = _help("masked-LM scoring: pll | pll_word_l2r (causal LMs always sum token log-probs)",
                        default="pll")
    max_pairs: Optional[int] = _help("at most this many pairs per paradigm", default=None)
    per_pair: bool = _help("also write per-pair scores (pairs.jsonl beside the results)", default=False)

    def __post_init__(self) -> None:
        check_choice("blimp.method", self.method, MLM_SCORING)
        check_positive("blimp.max_pairs", self.max_pairs, allow_none=True)


@dataclass
class PerplexityEvalConfig:
    path: Optional[str] = _help("BabyLM-layout folder (default: the data of the run the model came from)",
                                default=None)
    enabled: bool = _help("compute perplexity", default=True)
    split: str = _help("split to evaluate: dev | test | train", default="dev")
    seq_len: Optional[int] = _help("window length (default: the run's data.seq_len, else the model's positions)",
                                   default=None)
    stride: Optional[int] = _help("causal: new tokens scored per window, < seq_len (default: seq_len - 1, packed "
                                  "blocks; smaller = sliding windows with more context)", default=None)
    mlm_positions: int = _help("masked LM: positions sampled per source for pseudo-perplexity", default=2000)
    max_lines: Optional[int] = _help("at most this many lines per source", default=None)

    def __post_init__(self) -> None:
        check_choice("perplexity.split", self.split, ("dev", "test", "train"))
        check_positive("perplexity.seq_len", self.seq_len, allow_none=True)
        check_positive("perplexity.stride", self.stride, allow_none=True)
        check_positive("perplexity.mlm_positions", self.mlm_positions)
        check_positive("perplexity.max_lines", self.max_lines, allow_none=True)
        if self.stride and self.seq_len and self.stride >= self.seq_len:
            raise ConfigError(f"perplexity.stride: must be smaller than perplexity.seq_len={self.seq_len}, "
                              f"got {self.stride}")


@dataclass
class EvalCommandConfig:
    out: Optional[str] = _help("results file (default: MODEL_DIR/eval/results.json)", default=None)
    batch_size: int = _help("sentences (or masked copies) per batch", default=64)
    device: str = _help("auto | cpu | cuda", default="auto")
    seed: int = _help("seeds the sampled positions of masked-LM pseudo-perplexity", default=0)
    blimp: BlimpEvalConfig = field(default_factory=BlimpEvalConfig)
    perplexity: PerplexityEvalConfig = field(default_factory=PerplexityEvalConfig)

    def __post_init__(self) -> None:
        check_positive("batch_size", self.batch_size)
        check_choice("device", self.device, ("auto", "cpu", "cuda"))


def iter_keys(schema: type = Config, prefix: str = ""):
    """Yield (dotted key, type name, default, help) for every leaf option of the schema."""
    instance = schema()
    for f in fields(schema):
        value = getattr(instance, f.name)
        key = f"{prefix}{f.name}"
        if is_dataclass(value):
            yield from iter_keys(type(value), key + ".")
        else:
            type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            yield key, type_name, value, f.metadata.get("help", "")

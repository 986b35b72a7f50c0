"""The typed schema of every option, validated at load time.

Each section is a dataclass; `__post_init__` checks ranges and choices and raises `ConfigError` with a one-line
message naming the full key and what is allowed (litgpt style). Loading presets and command-line overrides into this
schema lives in `presets.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

from sleeptrain.errors import ConfigError

# The fixed choices of the schema. They live here, below what they configure: the implementations import them
# (so `import sleeptrain.config` loads neither torch nor any implementation). Choices that grow by registration
# (sleep ops, replay strategies) are checked by `sleeptrain.sleep.registry.check_config` instead.
REPLAY = "replay"  # the reserved word in sleep.ops: the sleep phase itself (the loop's steps on the replay buffer)
CONTROLLER_BASELINES = ("previous", "best")  # schedule.controller_baseline: sleeptrain.sleep.controller
IMPORTANCE_KINDS = ("taylor", "fisher", "fisher_per_sample")  # sleep.importance: |w*grad| | (batch grad)^2 | sum_i (grad_i)^2
SCOPES = ("tensor", "global")  # sleep.scope: protect the top fraction per tensor | over all tensors
LR_SCHEDULES = ("cosine", "linear", "constant")  # train.lr_schedule: sleeptrain.lm.lr_schedules
MLM_METHODS = ("pll", "pll_word_l2r")  # eval.method: masked-LM scoring, sleeptrain.evaluate.scoring
# checkpoint.words default: BabyLM 2025's word-count checkpoints, 1M..10M, then 20M..100M (sleeptrain.lm.words)
BABYLM_2025_MILESTONES = [n * 1_000_000 for n in range(1, 10)] + [n * 10_000_000 for n in range(1, 11)]


def help_field(text: str, registry: str | None = None, **kwargs: Any) -> Any:
    """A dataclass field carrying its help text (shown by `sleeptrain train --help`); `registry` names the
    registry whose names the key accepts ("ops", "strategies"): `--help` lists them when it prints."""
    metadata = {"help": text, **({"registry": registry} if registry else {})}
    return field(metadata=metadata, **kwargs)


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
    dir: Optional[str] = help_field("run directory (default: runs/<date-time>-<schedule>)", default=None)
    progress: bool = help_field("show a progress bar on stderr", default=True)
    plot: bool = help_field("write RUN_DIR/loss.png at the end (loss curves, sleep phases shaded)", default=True)


@dataclass
class GeneratedDataConfig:
    train_sentences: int = help_field("sentences in the generated training split", default=60_000)
    dev_sentences: int = help_field("sentences in the generated dev split", default=2_000)
    test_sentences: int = help_field("sentences in the generated test split", default=2_000)
    pairs_per_paradigm: int = help_field("generated minimal pairs per agreement paradigm", default=500)
    seed: int = help_field("grammar seed (the corpus is a pure function of it)", default=0)

    def __post_init__(self) -> None:
        for name in ("train_sentences", "dev_sentences", "test_sentences", "pairs_per_paradigm"):
            check_positive(f"data.generated.{name}", getattr(self, name))


@dataclass
class HFDataConfig:
    config_name: Optional[str] = help_field("dataset configuration name passed to datasets.load_dataset", default=None)
    train_split: str = help_field("split used for training", default="train")
    dev_split: Optional[str] = help_field("split used for validation (held out from train when absent)", default="validation")
    text_field: str = help_field("column holding the text", default="text")


@dataclass
class DataConfig:
    source: str = help_field("generated (built-in grammar) | babylm (BabyLM-layout folder) | hf (datasets)", default="generated")
    path: Optional[str] = help_field("babylm: folder with train/ dev/ test/; hf: dataset name or local path", default=None)
    strip_speaker_tags: bool = help_field("babylm: drop leading speaker tags such as 'A:<tab>'", default=True)
    seq_len: int = help_field("tokens per training sample (context length)", default=128)
    packing: str = help_field("blocks (consecutive packed blocks) | windows (random windows over the token tape)", default="blocks")
    windows: Optional[int] = help_field("packing=windows: number of windows (default: tokens // seq_len)", default=None)
    dev_fraction: float = help_field("fraction of train held out as dev when the data has no dev split", default=0.02)
    train_folder: Optional[str] = help_field("babylm: the training folder under data.path when it holds several "
                                             "(e.g. train_10M; default: train/, or the only train_*/ there)",
                                             default=None)
    max_lines: Optional[int] = help_field("read at most this many lines per split and source (quick looks)", default=None)
    max_line_chars: Optional[int] = help_field("babylm: refuse a file with a line longer than this (a wrong file; "
                                               "null: no limit)", default=1_000_000)
    cache_dir: Optional[str] = help_field("tokenizer/token-store cache (default: $SLEEPTRAIN_CACHE or ~/.cache/sleeptrain)", default=None)
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
        if self.source == "generated" and self.path:
            raise ConfigError(f"data.path: {self.path!r} would be ignored: data.source is generated (the built-in "
                              f"grammar); add data=babylm (a BabyLM-layout folder) or data=hf to train on it")


@dataclass
class TokenizerConfig:
    path: Optional[str] = help_field("load this tokenizer folder instead of training a BPE", default=None)
    vocab_size: int = help_field("byte-level BPE vocabulary size (trained on the training split)", default=4096)
    min_frequency: int = help_field("BPE: minimum pair frequency for a merge", default=2)

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ConfigError(f"tokenizer.vocab_size: must be >= 300 (256 bytes + specials + merges), got {self.vocab_size}")
        check_positive("tokenizer.min_frequency", self.min_frequency)


LOSS_IMPLS = ("auto", "chunked", "plain")  # train.loss: sleeptrain.lm.losses.forward_losses

MODEL_ARCHS = ("llama", "gemma", "gpt2", "roberta", "roberta_prelayernorm")
MASKED_ARCHS = ("roberta", "roberta_prelayernorm")  # masked LMs; the rest are causal
GQA_ARCHS = ("llama", "gemma")  # free head_dim and grouped-query attention


@dataclass
class ModelConfig:
    arch: str = help_field("llama (causal: RMSNorm, RoPE, GQA) | gemma (causal, Gemma/minGemma-style) | "
                           "gpt2 (causal) | roberta (masked LM, post-LN as BERT) | roberta_prelayernorm (masked LM, "
                           "pre-LN: the model CLIMB-Sleep trains)", default="llama")
    hidden_size: int = help_field("model width", default=128)
    num_layers: int = help_field("transformer blocks", default=4)
    num_heads: int = help_field("attention heads", default=4)
    num_kv_heads: Optional[int] = help_field("llama, gemma: key/value heads for grouped-query attention (default: num_heads)", default=None)
    head_dim: Optional[int] = help_field("llama, gemma: per-head dimension (default: hidden_size // num_heads)", default=None)
    intermediate_size: int = help_field("MLP width", default=512)
    tie_embeddings: bool = help_field("share input and output embeddings (gpt2 and roberta always do; "
                                      "roberta_prelayernorm follows this)", default=True)
    dropout: float = help_field("dropout probability", default=0.0)
    rope_theta: float = help_field("llama: RoPE base", default=10_000.0)
    norm_eps: float = help_field("layer/RMS norm epsilon", default=1e-6)
    init_std: float = help_field("std of the normal weight init", default=0.02)
    max_positions: Optional[int] = help_field("position embeddings (default: data.seq_len)", default=None)
    mlm_probability: float = help_field("masked LMs: fraction of tokens masked (80% <mask>, 10% random, 10% kept)", default=0.15)
    init_from: Optional[str] = help_field("a pretrained HF model folder (save_pretrained) to start from: its weights, "
                                          "architecture and sizes (model.arch must name its family; the other "
                                          "model.* sizes are not used) and, unless tokenizer.path is given, its "
                                          "tokenizer", default=None)

    def __post_init__(self) -> None:
        check_choice("model.arch", self.arch, MODEL_ARCHS)
        if self.init_from is not None and not (Path(self.init_from) / "config.json").is_file():
            raise ConfigError(f"model.init_from: {self.init_from!r} is not a model folder (no config.json; expected a "
                              "save_pretrained folder such as a run's final/)")
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
        if self.arch not in GQA_ARCHS and (self.head_dim is not None or self.num_kv_heads not in (None, self.num_heads)):
            raise ConfigError(f"model.head_dim / model.num_kv_heads: only supported with model.arch="
                              f"{' or '.join(GQA_ARCHS)}, not {self.arch}")
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise ConfigError(f"model.num_kv_heads: {kv} must divide model.num_heads={self.num_heads}")

    @property
    def is_masked_lm(self) -> bool:
        return self.arch in MASKED_ARCHS


@dataclass
class TrainConfig:
    batch_size: int = help_field("samples per optimizer step (global batch)", default=32)
    micro_batch_size: Optional[int] = help_field("samples per forward pass; batch_size must be a multiple (default: batch_size)", default=None)
    lr: float = help_field("peak learning rate", default=2e-3)
    lr_schedule: str = help_field("cosine | linear | constant (after linear warm-up)", default="cosine")
    warmup_steps: int = help_field("linear warm-up steps (capped at 20% of the run's steps)", default=50)
    min_lr_ratio: float = help_field("final LR as a fraction of the peak (cosine/linear)", default=0.1)
    weight_decay: float = help_field("decoupled AdamW weight decay", default=0.1)
    decay_norms_and_biases: bool = help_field("also decay 1-D parameters (norm gains, biases)", default=False)
    beta1: float = help_field("AdamW beta1", default=0.9)
    beta2: float = help_field("AdamW beta2", default=0.95)
    eps: float = help_field("AdamW epsilon", default=1e-8)
    adamw_impl: str = help_field("AdamW kernel: auto (fused where torch has it for the device, else foreach) | fused | "
                                 "foreach | for_loop", default="auto")
    loss: str = help_field("auto (chunked for causal LMs, plain for masked) | chunked (output projection + "
                           "cross-entropy a block of rows at a time: no full-vocabulary float32 logits) | plain (the "
                           "model's logits, then cross-entropy)", default="auto")
    loss_chunk_mb: int = help_field("train.loss=chunked: float32 logits alive at once, in MiB", default=64)
    prefetch: bool = help_field("gather the next batch's tokens on a background thread while the current one trains "
                                "(runs are bit-identical either way)", default=True)
    compile: str = help_field("auto (on a CPU with a C++ compiler, for runs of >= 1000 steps, where it measured "
                              "1.25-1.47x faster; eager otherwise and on GPUs, not measured there yet; the choice is "
                              "logged) | true | false. torch.compile the model (in place; state-dict names "
                              "unchanged) and the chunked loss's blocks, warmed on every batch shape of the plan "
                              "before step 0 so no phase change recompiles mid-run", default="auto")
    attention: str = help_field("auto (eager on a CPU under bf16, where SDPA's CPU kernel has a slow bf16 backward: "
                                "measured 1.2x (eager) to 1.45x (compiled) faster forward + backward; sdpa "
                                "elsewhere; a resumed run keeps its choice) | sdpa | eager. The model's attention "
                                "kernel (transformers attn_implementation)", default="auto")
    clip_grad: Optional[float] = help_field("max global gradient norm (null: no clipping)", default=1.0)
    max_steps: Optional[int] = help_field("cap on optimizer steps for any schedule (the LR schedule is fitted to the cap)", default=None)
    precision: str = help_field("auto (bf16 where the GPU supports it or a sub-second CPU probe measures it faster "
                                "than fp32, else fp32; the choice is logged) | fp32 | bf16 (autocast, CPU or GPU) | "
                                "fp16 (GPU only)", default="auto")
    device: str = help_field("auto | cpu | cuda", default="auto")
    threads: Optional[int] = help_field("CPU threads torch uses in this process (default: the cores this process may "
                                        "use, shared among this machine's processes of the run; on a CPU another busy "
                                        "program shares, fewer — e.g. 1 — avoids oversubscription)", default=None)
    log_every: int = help_field("steps between training records in metrics.jsonl", default=10)
    eval_every: int = help_field("steps between validation-loss evaluations (0: only at the end)", default=100)
    eval_max_batches: Optional[int] = help_field("cap on validation batches per evaluation (null: whole dev split)", default=None)
    eval_windows: str = help_field(
        "split: the dev split's consecutive blocks, the same ones every evaluation | random: train.eval_max_batches "
        "batches of windows drawn afresh from the dev text at every evaluation, seeded by (seed, step), as the "
        "FORGETTER authors validate", default="split")
    on_nan: str = help_field("a NaN/inf training loss: stop (the newest checkpoint stays the last good one) | "
                             "skip_batch (drop that step's update, log it, go on; costs one host sync per step)",
                             default="stop")
    log_samples: bool = help_field("write RUN_DIR/samples.rank<R>.jsonl: the sample indices of every wake step and "
                                   "every replay buffer, per process (audits sharding and replay)", default=False)
    trackers: list[str] = help_field("experiment trackers via Accelerate: tensorboard, wandb (default: none)", default_factory=list)

    def __post_init__(self) -> None:
        check_positive("train.batch_size", self.batch_size)
        check_positive("train.micro_batch_size", self.micro_batch_size, allow_none=True)
        if self.micro_batch_size and self.batch_size % self.micro_batch_size:
            raise ConfigError(
                f"train.micro_batch_size: {self.micro_batch_size} must divide train.batch_size={self.batch_size}"
            )
        check_positive("train.lr", self.lr)
        check_choice("train.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_positive("train.warmup_steps", self.warmup_steps, allow_zero=True)
        check_fraction("train.min_lr_ratio", self.min_lr_ratio)
        check_positive("train.weight_decay", self.weight_decay, allow_zero=True)
        check_fraction("train.beta1", self.beta1, closed_high=False)
        check_fraction("train.beta2", self.beta2, closed_high=False)
        check_positive("train.eps", self.eps)
        check_positive("train.clip_grad", self.clip_grad, allow_none=True)
        check_choice("train.adamw_impl", self.adamw_impl, ("auto", "fused", "foreach", "for_loop"))
        check_choice("train.loss", self.loss, LOSS_IMPLS)
        check_positive("train.loss_chunk_mb", self.loss_chunk_mb)
        check_positive("train.max_steps", self.max_steps, allow_none=True)
        self.compile = str(self.compile).lower()  # a YAML/CLI true/false arrives as a bool or "True"
        check_choice("train.compile", self.compile, ("auto", "true", "false"))
        check_choice("train.attention", self.attention, ("auto", "sdpa", "eager"))
        check_choice("train.precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        check_choice("train.device", self.device, ("auto", "cpu", "cuda"))
        check_positive("train.threads", self.threads, allow_none=True)
        check_positive("train.log_every", self.log_every)
        check_positive("train.eval_every", self.eval_every, allow_zero=True)
        check_positive("train.eval_max_batches", self.eval_max_batches, allow_none=True)
        check_choice("train.eval_windows", self.eval_windows, ("split", "random"))
        if self.eval_windows == "random" and not self.eval_max_batches:
            raise ConfigError("train.eval_windows: random needs train.eval_max_batches (how many batches of windows "
                              "to draw per evaluation)")
        check_choice("train.on_nan", self.on_nan, ("stop", "skip_batch"))
        for tracker in self.trackers:
            check_choice("train.trackers", tracker, ("tensorboard", "wandb"))


@dataclass
class CheckpointConfig:
    every: int = help_field("steps between periodic checkpoints (0: none)", default=500)
    phase_boundaries: bool = help_field("also checkpoint at the end of every wake and sleep phase", default=True)
    keep: int = help_field("checkpoints kept on disk (oldest removed first, only once a newer one is complete)",
                           default=2)
    words: list[int] = help_field("save a model folder RUN_DIR/chck_<N>M (chck_<N>K below a million) when this many "
                                  "words have been trained on (default: BabyLM 2025's 1M..10M, then 20M..100M; [] "
                                  "for none)", default_factory=lambda: list(BABYLM_2025_MILESTONES))

    def __post_init__(self) -> None:
        check_positive("checkpoint.every", self.every, allow_zero=True)
        check_positive("checkpoint.keep", self.keep)
        for n in self.words:
            check_positive("checkpoint.words", n)

    @property
    def enabled(self) -> bool:
        return bool(self.every) or self.phase_boundaries


@dataclass
class ScheduleConfig:
    name: str = help_field("label of the schedule (run folder names, plots); behaviour comes from the keys below",
                           default="single_pass")
    epochs: int = help_field("passes over the training data", default=1)
    n_cycles: int = help_field("wake/sleep cycles per pass: the data is cut into this many folds", default=1)
    steps_per_epoch: Optional[int] = help_field(
        "FORGETTER epochs: each of schedule.epochs wake phases is this many steps over windows drawn afresh from "
        "the training tape for that epoch (seeded by seed and epoch), each followed by a sleep (null: passes "
        "over fixed samples cut into schedule.n_cycles folds)", default=None)
    sleep_wake_ratio: float = help_field("sleep steps = this x the wake steps before it (when replay_repeats is unset)",
                                         default=0.25)
    replay_repeats: Optional[float] = help_field("sleep steps = this x buffer size / batch size (bounded replay)",
                                                 default=None)
    sleep_after_last: bool = help_field("also sleep after the last wake phase", default=True)
    controller: bool = help_field("FORGETTER controller: light sleeps while val loss improves by more than "
                                  "criteria, then deep sleeps (rolling back if the loss rose); stop when a deep "
                                  "sleep does not improve; the best weights are kept", default=False)
    criteria: float = help_field("controller: val-loss improvement a light sleep must exceed (0 in the published "
                                 "runs)", default=0.0)
    controller_baseline: str = help_field("controller: compare with the previous cycle's loss as the authors' code "
                                          "records it (previous) or with the best so far (best)",
                                          default="previous")

    def __post_init__(self) -> None:
        check_positive("schedule.epochs", self.epochs)
        check_positive("schedule.n_cycles", self.n_cycles)
        check_positive("schedule.steps_per_epoch", self.steps_per_epoch, allow_none=True)
        if self.steps_per_epoch and self.n_cycles != 1:
            raise ConfigError(f"schedule.n_cycles: {self.n_cycles} folds do not combine with schedule.steps_per_epoch "
                              "(each epoch is one wake phase); set schedule.n_cycles=1")
        check_positive("schedule.sleep_wake_ratio", self.sleep_wake_ratio, allow_zero=True)
        check_positive("schedule.replay_repeats", self.replay_repeats, allow_none=True)
        check_positive("schedule.criteria", self.criteria, allow_zero=True)
        check_choice("schedule.controller_baseline", self.controller_baseline, CONTROLLER_BASELINES)

    @property
    def passes(self) -> int:
        return self.epochs


@dataclass
class ReplayConfig:
    strategy: str = help_field("random (uniform) | weighted (prop. to decayed score) | strict (top-k score) | "
                               "recency (power law of the time since last seen); all without replacement",
                               registry="strategies", default="weighted")
    ratio: float = help_field("replay buffer size per sleep, as a fraction of the samples seen so far", default=0.2)
    decay_rate: float = help_field("scores are multiplied by this once per cycle of age", default=0.9)
    min_decay: float = help_field("floor of the age decay factor", default=0.1)
    recency_alpha: float = help_field("recency: P(replay) prop. to (steps since last seen + 1) ^ -alpha", default=1.0)
    context_augment: bool = help_field("re-pack replayed documents into new contexts (padding masked out)",
                                       default=True)

    def __post_init__(self) -> None:
        check_fraction("replay.ratio", self.ratio)
        check_fraction("replay.decay_rate", self.decay_rate, closed_low=False)
        check_fraction("replay.min_decay", self.min_decay)
        check_positive("replay.recency_alpha", self.recency_alpha, allow_zero=True)


@dataclass
class SleepConfig:
    ops: list[str] = help_field("sleep operations in order; ops before `replay` run at sleep start, after it at sleep "
                                "end", registry="ops", default_factory=list)
    shrink: float = help_field("downscale: factor applied to every unprotected weight", default=0.95)
    protect_fraction: float = help_field("downscale: fraction of weights protected by importance", default=0.1)
    importance: str = help_field("downscale: taylor (|w*grad|) | fisher (the step's gradient squared) | "
                                 "fisher_per_sample (each sample's gradient squared, summed: the empirical Fisher "
                                 "as CLIMB-Sleep computes it; an extra per-sample backward per step)",
                                 default="taylor")
    scope: str = help_field("downscale: protect the top fraction per tensor or globally", default="tensor")
    include_norms: bool = help_field("downscale: also shrink 1-D parameters (norm gains, biases)", default=False)
    plasticity_decay: float = help_field("plasticity_decay: peak LR of cycle k is multiplied by this^k", default=0.8)
    importance_from: str = help_field("downscale: where importance is gathered: wake (every wake step, as CLIMB-Sleep's "
                                      "code) | sleep (the replay steps: homeostasis 'as memories are revisited', the "
                                      "seed's reading) | both", default="wake")
    prune_fraction: float = help_field("downscale: after the shrink, set to 0 this fraction of each tensor's "
                                       "unprotected weights, the smallest by magnitude (the seed's pruning of the "
                                       "weakest synapses; 0: none, as the code)", default=0.0)

    def __post_init__(self) -> None:
        if len(set(self.ops)) != len(self.ops):
            raise ConfigError(f"sleep.ops: each operation at most once, got {list(self.ops)}")
        check_fraction("sleep.shrink", self.shrink, closed_low=False)
        check_fraction("sleep.protect_fraction", self.protect_fraction)
        check_choice("sleep.importance", self.importance, IMPORTANCE_KINDS)
        check_choice("sleep.scope", self.scope, SCOPES)
        check_fraction("sleep.plasticity_decay", self.plasticity_decay, closed_low=False)
        check_choice("sleep.importance_from", self.importance_from, ("wake", "sleep", "both"))
        check_fraction("sleep.prune_fraction", self.prune_fraction, closed_high=False)
        if self.importance_from != "wake" and "downscale" in self.ops and "replay" not in self.ops:
            raise ConfigError("sleep.importance_from: gathering importance in sleep needs replay steps; add replay to "
                              "sleep.ops before downscale, or use importance_from=wake")

    @property
    def has_sleep(self) -> bool:
        return bool(self.ops)

    @property
    def replays(self) -> bool:
        return REPLAY in self.ops

    def split_ops(self) -> tuple[list[str], list[str]]:
        """(ops run at sleep start, ops run at sleep end): those listed before / after `replay`."""
        if REPLAY not in self.ops:
            return [op for op in self.ops], []
        i = self.ops.index(REPLAY)
        return list(self.ops[:i]), list(self.ops[i + 1:])


@dataclass
class EvalConfig:
    blimp_path: Optional[str] = help_field("minimal pairs for BLiMP during/after training (default: the generated pairs "
                                           "with data=demo, else none)", default=None)
    blimp_every: int = help_field("steps between fast BLiMP evaluations logged as event 'blimp' (0: none)", default=0)
    blimp_n: int = help_field("pairs per paradigm in the fast periodic evaluation", default=50)
    final: bool = help_field("full evaluation (BLiMP + dev perplexity) of the final model, written to "
                             "final/eval/results.json", default=True)
    final_max_pairs: Optional[int] = help_field("final evaluation: at most this many pairs per paradigm (null: all)",
                                                default=None)
    method: str = help_field("masked-LM scoring: pll | pll_word_l2r", default="pll")
    batch_size: int = help_field("sentences (or masked copies) per scoring batch", default=64)
    suite: Optional[str] = help_field("babylm-fast: score every word checkpoint (checkpoint.words) as it is written "
                                      "with the BabyLM pipeline's fast zero-shot suite (event 'babylm' in "
                                      "metrics.jsonl; the pipeline's files in chck_<N>/eval/babylm)", default=None)
    suite_data: Optional[str] = help_field("the pipeline's evaluation_data/ folder (or its fast_eval/) for "
                                           "eval.suite", default=None)

    def __post_init__(self) -> None:
        check_choice("eval.suite", self.suite, (None, "babylm-fast"))
        if self.suite and not self.suite_data:
            raise ConfigError("eval.suite_data: required with eval.suite (the pipeline's evaluation_data/ folder)")
        if self.suite_data and not Path(self.suite_data).is_dir():
            raise ConfigError(f"eval.suite_data: {self.suite_data!r} is not a folder")
        check_positive("eval.final_max_pairs", self.final_max_pairs, allow_none=True)
        check_positive("eval.blimp_every", self.blimp_every, allow_zero=True)
        check_positive("eval.blimp_n", self.blimp_n)
        check_choice("eval.method", self.method, MLM_METHODS)
        check_positive("eval.batch_size", self.batch_size)


@dataclass
class BabyLMConfig:
    strict: bool = help_field("refuse (true) or only warn about (false) a run planned to train on more than "
                              "babylm.max_epochs passes over its training tokens (BabyLM 2025: at most 10 epochs)",
                              default=False)
    max_epochs: float = help_field("the track's limit on passes over the training data", default=10.0)

    def __post_init__(self) -> None:
        check_positive("babylm.max_epochs", self.max_epochs)


@dataclass
class Config:
    seed: int = help_field("seeds Python, NumPy and torch, the data order and the model init", default=0)
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
    babylm: BabyLMConfig = field(default_factory=BabyLMConfig)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"seed: must be >= 0, got {self.seed}")
        if self.model.init_from and not self.tokenizer.path:  # a pretrained model continues with its own tokenizer
            self.tokenizer.path = self.model.init_from
        if self.model.max_positions is not None and self.model.max_positions < self.data.seq_len:
            raise ConfigError(
                f"model.max_positions: {self.model.max_positions} is smaller than data.seq_len={self.data.seq_len}"
            )
        if self.schedule.n_cycles > 1 and not self.sleep.ops:
            raise ConfigError(f"schedule.n_cycles: {self.schedule.n_cycles} cycles need sleep.ops (e.g. [replay]); "
                              "without sleep use schedule.n_cycles=1")
        if self.train.precision == "fp16" and self.train.device == "cpu":
            raise ConfigError("train.precision: fp16 needs a GPU; use bf16 on CPU")
        if self.eval.suite and not self.checkpoint.words:
            raise ConfigError("eval.suite: scores each word checkpoint, and checkpoint.words is empty; give "
                              "checkpoint.words=[...] (e.g. the BabyLM milestones)")
        if self.train.loss == "chunked" and self.model.is_masked_lm:
            raise ConfigError("train.loss: chunked needs a causal LM (model.arch llama, gemma or gpt2); masked LMs use "
                              "plain (or auto)")


def iter_keys(schema: type = Config, prefix: str = "", registries: bool = False):
    """Yield (dotted key, type name, default, help) for every leaf option of the schema; with `registries`, also
    the registry whose names the key accepts (or None)."""
    instance = schema()
    for f in fields(schema):
        value = getattr(instance, f.name)
        key = f"{prefix}{f.name}"
        if is_dataclass(value):
            yield from iter_keys(type(value), key + ".", registries)
        else:
            type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            row = (key, type_name, value, f.metadata.get("help", ""))
            yield (*row, f.metadata.get("registry")) if registries else row

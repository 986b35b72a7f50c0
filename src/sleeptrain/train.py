"""The training loop: explicit and readable, on Accelerate (devices, mixed precision, later multi-process).

Data flows one way: corpus -> tokenizer -> token store -> samples -> plan (which samples each step) -> this loop
-> metrics.jsonl / checkpoints / final model. The loop owns the model and the optimizer.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sleeptrain.checkpoint import save_checkpoint
from sleeptrain.config import Config
from sleeptrain.data.corpus import Corpus, load_corpus
from sleeptrain.data.grammar import generate_minimal_pairs, write_minimal_pairs
from sleeptrain.data.samples import PackedBlocks, make_batcher, make_samples
from sleeptrain.data.token_store import get_token_stores
from sleeptrain.data.tokenizer import get_tokenizer
from sleeptrain.errors import ConfigError, DataError
from sleeptrain.fsutil import atomic_write_text
from sleeptrain.losses import token_losses
from sleeptrain.lr_schedules import lr_at
from sleeptrain.metrics import MetricsLog, environment_record
from sleeptrain.models import build_model, count_parameters, special_token_ids
from sleeptrain.presets import config_to_yaml, flat_config
from sleeptrain.sampler import EpochPlan
from sleeptrain.validation import validation_loss

PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


@dataclass
class RunResult:
    run_dir: Path
    final_dir: Path
    steps: int
    tokens: int
    seconds: float
    first_val_loss: float
    final_val_loss: float


def default_run_dir(cfg: Config) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.schedule.name}"


def prepare_run_dir(cfg: Config) -> Path:
    """Create the run folder; refuse one that already holds a run (nothing written is ever overwritten)."""
    run_dir = Path(cfg.run.dir) if cfg.run.dir else default_run_dir(cfg)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run.dir: {str(run_dir)!r} is a file")
    if (run_dir / "metrics.jsonl").exists() or (run_dir / "config.yaml").exists():
        raise ConfigError(f"run.dir: {str(run_dir)!r} already holds a run; choose another run.dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"run.dir: cannot write to {str(run_dir)!r} ({exc.strerror})") from None
    return run_dir


def make_accelerator(cfg: Config, run_dir: Path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # Accelerate keeps precision/device in a per-process singleton; several runs in one process (library use,
    # comparisons) each get their own. The process-group state (multi-process launches) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda was asked for but no GPU is visible (use auto or cpu)")
    use_cpu = cfg.train.device == "cpu" or not torch.cuda.is_available()
    if cfg.train.precision == "fp16" and use_cpu:
        raise ConfigError("train.precision: fp16 needs a GPU; use bf16 on CPU")
    return Accelerator(cpu=use_cpu, mixed_precision=PRECISION[cfg.train.precision],
                       log_with=list(cfg.train.trackers) or None, project_dir=str(run_dir))


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW with decoupled weight decay; 1-D parameters (norm gains, biases) are not decayed by default."""
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.ndim >= 2 or cfg.train.decay_norms_and_biases else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2), eps=cfg.train.eps)


def write_run_start(run_dir: Path, cfg: Config, presets: dict[str, str], overrides: list[str]) -> None:
    atomic_write_text(run_dir / "config.yaml", config_to_yaml(cfg))
    record = {"presets": presets, "overrides": overrides, **environment_record()}
    atomic_write_text(run_dir / "run.json", json.dumps(record, indent=1))


def write_demo_pairs(cfg: Config, run_dir: Path) -> Path | None:
    """For the generated corpus: the matching agreement minimal pairs, BLiMP format, beside the run."""
    if cfg.data.source != "generated":
        return None
    g = cfg.data.generated
    return write_minimal_pairs(generate_minimal_pairs(g.pairs_per_paradigm, g.seed), run_dir / "minimal_pairs")


def train(cfg: Config, presets: dict[str, str] | None = None, overrides: list[str] | None = None) -> RunResult:
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    t_start = time.time()
    corpus: Corpus = load_corpus(cfg.data)  # data errors surface before anything is written
    run_dir = prepare_run_dir(cfg)
    write_run_start(run_dir, cfg, presets or {}, overrides or [])
    pairs_dir = write_demo_pairs(cfg, run_dir)

    accelerator = make_accelerator(cfg, run_dir)
    device = accelerator.device
    set_seed(cfg.seed)
    masked = cfg.model.is_masked_lm
    tokenizer = get_tokenizer(cfg.tokenizer, corpus, cfg.data, need_mask=masked)
    stores = get_token_stores(corpus, tokenizer, cfg.data)
    if stores["train"].n_tokens < cfg.data.seq_len:
        raise DataError(f"data: the training split has {stores['train'].n_tokens} tokens, fewer than "
                        f"data.seq_len={cfg.data.seq_len}")
    train_samples = make_samples(stores["train"], cfg.data.seq_len, tokenizer.pad_token_id, cfg.data.packing,
                                 cfg.data.windows, cfg.seed)
    dev_samples = PackedBlocks(stores["dev"], cfg.data.seq_len, tokenizer.pad_token_id)

    set_seed(cfg.seed)
    model = build_model(cfg.model, len(tokenizer), cfg.data.seq_len, special_token_ids(tokenizer))
    params = count_parameters(model)
    optimizer = make_optimizer(model, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    batcher = make_batcher(tokenizer, masked, cfg.model.mlm_probability, seed=cfg.seed)

    tc = cfg.train
    plan = EpochPlan(len(train_samples), tc.batch_size, cfg.schedule.passes, cfg.seed, tc.max_steps)
    total_steps = plan.total_steps
    # warm-up is capped at 20% of the run so quick looks (train.max_steps=N) still reach the peak LR
    warmup = min(tc.warmup_steps, total_steps // 5)
    micro = tc.micro_batch_size or tc.batch_size
    eval_kwargs = dict(masked=masked, batch_size=micro, device=device, max_batches=tc.eval_max_batches,
                       mlm_probability=cfg.model.mlm_probability, seed=cfg.seed, autocast=accelerator.autocast)

    metrics = MetricsLog(run_dir / "metrics.jsonl")
    metrics.write({"event": "start", "steps": total_steps, "warmup_steps": warmup, "samples": len(train_samples),
                   "train_tokens": stores["train"].n_tokens, "dev_tokens": stores["dev"].n_tokens,
                   "parameters": params["total"], "non_embedding_parameters": params["non_embedding"],
                   "vocab_size": len(tokenizer), "corpus": corpus.description, "notes": corpus.notes})
    if tc.trackers:
        accelerator.init_trackers("sleeptrain", config=flat_config(cfg))

    def evaluate(step: int, tokens: int) -> float:
        record = {"event": "eval", "step": step, "tokens": tokens,
                  **validation_loss(accelerator.unwrap_model(model), dev_samples, tokenizer, **eval_kwargs)}
        metrics.write(record)
        if tc.trackers:
            accelerator.log({"val_loss": record["val_loss"]}, step=step)
        return record["val_loss"]

    first_val = evaluate(0, 0)
    bar = tqdm(total=total_steps, desc="train", disable=not cfg.run.progress, dynamic_ncols=True, leave=True)
    model.train()
    tokens_seen = 0
    interval_loss = torch.zeros((), device=device)
    interval_steps, interval_tokens, interval_start = 0, 0, time.time()
    last_val = first_val
    for step in range(total_steps):
        lr = lr_at(step, total_steps, tc.lr, warmup, tc.lr_schedule, tc.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        indices = plan.indices(step)
        batches = [batcher(*train_samples.get(indices[i:i + micro])) for i in range(0, len(indices), micro)]
        n_label_tokens = sum(int((b["labels"] != -100).sum()) for b in batches) or 1
        step_loss = torch.zeros((), device=device)
        for i, batch in enumerate(batches):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            sync = i == len(batches) - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                loss, _ = token_losses(logits, batch["labels"], causal=not masked)
                loss = loss.sum() / n_label_tokens
                accelerator.backward(loss)
            step_loss += loss.detach()
            interval_tokens += int(batch["attention_mask"].sum())
        if tc.clip_grad:
            accelerator.clip_grad_norm_(model.parameters(), tc.clip_grad)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        interval_loss += step_loss
        interval_steps += 1
        done = step + 1
        bar.update(1)

        if done % tc.log_every == 0 or done == total_steps:
            loss_value = (interval_loss / interval_steps).item()  # the only host sync, once per log interval
            if not math.isfinite(loss_value):
                metrics.close()
                raise DataError(f"training loss became {loss_value} at step {done}; lower train.lr or check the data")
            elapsed = max(time.time() - interval_start, 1e-9)
            tokens_seen += interval_tokens
            record = {"event": "train", "step": done, "loss": loss_value, "lr": lr, "tokens": tokens_seen,
                      "tokens_per_s": interval_tokens / elapsed, "epoch": plan.pass_of(step)}
            metrics.write(record)
            if tc.trackers:
                accelerator.log({"loss": loss_value, "lr": lr}, step=done)
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", tok_s=f"{record['tokens_per_s']:.0f}")
            interval_loss.zero_()
            interval_steps, interval_tokens, interval_start = 0, 0, time.time()
        if tc.eval_every and done % tc.eval_every == 0 and done != total_steps:
            last_val = evaluate(done, tokens_seen)
        if tc.checkpoint_every and done % tc.checkpoint_every == 0 and accelerator.is_main_process:
            save_checkpoint(run_dir, done, accelerator.unwrap_model(model), optimizer, tokenizer,
                            {"tokens": tokens_seen, "seed": cfg.seed}, tc.checkpoint_keep)
    bar.close()
    last_val = evaluate(total_steps, tokens_seen)

    final_dir = run_dir / "final"
    if accelerator.is_main_process:
        save_final(accelerator.unwrap_model(model), tokenizer, final_dir, cfg.data.seq_len)
    seconds = time.time() - t_start
    summary = {"steps": total_steps, "tokens": tokens_seen, "seconds": seconds, "first_val_loss": first_val,
               "final_val_loss": last_val, "final_val_ppl": math.exp(min(last_val, 50.0)),
               "parameters": params, "final_dir": str(final_dir),
               "minimal_pairs": str(pairs_dir) if pairs_dir else None}
    metrics.write({"event": "end", **summary})
    metrics.close()
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    if tc.trackers:
        accelerator.end_training()
    return RunResult(run_dir, final_dir, total_steps, tokens_seen, seconds, first_val, last_val)


def save_final(model, tokenizer, final_dir: Path, seq_len: int) -> None:
    """`save_pretrained` model (safetensors) + tokenizer: a folder the HF Auto classes load as it is."""
    from transformers.utils import logging as hf_logging

    from sleeptrain.fsutil import atomic_dir

    hf_logging.disable_progress_bar()
    tokenizer.model_max_length = seq_len
    with atomic_dir(final_dir, replace=True) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))


def describe(result: RunResult) -> str:
    return "\n".join([
        f"done: {result.steps} steps, {result.tokens:,} tokens in {result.seconds:.0f} s",
        f"  model + tokenizer : {result.final_dir}",
        f"  metrics           : {result.run_dir / 'metrics.jsonl'}",
        f"  config            : {result.run_dir / 'config.yaml'}",
        f"  validation loss   : {result.final_val_loss:.4f} (perplexity {math.exp(min(result.final_val_loss, 50)):.2f}),"
        f" first {result.first_val_loss:.4f}",
    ])

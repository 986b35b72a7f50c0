"""Setting a run up and writing its outputs: data -> plan, run folder, Accelerator, optimizer, final model.

Everything here that can fail on the user's settings or data runs before the run folder exists (`load_run_data`,
`check_runtime`, `check_new_run_dir`), so a failed start leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from sleeptrain.config import Config
from sleeptrain.data.corpus import load_corpus
from sleeptrain.data.grammar import generate_minimal_pairs, write_minimal_pairs
from sleeptrain.data.samples import EpochWindows, PackedBlocks, make_samples
from sleeptrain.data.token_store import get_token_stores
from sleeptrain.data.tokenizer import get_tokenizer
from sleeptrain.errors import ConfigError, DataError
from sleeptrain.fsutil import atomic_dir, atomic_write_text, timestamped_dir
from sleeptrain.lm.hf_folder import save_model_folder
from sleeptrain.lm.metrics_log import environment_record
from sleeptrain.lm.models import check_init_from
from sleeptrain.lm.phases import PhasePlan, build_epoch_plan, build_plan
from sleeptrain.presets import config_to_yaml

PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def default_run_dir(cfg: Config) -> Path:
    return timestamped_dir("runs", cfg.schedule.name)


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse a run folder that already holds a run (nothing written is ever overwritten)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run.dir: {str(run_dir)!r} is a file")
    if (run_dir / "metrics.jsonl").exists() or (run_dir / "config.yaml").exists():
        from sleeptrain.lm.checkpoint import latest_checkpoint

        if (run_dir / "summary.json").exists():
            way_on = "it has finished; choose another run.dir"
        elif latest_checkpoint(run_dir) is None:
            way_on = (f"it never wrote a checkpoint, so it cannot be resumed; discard it (rm -r {run_dir}) or "
                      f"choose another run.dir")
        else:
            way_on = f"choose another run.dir, or continue it with: sleeptrain train resume={run_dir}"
        raise ConfigError(f"run.dir: {str(run_dir)!r} already holds a run; {way_on}")


def prepare_run_dir(run_dir: Path) -> Path:
    """Create the run folder and check that it takes writes."""
    check_new_run_dir(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"run.dir: cannot write to {str(run_dir)!r} ({exc.strerror})") from None
    return run_dir


def check_trackers(trackers: list[str]) -> None:
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    available = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}
    for name in trackers:
        if not available[name]():
            raise ConfigError(f"train.trackers: {name} is not installed (pip install {name}, or drop it)")


TORCH_DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice (physical cores), before any run sets it


def resolve_threads(setting: int | None, local_processes: int = 1) -> int:
    """`train.threads`, or the cores this process may use (its CPU affinity, at most torch's own default) shared
    among the run's processes on this machine."""
    import os

    if setting:
        return setting
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform (macOS)
        allowed = os.cpu_count() or 1
    return max(1, min(allowed, TORCH_DEFAULT_THREADS) // max(1, local_processes))


def check_runtime(cfg: Config) -> None:
    """Settings that depend on this machine: device, precision, installed trackers."""
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda was asked for but no GPU is visible (use auto or cpu)")
    if cfg.train.precision == "fp16" and (cfg.train.device == "cpu" or not torch.cuda.is_available()):
        raise ConfigError("train.precision: fp16 needs a GPU; use bf16 on CPU")
    check_trackers(cfg.train.trackers)


def make_accelerator(cfg: Config, run_dir: Path, precision: str | None = None):
    """`precision`: the resolved train.precision (`sleeptrain.lm.precision.resolve_precision`)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # Accelerate keeps precision/device in a per-process singleton; several runs in one process (library use,
    # comparisons) each get their own. The process-group state (multi-process launches) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    check_runtime(cfg)
    use_cpu = cfg.train.device == "cpu" or not torch.cuda.is_available()
    return Accelerator(cpu=use_cpu, mixed_precision=PRECISION[precision or cfg.train.precision],
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
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2), eps=cfg.train.eps,
                             **adamw_kernel(cfg.train.adamw_impl))


def adamw_kernel(impl: str) -> dict:
    """torch's fused AdamW (one kernel over all parameters; CPU and CUDA since torch 2.4) unless asked otherwise."""
    if impl in ("auto", "fused"):
        return {"fused": True}
    return {"foreach": impl == "foreach"}


def make_plan(cfg: Config, n_samples: int) -> PhasePlan:
    sc = cfg.schedule
    if sc.steps_per_epoch:
        return build_epoch_plan(sc.steps_per_epoch, cfg.train.batch_size, cfg.seed, epochs=sc.epochs,
                                sleep=cfg.sleep.has_sleep, replay_ratio=cfg.replay.ratio if cfg.sleep.replays else 0.0,
                                sleep_wake_ratio=sc.sleep_wake_ratio, replay_repeats=sc.replay_repeats,
                                sleep_after_last=sc.sleep_after_last, max_steps=cfg.train.max_steps)
    if sc.n_cycles > n_samples:
        raise ConfigError(f"schedule.n_cycles: {sc.n_cycles} cycles but the training data has only {n_samples} "
                          f"samples of data.seq_len={cfg.data.seq_len} tokens")
    return build_plan(n_samples, cfg.train.batch_size, cfg.seed, passes=sc.epochs, n_cycles=sc.n_cycles,
                      sleep=cfg.sleep.has_sleep, replay_ratio=cfg.replay.ratio if cfg.sleep.replays else 0.0,
                      sleep_wake_ratio=sc.sleep_wake_ratio, replay_repeats=sc.replay_repeats,
                      sleep_after_last=sc.sleep_after_last, max_steps=cfg.train.max_steps)


def source_table(corpus, stores: dict) -> dict[str, dict[str, dict[str, int]]]:
    """split -> source -> its lines, words (whitespace-delimited) and tokens (document wrappers included): what the
    run reads, for the start record, run.json and the console."""
    table = {}
    for split, sources in corpus.splits.items():
        store = stores.get(split)
        table[split] = {}
        for name, lines in sorted(sources.items()):
            first, end = store.sources.get(name, (0, 0)) if store is not None else (0, 0)
            tokens = int(store.doc_offsets[end] - store.doc_offsets[first]) if store is not None else 0
            table[split][name] = {"lines": len(lines), "words": sum(len(line.split()) for line in lines),
                                  "tokens": tokens}
    return table


def describe_sources(table: dict) -> list[str]:
    """One console line per split: each source with its words and tokens."""
    return [f"{split}: " + "; ".join(f"{name} {v['words']:,} words ({v['tokens']:,} tokens)" for name, v in by.items())
            for split, by in table.items()]


def write_run_start(run_dir: Path, cfg: Config, presets: dict[str, str], overrides: list[str],
                    sources: dict | None = None) -> None:
    atomic_write_text(run_dir / "config.yaml", config_to_yaml(cfg))
    record = {"presets": presets, "overrides": overrides, **environment_record(), "sources": sources or {}}
    atomic_write_text(run_dir / "run.json", json.dumps(record, indent=1))


def write_demo_pairs(cfg: Config, run_dir: Path) -> Path | None:
    """For the generated corpus: the matching agreement minimal pairs, BLiMP format, beside the run."""
    if cfg.data.source != "generated":
        return None
    g = cfg.data.generated
    return write_minimal_pairs(generate_minimal_pairs(g.pairs_per_paradigm, g.seed), run_dir / "minimal_pairs")


def save_final(model, tokenizer, final_dir: Path, seq_len: int) -> None:
    """`save_pretrained` model (safetensors) + tokenizer: a folder the HF Auto classes of transformers 4 and 5 load
    as it is (lm/hf_folder)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer.model_max_length = seq_len
    with atomic_dir(final_dir, replace=True) as tmp:
        save_model_folder(model, tokenizer, tmp)



@dataclass
class RunData:
    corpus: object
    tokenizer: object
    stores: dict
    train_samples: PackedBlocks
    dev_samples: PackedBlocks
    plan: PhasePlan
    test_samples: PackedBlocks | None = None  # the test split, for verdicts only (None: the data has none)


def load_run_data(cfg: Config, state=None) -> RunData:
    """Corpus -> tokenizer -> token stores -> samples -> phase plan for `cfg` (cached after the first time), with
    every data error raised here, before anything is written. Also tells `compare` each arm's natural budget."""
    from accelerate.utils import set_seed

    corpus = load_corpus(cfg.data)
    if cfg.eval.blimp_path:
        from sleeptrain.evaluate.minimal_pairs import load_minimal_pairs

        # a bad path or file fails now, not after training
        load_minimal_pairs(cfg.eval.blimp_path, max_per_paradigm=1, key="eval.blimp_path")
    set_seed(cfg.seed)
    with state.main_process_first() if state is not None else contextlib.nullcontext():
        # process 0 trains the tokenizer and fills the cache; the others read it
        show = cfg.run.progress and (state is None or state.is_main_process)
        tokenizer = get_tokenizer(cfg.tokenizer, corpus, cfg.data, need_mask=cfg.model.is_masked_lm, progress=show)
        stores = get_token_stores(corpus, tokenizer, cfg.data, progress=show)
    if cfg.model.init_from:
        check_init_from(cfg.model, len(tokenizer), cfg.data.seq_len)
    if stores["train"].n_tokens < cfg.data.seq_len:
        raise DataError(f"data: the training split has {stores['train'].n_tokens} tokens, fewer than "
                        f"data.seq_len={cfg.data.seq_len}")
    if cfg.schedule.steps_per_epoch:  # FORGETTER epochs: fresh windows per epoch
        train_samples = EpochWindows(stores["train"], cfg.data.seq_len, tokenizer.pad_token_id,
                                     cfg.schedule.steps_per_epoch * cfg.train.batch_size, cfg.schedule.epochs,
                                     cfg.seed)
    else:
        train_samples = make_samples(stores["train"], cfg.data.seq_len, tokenizer.pad_token_id, cfg.data.packing,
                                     cfg.data.windows, cfg.seed)
    dev_samples = PackedBlocks(stores["dev"], cfg.data.seq_len, tokenizer.pad_token_id)
    test_samples = PackedBlocks(stores["test"], cfg.data.seq_len, tokenizer.pad_token_id) if "test" in stores else None
    return RunData(corpus, tokenizer, stores, train_samples, dev_samples, make_plan(cfg, len(train_samples)),
                   test_samples if test_samples is not None and len(test_samples) else None)


def check_processes(cfg: Config, n_processes: int) -> None:
    """Multi-process runs split every global batch into equal shares of whole micro-batches."""
    if n_processes == 1:
        return
    batch = cfg.train.batch_size
    if batch % n_processes:
        raise ConfigError(f"train.batch_size: {batch} must be a multiple of the {n_processes} processes "
                          "(it is the global batch)")
    micro = cfg.train.micro_batch_size
    if micro and (batch // n_processes) % micro:
        raise ConfigError(f"train.micro_batch_size: {micro} must divide the per-process batch "
                          f"{batch // n_processes} (train.batch_size={batch} over {n_processes} processes)")



def final_evaluation(cfg: Config, model, tokenizer, final_dir: Path, blimp_path: Path | None, corpus) -> dict:
    """Every registered evaluation task on the final model — BLiMP-style accuracy (when minimal pairs are known) and
    dev perplexity from the run's data in memory, a task registered from outside as it finds its data — written to
    `final/eval/results.json` exactly as `sleeptrain eval final/` would."""
    from sleeptrain.evaluate.config import run_eval_options
    from sleeptrain.evaluate.harness import LoadedModel, evaluate_in_run
    from sleeptrain.evaluate.minimal_pairs import load_minimal_pairs

    opts = run_eval_options(cfg, max_pairs=cfg.eval.final_max_pairs)
    was_training = model.training
    model.eval()
    data = {"perplexity": (corpus.splits["dev"], f"dev split of {corpus.description}")}  # the run's data, in memory
    if blimp_path:
        data["blimp"] = (load_minimal_pairs(blimp_path, cfg.eval.final_max_pairs), str(blimp_path))
    results = evaluate_in_run(LoadedModel(model, tokenizer, cfg.model.is_masked_lm, final_dir), opts, data,
                              seq_len=cfg.data.seq_len)
    model.train(was_training)
    atomic_write_text(final_dir / "eval" / "results.json", json.dumps(results, indent=1))
    return results

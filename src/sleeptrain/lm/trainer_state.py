"""What a checkpoint holds beside the model and the optimizer: the run's progress (`LoopState`), RNG states, the
masked-LM batcher's generator, and every sleep mechanism's state (`SleepCycle.state_dict`).

`save` and `load` are the checkpoint codec. They take the explicit parts they write and restore
(`CheckpointParts`) and the `LoopState`, never the training loop: the loop decides when (`TrainingLoop.checkpoint`,
the collective steps around it), this module decides what.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sleeptrain.config import Config
from sleeptrain.errors import ConfigError
from sleeptrain.lm.checkpoint import capture_rng_states, load_weights_into, restore_rng_states
from sleeptrain.lm.checkpoint import load_checkpoint as read_checkpoint
from sleeptrain.lm.checkpoint import save_checkpoint as write_checkpoint
from sleeptrain.lm.metrics_log import code_version
from sleeptrain.lm.progress import Cursor, LoopState
from sleeptrain.presets import config_to_yaml


@dataclass
class CheckpointParts:
    """The objects a checkpoint writes or restores, and what must match for a resume to be exact."""

    cfg: Config
    run_dir: Path
    model: Any            # the unwrapped model
    optimizer: Any
    tokenizer: Any
    sleep_cycle: Any      # sleeptrain.sleep.cycle.SleepCycle
    batcher: Any          # its generator is saved for masked LMs (the masking draws)
    n_samples: int        # training samples and planned steps: a resume on other data is refused
    total_steps: int
    processes: int


def save(parts: CheckpointParts, state: LoopState, cursor: Cursor, metrics_bytes: int) -> Path:
    """Write checkpoint `state.step` (cursor = stage index, steps done in it, sleep started; `metrics_bytes`: how
    much of metrics.jsonl the checkpoint covers); returns its folder."""
    sleep_values, sleep_tensors = parts.sleep_cycle.state_dict(sleeping=cursor[2])
    tensors = {"sleep": sleep_tensors, "rng": capture_rng_states()}
    if parts.cfg.model.is_masked_lm:
        tensors["batcher_rng"] = parts.batcher.generator.get_state()
    record = {"n_samples": parts.n_samples, "total_steps": parts.total_steps, "sleep": sleep_values,
              "metrics_bytes": metrics_bytes, "seed": parts.cfg.seed, "processes": parts.processes,
              "code_version": code_version(), **state.to_record(cursor)}
    return write_checkpoint(parts.run_dir, state.step, parts.model, parts.optimizer, parts.tokenizer,
                            config_to_yaml(parts.cfg), record, tensors, parts.cfg.checkpoint.keep)


def load(path: Path, parts: CheckpointParts, state: LoopState) -> dict:
    """Restore what `save` wrote into `parts` and `state`; returns the checkpoint's record."""
    weights, optimizer_state, tensors, record = read_checkpoint(path)
    if record["n_samples"] != parts.n_samples or record["total_steps"] != parts.total_steps:
        raise ConfigError(f"resume: the data no longer matches the run ({record['n_samples']} samples / "
                          f"{record['total_steps']} steps then, {parts.n_samples} / {parts.total_steps} now): the "
                          f"corpus, tokenizer, batch size, sequence length or schedule differs from the checkpoint's; "
                          f"resume with them as they were, or start a new run")
    if "sleep" not in record:
        raise ConfigError(f"resume: {path} was written by an earlier sleeptrain (code {record.get('code_version')}) "
                          "whose checkpoints keep sleep state in another layout; resume it with that version")
    load_weights_into(parts.model, weights)
    parts.optimizer.load_state_dict(optimizer_state)
    parts.sleep_cycle.load_state_dict(record["sleep"], tensors["sleep"], parts.model)
    if parts.cfg.model.is_masked_lm:
        parts.batcher.generator.set_state(tensors["batcher_rng"])
    restore_rng_states(tensors["rng"])
    state.restore(record)
    state.last_checkpoint = Path(path)
    return record

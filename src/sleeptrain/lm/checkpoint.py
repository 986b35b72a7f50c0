"""Checkpoints: everything a run needs to continue exactly, written atomically, loaded without executing code.

A checkpoint folder `RUN_DIR/checkpoints/step-NNNNNNNN/` holds
- the model (`save_pretrained`: config.json + model.safetensors) and tokenizer — a loadable HF folder on its own;
- `optimizer.pt`: the optimizer state dict (tensors and numbers only);
- `trainer_state.pt`: tensors and plain values the loop needs (replay scores, importance, RNG states, controller);
- `trainer_state.json`: counters and the cursor (stage, offset) in readable form, written last;
- `config.yaml`: the run's config.

It is built in a temporary sibling folder and renamed into place, so a crash (even SIGKILL) never leaves a
half-written checkpoint visible; older ones are removed only after the new one is complete. Loading uses
safetensors and `torch.load(weights_only=True)` only: no pickled code is executed and no `trust_remote_code`.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from sleeptrain.errors import SleeptrainError
from sleeptrain.fsutil import atomic_dir
from sleeptrain.lm.hf_folder import save_model_folder

STATE_JSON = "trainer_state.json"


class CheckpointWriteError(SleeptrainError):
    """The run directory could not take a checkpoint (disk full, permissions)."""


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a folder counts once its trainer_state.json exists)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*")
                  if p.name[5:].isdigit() and p.is_dir() and (p / STATE_JSON).is_file())  # not step-N.bad


def latest_checkpoint(run_dir: Path) -> Path | None:
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def is_write_failure(exc: BaseException) -> bool:
    """An OSError, or what safetensors / torch.save raise when the disk refuses a write (their own exception types
    carry the OS error only in the text)."""
    if isinstance(exc, OSError):
        return True
    text = str(exc).lower()
    return (isinstance(exc, RuntimeError) or type(exc).__name__ == "SafetensorError") and (
        "os error" in text or "i/o error" in text or "write" in text)


def write_failure_reason(exc: BaseException) -> str:
    text = str(exc)
    if "No space left on device" in text:
        return "No space left on device"
    return (text.splitlines() or [type(exc).__name__])[0][:200]


def save_checkpoint(run_dir: Path, step: int, model, optimizer, tokenizer, config_yaml: str,
                    state: dict[str, Any], tensors: dict[str, Any], keep: int) -> Path:
    """Write checkpoint `step` atomically and rotate to `keep`. Raises CheckpointWriteError on OSError, leaving
    every earlier checkpoint as it was."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    final = Path(run_dir) / "checkpoints" / f"step-{step:08d}"
    try:
        with atomic_dir(final, replace=True) as tmp:
            save_model_folder(model, tokenizer, tmp)
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(tensors, tmp / "trainer_state.pt")
            (tmp / "config.yaml").write_text(config_yaml)
            (tmp / STATE_JSON).write_text(json.dumps({"step": step, **state}, indent=1))
    except Exception as exc:
        if not is_write_failure(exc):
            raise
        previous = latest_checkpoint(run_dir)
        kept = (f"; the previous checkpoint {previous} is intact: free some space, then continue with: sleeptrain "
                f"train resume={run_dir}" if previous else "; no earlier checkpoint: free some space and start again")
        reason = getattr(exc, "strerror", None) or write_failure_reason(exc)
        raise CheckpointWriteError(f"checkpoint: cannot write {final} ({reason}){kept}") from None
    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict, dict[str, Any], dict[str, Any]]:
    """(model weights, optimizer state, trainer tensors, trainer counters) — safetensors and weights_only only."""
    from safetensors.torch import load_file

    from safetensors import SafetensorError

    path = Path(path)
    weights: dict[str, torch.Tensor] = {}
    shards = sorted(path.glob("*.safetensors"))
    if not shards:
        raise SleeptrainError(f"resume: {path} holds no model.safetensors")
    current = path
    try:
        for shard in shards:
            current = shard
            weights.update(load_file(str(shard)))
        current = path / "optimizer.pt"
        optimizer = torch.load(current, map_location="cpu", weights_only=True)
        current = path / "trainer_state.pt"
        tensors = torch.load(current, map_location="cpu", weights_only=True)
        current = path / STATE_JSON
        state = json.loads(current.read_text())
    except (OSError, SafetensorError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        reason = (str(exc).splitlines() or [""])[0][:200] or type(exc).__name__
        if current.is_file() and current.stat().st_size == 0:
            reason = "the file is empty"
        before = [d for d in checkpoint_dirs(path.parent.parent) if d.name < path.name]
        fix = (f"move it aside (mv {path} {path}.bad) and resume again to continue from {before[-1].name}"
               if before else "it is the run's only checkpoint: start the run again in a new run.dir")
        raise SleeptrainError(f"resume: cannot read {current} ({reason}); {fix}") from None
    return weights, optimizer, tensors, state


def load_weights_into(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy saved weights into `model`; only tied duplicates (which save_pretrained leaves out) may be missing."""
    result = model.load_state_dict(weights, strict=False)
    tied = {name for name, p in model.named_parameters(remove_duplicate=False)} - \
        {name for name, p in model.named_parameters()}
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise SleeptrainError(f"resume: the checkpoint does not fit the model (missing {missing[:3]}, "
                              f"unexpected {result.unexpected_keys[:3]})")


def capture_rng_states() -> dict[str, Any]:
    """Python, NumPy (global) and torch (CPU and every CUDA device) generator states, as checkpoint values."""
    import random

    import numpy as np

    np_state = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    import random

    import numpy as np

    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])

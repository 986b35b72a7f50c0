"""Periodic checkpoints: model (safetensors via save_pretrained), optimizer state and counters.

Each checkpoint is written to a temporary folder and renamed into place, so a crash never leaves a half-written
checkpoint visible; `keep` bounds how many stay on disk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from sleeptrain.fsutil import atomic_dir


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    root = run_dir / "checkpoints"
    return sorted(p for p in root.glob("step-*") if p.is_dir()) if root.is_dir() else []


def save_checkpoint(run_dir: Path, step: int, model, optimizer, tokenizer, state: dict[str, Any],
                    keep: int) -> Path:
    final = run_dir / "checkpoints" / f"step-{step:08d}"
    with atomic_dir(final, replace=True) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **state}, indent=1))
    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final

"""`metrics.jsonl` (one JSON object per line, flushed as written) and the run record written at start."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class MetricsLog:
    """Append-only JSONL. Training records carry `event: "train"`; validation records `event: "eval"`.
    Only the main process writes (`enabled=False` elsewhere)."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = path
        self._fh = open(path, "a", buffering=1) if enabled else None

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._fh.write(json.dumps(clean) + "\n")

    def tell(self) -> int:
        """Bytes written so far (checkpoints record it, so a resume can drop what came after)."""
        if self._fh is None:
            return 0
        self._fh.flush()
        return self._fh.tell()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def rewind_metrics(path: Path, size: int) -> int:
    """Cut `path` back to `size` bytes (the checkpoint a run resumes from); the records after it, written by the
    interrupted run past that point, move to `metrics.superseded.jsonl` beside it. Returns how many moved."""
    path = Path(path)
    if not path.exists() or path.stat().st_size <= size:
        return 0
    with open(path, "rb") as fh:
        fh.seek(size)
        tail = fh.read()
    with open(path.with_name("metrics.superseded.jsonl"), "ab") as out:
        out.write(tail if tail.endswith(b"\n") else tail + b"\n")
        out.flush()
        os.fsync(out.fileno())
    with open(path, "r+b") as fh:
        fh.truncate(size)
    return tail.count(b"\n") + (0 if tail.endswith(b"\n") else 1)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def code_version() -> str | None:
    """The git commit of the sleeptrain source tree (with '-dirty' if modified), or None outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=here, capture_output=True,
                               text=True, timeout=5)
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment_record() -> dict[str, Any]:
    import accelerate
    import tokenizers
    import torch
    import transformers

    import sleeptrain

    return {
        "sleeptrain": sleeptrain.__version__,
        "code_version": code_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "tokenizers": tokenizers.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

"""`metrics.jsonl` (one JSON object per line, flushed as written) and the run record written at start."""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class MetricsLog:
    """Append-only JSONL. Training records carry `event: "train"`; validation records `event: "eval"`."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = open(path, "a", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._fh.write(json.dumps(clean) + "\n")

    def close(self) -> None:
        self._fh.close()


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

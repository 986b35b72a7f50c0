"""Crash-safe file writes: a folder or file becomes visible only once complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_dir(final: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success rename it to `final` (a half-written folder is never visible).

    If `final` already exists it is kept (another process finished first) unless `replace` is set.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            if not replace:
                shutil.rmtree(tmp)
                return
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def timestamp() -> str:
    """Local date-time as used in default folder names: YYYYMMDD-HHMMSS."""
    return time.strftime("%Y%m%d-%H%M%S")


def timestamped_dir(parent: str | Path, label: str = "") -> Path:
    """The default folder of a run or an experiment: `parent/<date-time>[-label]`."""
    return Path(parent) / (f"{timestamp()}-{label}" if label else timestamp())

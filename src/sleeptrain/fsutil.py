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


class RunLock:
    """One writer per run folder: an exclusive `flock` on RUN_DIR/.lock, held until `release()` (or the process
    ends — the kernel drops the lock of a killed process, so a stale lock file never blocks a resume). The file
    holds the holder's PID for the message a second writer gets."""

    NAME = ".lock"

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / self.NAME
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        import fcntl

        from sleeptrain.errors import ConfigError

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(f"run.dir: {str(self.path.parent)!r} is in use by another sleeptrain process "
                              f"(PID {holder}); wait for it to finish or stop it, then resume") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __del__(self) -> None:  # a run that failed between acquiring and its try/finally still lets go
        self.release()

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

"""`LoopState`: the one owner of a run's progress — every counter a checkpoint restores (as torchtune's
`TrainingProgress` or litgpt's `state`). The loop advances it, `trainer_state` writes and reads it, `train()` reports
it; nothing else keeps a copy.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

Cursor = tuple[int, int, bool]  # (stage index, steps done in it, sleep started)


@dataclass
class LoopState:
    step: int = 0                      # optimizer steps done
    tokens: int = 0                    # real (attended) tokens trained on, replay included
    words: int = 0                     # words trained on (BabyLM's unit: `sleeptrain.lm.words`)
    first_val: float = math.nan        # the first and the latest validation loss
    last_val: float = math.nan
    # wall clock across resumes: this session's since `started_at`, plus the earlier sessions' up to the checkpoint
    # resumed from (None: a checkpoint written before it was kept, so the earlier sessions' time is unknown)
    seconds_before: Optional[float] = 0.0
    started_at: float = field(default_factory=time.time)
    cursor: Optional[Cursor] = None    # where a resumed run continues (None: from the start)
    precision: str = "fp32"            # what the run chose when it started; a resume keeps it
    attention: str = "sdpa"
    compiled: bool = False             # False again if compiling failed under train.compile=auto
    stopped_early: bool = False        # a sleep hook (the controller) ended the run
    pre_end_ops: Optional[dict] = None  # the model before the last sleep's end ops: step, dev/test loss, its folder
    final_test: Optional[float] = None  # test-split loss of the final model (None: no test split)
    last_checkpoint: Optional[Path] = None

    def record_val(self, loss: float) -> float:
        self.last_val = loss
        if math.isnan(self.first_val):
            self.first_val = loss
        return loss

    def elapsed(self) -> float:
        """Wall seconds of the run so far, all sessions together (this session's only where the earlier sessions'
        time is unknown)."""
        return (self.seconds_before or 0.0) + time.time() - self.started_at

    # --- the checkpoint's counters (trainer_state.json; the key names are the checkpoint format) ---
    def to_record(self, cursor: Cursor) -> dict[str, Any]:
        return {"tokens": self.tokens, "cursor": list(cursor), "first_val": self.first_val,
                "last_val": self.last_val, "precision": self.precision, "attention": self.attention,
                "compiled": self.compiled, "words": self.words, "pre_end_ops": self.pre_end_ops,
                "seconds": self.elapsed() if self.seconds_before is not None else None}

    def restore(self, record: dict[str, Any]) -> None:
        """Take the counters of a checkpoint's record (`step` is written by the checkpoint itself)."""
        self.step, self.tokens = record["step"], record["tokens"]
        self.words = record.get("words", 0)
        self.pre_end_ops = record.get("pre_end_ops")  # absent in checkpoints before 2026-12-02
        self.seconds_before = record.get("seconds")  # None: unknown (absent in checkpoints before 2026-11-29)
        self.first_val, self.last_val = record["first_val"], record["last_val"]
        stage_index, offset, started = record["cursor"]
        self.cursor = (stage_index, offset, bool(started))

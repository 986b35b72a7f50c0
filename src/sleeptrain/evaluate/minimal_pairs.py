"""Minimal-pair files: every `*.jsonl` / `*.jsonl.gz` under a folder, BLiMP's format and the variants in the wild.

A pair is any record with `sentence_good` and `sentence_bad`. The paradigm is `UID` when present, else the file
name; the phenomenon is `linguistics_term` (else the paradigm); the field is `field` (else "unknown"). `pairID` and
`pair_id` are both accepted, extra fields are kept, blank lines skipped; a malformed line is an error naming the
file and line.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from sleeptrain.errors import DataError


@dataclass(frozen=True)
class MinimalPair:
    good: str
    bad: str
    paradigm: str
    phenomenon: str
    field: str
    pair_id: str


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".jsonl.gz", ".jsonl"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_pair_file(path: Path) -> list[MinimalPair]:
    opener = gzip.open if path.name.endswith(".gz") else open
    pairs = []
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}: line {line_no} is not valid JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}: line {line_no} is not a JSON object")
                good, bad = record.get("sentence_good"), record.get("sentence_bad")
                if not isinstance(good, str) or not isinstance(bad, str):
                    raise DataError(f"{path}: line {line_no} has no string sentence_good and sentence_bad")
                paradigm = str(record.get("UID") or _stem(path))
                pairs.append(MinimalPair(
                    good=good.strip(), bad=bad.strip(), paradigm=paradigm,
                    phenomenon=str(record.get("linguistics_term") or paradigm),
                    field=str(record.get("field") or "unknown"),
                    pair_id=str(record.get("pairID", record.get("pair_id", line_no))),
                ))
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    return pairs


def load_minimal_pairs(folder: str | Path, max_per_paradigm: int | None = None,
                       key: str = "blimp.path") -> list[MinimalPair]:
    """All pairs under `folder`; `key` is the config key named in errors."""
    root = Path(folder)
    if not root.exists():
        raise DataError(f"{key}: {str(root)!r} does not exist")
    files = [root] if root.is_file() else sorted(
        p for p in root.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))
    pairs: list[MinimalPair] = []
    for file in files:
        pairs.extend(read_pair_file(file))
    if not pairs:
        raise DataError(f"{key}: no minimal pairs (*.jsonl / *.jsonl.gz records with sentence_good and "
                        f"sentence_bad) under {str(root)!r}")
    if max_per_paradigm:
        kept, counts = [], {}
        for p in pairs:
            if counts.get(p.paradigm, 0) < max_per_paradigm:
                counts[p.paradigm] = counts.get(p.paradigm, 0) + 1
                kept.append(p)
        pairs = kept
    return pairs

"""The BabyLM evaluation pipeline's zero-shot data, read as `babylm/evaluation-pipeline-2025` reads it.

Layout (the pipeline's `evaluation_data/`, from OSF): `full_eval/` and `fast_eval/`, one folder per dataset —

    suite  pipeline task      full_eval/ folder          fast_eval/ folder
    both   blimp              blimp_filtered             blimp_fast
    both   blimp              supplement_filtered        supplement_fast
    both   ewok               ewok_filtered              ewok_fast
    both   entity_tracking    entity_tracking            entity_tracking_fast
    both   wug_adj            wug_adj_nominalization     wug_adj_nominalization
    both   wug_past           wug_past_tense             wug_past_tense
    full   comps              comps                      —

(eval_zero_shot.sh / eval_zero_shot_fast.sh). Each folder holds `*.jsonl` files; every line becomes one item as the
pipeline's `sentence_zero_shot/read_files.py` decodes it: candidate `sentences`, the `completions` whose tokens are
scored (the whole sentence for BLiMP, the target after its context for EWoK, the option after the prefix for entity
tracking, the property phrase for COMPS), the correct candidate (`label`, always 0), the metadata accuracies are
grouped by (`UID` first) and, for WUG, the human `ratio`. The pipeline reads plain `.jsonl` only; a `*.jsonl.gz`
with no plain twin is read here too (the caller is told). Files are read in name order (the pipeline takes the
folder's order; the items' ids are numbered per UID, which one file holds, so the order does not change them).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sleeptrain.errors import DataError

SUITES = {
    "full": [("blimp", "blimp_filtered"), ("blimp", "supplement_filtered"), ("ewok", "ewok_filtered"),
             ("entity_tracking", "entity_tracking"), ("wug_adj", "wug_adj_nominalization"),
             ("wug_past", "wug_past_tense"), ("comps", "comps")],
    "fast": [("blimp", "blimp_fast"), ("blimp", "supplement_fast"), ("ewok", "ewok_fast"),
             ("entity_tracking", "entity_tracking_fast"), ("wug_adj", "wug_adj_nominalization"),
             ("wug_past", "wug_past_tense")],
}
SUITE_FOLDERS = {"full": "full_eval", "fast": "fast_eval"}


@dataclass
class Item:
    sentences: list[str]
    completions: list[str]
    label: int
    uid: str
    metadata: dict[str, Any]            # what accuracies are grouped by (UID, field, ...), as the pipeline's
    ratio: float | None = None          # WUG: the human ratio


@dataclass
class Dataset:
    task: str                           # the pipeline's task name (blimp, ewok, ...)
    folder: Path
    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:              # the data folder's name: the last level of the pipeline's output path
        return self.folder.name


def suite_root(data: Path, suite: str) -> Path:
    """The folder holding the suite's dataset folders: DATA/full_eval (fast_eval), or DATA itself."""
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"data: {str(data)!r} is not a folder (give the pipeline's evaluation_data/ folder, or its "
                        f"{SUITE_FOLDERS[suite]}/; the data is on OSF, see the pipeline's README)")
    nested = data / SUITE_FOLDERS[suite]
    return nested if nested.is_dir() else data


def read_dataset(task: str, folder: Path) -> Dataset:
    """Every item of one dataset folder."""
    found = Dataset(task, Path(folder))
    plain = sorted(p for p in found.folder.iterdir() if p.name.endswith(".jsonl"))
    packed = sorted(p for p in found.folder.iterdir() if p.name.endswith(".jsonl.gz")
                    and p.with_suffix("") not in plain)
    if packed:
        found.notes.append(f"{found.folder}: read {len(packed)} .jsonl.gz file(s) the official pipeline skips (it "
                           "reads plain .jsonl only): unpack them to score exactly what it scores")
    for path in sorted(plain + packed, key=lambda p: p.name):
        opener = gzip.open if path.name.endswith(".gz") else open
        stem = path.name.split(".jsonl")[0]
        with opener(path, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    found.items.append(decode(task, json.loads(line), stem))
                except (ValueError, KeyError, TypeError) as exc:
                    raise DataError(f"{path}:{number}: not a {task} item ({type(exc).__name__}: {exc})") from None
    return found


def decode(task: str, raw: dict, stem: str) -> Item:
    """One line of a dataset file, as the pipeline's read_files.decode_<task> builds it."""
    if task == "blimp":
        if "field" in raw:
            fld = "syntax/semantics" if raw["field"] == "syntax_semantics" else raw["field"]
            meta = {"field": fld, "UID": raw["UID"], "linguistics_term": raw["linguistics_term"]}
        else:  # the supplement: no field or UID, the file name is the UID
            meta = {"field": "supplement", "UID": stem, "linguistics_term": "supplement"}
        pair = [raw["sentence_good"], raw["sentence_bad"]]
        return Item(pair, list(pair), 0, meta["UID"], meta)
    if task == "ewok":
        sentences = [" ".join([raw["Context1"], raw["Target1"]]), " ".join([raw["Context1"], raw["Target2"]])]
        meta = {"UID": raw["Domain"], "context_type": raw["ContextType"], "context_contrast": raw["ContextDiff"],
                "target_contrast": raw["TargetDiff"]}
        return Item(sentences, [" " + raw["Target1"], " " + raw["Target2"]], 0, raw["Domain"], meta)
    if task in ("wug_adj", "wug_past"):
        sentences = raw["sentences"].split("\t")
        return Item(sentences, list(sentences), 0, task, {"UID": task}, ratio=float(raw["ratio"]))
    if task == "entity_tracking":
        uid = f"{stem}_{raw['numops']}_ops"
        return Item([raw["input_prefix"] + o for o in raw["options"]], list(raw["options"]), 0, uid, {"UID": uid})
    if task == "comps":
        subset = {"comps_base": "base", "comps_wugs": "wugs", "comps_wugs_dist-before": "wugs_dist_before"}.get(
            stem, "wugs_dist_in_between")
        sentences = [" ".join([raw["prefix_acceptable"], raw["property_phrase"]]),
                     " ".join([raw["prefix_unacceptable"], raw["property_phrase"]])]
        return Item(sentences, [raw["property_phrase"]] * 2, 0, subset, {"UID": subset})
    raise DataError(f"task {task!r}: not a zero-shot task of the pipeline ({', '.join(sorted(TASK_NAMES))})")


TASK_NAMES = {task for suite in SUITES.values() for task, _ in suite}

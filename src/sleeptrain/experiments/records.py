"""The figures of one finished run as the experiment tools read them (`run_record`), and which of them may select
and which may judge: `METRICS` are the dev-side figures (sweep objectives, tuning), `TEST_METRICS` the verdict
metrics where runs have a test-split loss."""

from __future__ import annotations

import json
from pathlib import Path

from sleeptrain.lm.metrics_log import read_metrics

# metric -> (label, higher is better). METRICS: the dev-side figures, which selection (sweep objectives, tuning)
# may read; TEST_METRICS: the verdict metrics when every run has a test-split loss
METRICS = {"final_val_loss": ("final val loss", False), "best_val_loss": ("best val loss", False),
           "blimp_overall": ("BLiMP overall", True)}
TEST_METRICS = {"test_loss": ("test loss", False), "blimp_overall": ("BLiMP overall", True)}
DEV_VERDICT_METRICS = {"final_val_loss": METRICS["final_val_loss"], "blimp_overall": METRICS["blimp_overall"]}
VERDICT_MODELS = ("final", "pre_end_ops")
GENERATED_PAIRS_LABEL = "agreement pairs (generated)"  # blimp_overall of runs scored on the generated corpus's pairs


def pairs_label(records: list[dict]) -> str:
    """What `blimp_overall` measured: BLiMP, or the generated corpus's own agreement pairs (the demo)."""
    generated = {bool(r.get("generated_pairs")) for r in records}
    if generated == {True}:
        return GENERATED_PAIRS_LABEL
    return "BLiMP overall" if generated != {True, False} else "minimal pairs (BLiMP and generated: mixed)"


def run_record(run_dir: Path) -> dict | None:
    """The figures of one finished run, or None while it is unfinished."""
    import yaml

    summary_file = run_dir / "summary.json"
    if not summary_file.is_file():
        return None
    summary = json.loads(summary_file.read_text())
    records = read_metrics(run_dir / "metrics.jsonl")
    evals = [r["val_loss"] for r in records if r.get("event") == "eval" and r.get("val_loss") is not None]
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    positions = summary["steps"] * cfg["train"]["batch_size"] * cfg["data"]["seq_len"]
    # a run resumed from a checkpoint that did not keep the elapsed time recorded its last session only
    whole_time = summary.get("seconds_complete", not summary.get("resumed_from"))
    pre = summary.get("pre_end_ops")
    out = {"final_val_loss": summary["final_val_loss"], "best_val_loss": min(evals) if evals else None,
           "test_loss": summary.get("final_test_loss"), "blimp_overall": summary.get("blimp_overall"),
           "pre_end_ops": {"val_loss": pre.get("val_loss"), "test_loss": pre.get("test_loss"),
                           "blimp_overall": pre.get("blimp_overall"), "step": pre.get("step")} if pre else None,
           "positions": positions, "tokens": summary["tokens"],
           "seconds": summary["seconds"] if whole_time else None, "steps": summary["steps"], "by_phenomenon": {},
           "generated_pairs": bool(summary.get("minimal_pairs"))}  # scored on the generated corpus's own pairs
    results = run_dir / "final" / "eval" / "results.json"
    if results.is_file():
        blimp = json.loads(results.read_text()).get("blimp") or {}
        out["by_phenomenon"] = {k: v["accuracy"] for k, v in blimp.get("by_phenomenon", {}).items()}
    return out

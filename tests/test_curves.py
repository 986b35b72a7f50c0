"""Learning curves in `sleeptrain compare` (experiments/curves.py): every run's word-count checkpoints are scored
after its run on test loss and a fixed subset of minimal pairs, stored beside each folder and reused; the report
draws them by words and by token positions and tables every milestone with the arm ahead."""

from __future__ import annotations

import json

from conftest import run_cli
from sleeptrain.experiments.curves import leader, milestone_words
from test_compare import COMMON

ARMS = ["single_pass", "nap=schedule=sleep,schedule.n_cycles=3,sleep.ops=[replay,downscale]"]


def test_milestone_names_and_leaders():
    assert [milestone_words(n) for n in ("chck_1M", "chck_300K", "chck_1234", "final")] == [1_000_000, 300_000,
                                                                                           1234, None]
    assert leader({"a": 0.5, "b": 0.6}, max) == "b" and leader({"a": 0.5, "b": 0.5}, max) == "tie"
    assert leader({}, min) == "—"


def test_compare_scores_and_draws_the_learning_curves(tmp_path):
    exp_dir = tmp_path / "exp"
    words = [*ARMS, *COMMON, "checkpoint.words=[5000,10000]", "seeds=2", "budget.natural=single_pass",
             f"dir={exp_dir}"]
    done = run_cli("compare", *words, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Loading weights" not in done.stderr
    run = exp_dir / "runs" / "nap" / "seed1"
    scored = json.loads((run / "chck_5K" / "eval" / "milestone.json").read_text())
    assert scored["test_loss"] > 0 and 0 <= scored["blimp"] <= 1 and scored["max_pairs_per_paradigm"] == 200
    assert (run / "pre_end_ops" / "eval" / "milestone.json").is_file()
    summary = json.loads((exp_dir / "summary.json").read_text())
    nap = summary["curves"]["nap"]
    assert [p["point"] for p in nap][:2] == ["chck_5K", "chck_10K"] and nap[-1]["point"] == "final"
    assert nap[0]["words"] == 5000 and nap[0]["test_loss"]["n"] == 2 and nap[0]["positions"] > 0
    assert nap[0]["test_loss"]["mean"] > nap[-1]["test_loss"]["mean"]   # it learns
    report = (exp_dir / "report.md").read_text()
    assert "## Learning curves (by words seen)" in report and "| chck_5K | 5,000 |" in report
    assert "![curves](curves.png)" in report and (exp_dir / "curves.png").stat().st_size > 10_000
    mtime = (run / "chck_5K" / "eval" / "milestone.json").stat().st_mtime
    again = run_cli("compare", *words, timeout=600)
    assert again.returncode == 0 and "learning-curve point" not in again.stdout
    assert (run / "chck_5K" / "eval" / "milestone.json").stat().st_mtime == mtime

"""Learning curves in `sleeptrain compare` (experiments/curves.py): every run's word-count checkpoints are scored
after its run on test loss and a fixed subset of minimal pairs, stored beside each folder and reused; the report
draws them by words and by token positions and tables every milestone with the arm ahead."""

from __future__ import annotations

import json

from sleeptrain.experiments.curves import leader, milestone_words


def test_milestone_names_and_leaders():
    assert [milestone_words(n) for n in ("chck_1M", "chck_300K", "chck_1234", "final")] == [1_000_000, 300_000,
                                                                                           1234, None]
    assert leader({"a": 0.5, "b": 0.6}, max) == "b" and leader({"a": 0.5, "b": 0.5}, max) == "tie"
    assert leader({}, min) == "—"


def test_compare_scores_and_draws_the_learning_curves(compare_experiment):
    """The shared experiment (conftest) writes milestones at 5K and 10K words: each seed run's points are scored
    (tuning trials' are not), tabled and drawn; the third run scores nothing again."""
    exp_dir = compare_experiment.dir
    assert "Loading weights" not in compare_experiment.resumed.stderr
    run = exp_dir / "runs" / "nap" / "seed1"
    scored = json.loads((run / "chck_5K" / "eval" / "milestone.json").read_text())
    assert scored["test_loss"] > 0 and 0 <= scored["blimp"] <= 1 and scored["max_pairs_per_paradigm"] == 200
    assert (run / "pre_end_ops" / "eval" / "milestone.json").is_file()
    assert not list((exp_dir / "tuning").glob("*/*/seed0/chck_*/eval/milestone.json"))
    summary = json.loads((exp_dir / "summary.json").read_text())
    nap = summary["curves"]["nap"]
    assert [p["point"] for p in nap][:2] == ["chck_5K", "chck_10K"] and nap[-1]["point"] == "final"
    assert nap[0]["words"] == 5000 and nap[0]["test_loss"]["n"] == 2 and nap[0]["positions"] > 0
    assert nap[0]["test_loss"]["mean"] > nap[-1]["test_loss"]["mean"]   # it learns
    gaps = summary["curve_gaps"]["nap"]  # against the baseline (the first arm), paired by seed at each shared point
    assert gaps["points"][0]["point"] == "chck_5K" and gaps["points"][0]["seeds"] == [0, 1]
    assert gaps["points"][0]["test_loss"]["n"] == 2 and gaps["leads"]["test_loss"].split(" at ")[0] in (
        "ahead", "behind", "level")
    report = (exp_dir / "report.md").read_text()
    assert "## Learning curves (by words seen)" in report and "| chck_5K | 5,000 |" in report
    assert "### Against single_pass, point by point" in report and "- `nap` — test loss: " in report
    assert "![curves](curves.png)" in report and (exp_dir / "curves.png").stat().st_size > 10_000
    again = compare_experiment.again
    assert again.returncode == 0 and "learning-curve point" not in again.stdout
    assert compare_experiment.milestone.stat().st_mtime == compare_experiment.milestone_mtime

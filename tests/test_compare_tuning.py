"""Symmetric tuning in `sleeptrain compare` (experiments/tuning.py): both arms run the same grid on the tuning seed,
each picks its own value on dev, the seeds run at each arm's choice, verdicts come from the test split with Holm
and the MDE; killed after its first tuning run and re-run, nothing finished is redone."""

from __future__ import annotations

import json

import pytest

from conftest import COMPARE_TUNE as TUNE, run_cli
from sleeptrain.errors import ConfigError
from sleeptrain.experiments.compare import parse_args
from test_compare import ARMS, COMMON


def test_tuning_words_and_blocks_are_parsed_and_checked(tmp_path):
    exp = parse_args([*ARMS, *COMMON, *TUNE, "tune.objective=best_val_loss"])
    assert exp.tune.keys == {"train.lr": [0.0005, 0.01]} and exp.tune.seeds == [0]
    assert exp.tune.objective == "best_val_loss"
    arms = tmp_path / "arms.yaml"
    arms.write_text("tune:\n  keys: {train.lr: [1e-3, 0.002, 4.0e-3]}\n  skip: [single_pass]\n"
                    "arms:\n  single_pass: [schedule=single_pass]\n"
                    "  sleep: {overrides: [schedule=sleep], tune: {replay.ratio: [0.1, 0.3]}}\n")
    exp = parse_args([str(arms)])
    assert exp.tune.keys == {"train.lr": [0.001, 0.002, 0.004]}   # PyYAML's string '1e-3' read as the number
    assert parse_args([*ARMS, *COMMON, "tune.train.lr=[3e-3,6e-3]"]).tune.keys == {"train.lr": [0.003, 0.006]}
    assert exp.tune.skip == ["single_pass"] and exp.tune.arm_keys == {"sleep": {"replay.ratio": [0.1, 0.3]}}
    for words, message in ((["tune.objective=test_loss"], "nothing selects on the test split"),
                           (["tune.train.lr=[0.001,0.001]"], "repeat"),
                           (["tune.train.lr=0.001"], "non-empty list"),
                           (["tune.skip=nap", "tune.train.lr=[1e-3,2e-3]"], "tune.skip"),
                           (["tune.train.lr=[1e-3,-1]"], "train.lr"),
                           (["tune.seeds=[0,0]", "tune.train.lr=[1e-3,2e-3]"], "distinct")):
        with pytest.raises(ConfigError, match=message):
            parse_args([*ARMS, *COMMON, *words])


def test_every_arm_is_tuned_alike_then_judged_on_test(compare_experiment):
    """The shared experiment (conftest) tunes both arms on one grid: each picks its own value on dev and its seeds
    run at that choice (the kill after the first trial and the skipping re-run: test_compare)."""
    exp_dir = compare_experiment.dir
    tuning = json.loads((exp_dir / "tuning.json").read_text())
    for arm in ("single_pass", "nap"):
        t = tuning[arm]
        assert t["grid"] == {"train.lr": [0.0005, 0.01]} and len(t["trials"]) == 2 and t["runs"] == 2
        best = min(t["trials"], key=lambda r: r["mean"])
        assert t["chosen"] == best["values"]                 # the lower dev loss of its own two trials
        for trial in t["trials"]:                            # scored on dev: the trial run's final val loss
            run = exp_dir / "tuning" / arm / trial["trial"] / "seed0" / "summary.json"
            assert trial["scores"] == [json.loads(run.read_text())["final_val_loss"]]
        config = (exp_dir / "runs" / arm / "seed1" / "config.yaml").read_text()
        assert f"lr: {t['chosen']['train.lr']}" in config  # the seeds ran at the arm's own choice
    summary = json.loads((exp_dir / "summary.json").read_text())
    assert summary["verdict"]["split"] == "test" and summary["multiple_comparisons"]["family_size"] == 2
    cmp = summary["arms"]["nap"]["vs_baseline"]["test_loss"]
    assert cmp["n"] == 2 and {"p_holm", "mde_family", "ci95"} <= set(cmp) and cmp["ci_method"] == "t"
    report = (exp_dir / "report.md").read_text()
    assert "## Tuning (every arm alike)" in report and "| nap | train.lr: 0.0005, 0.01 |" in report
    assert "p (Holm)" in report and "MDE" in report


def test_a_failed_run_stops_the_experiment_before_the_next_run_starts(tmp_path):
    """A run that fails (here: it diverges) ends the compare with its one-line error; no further run starts (the
    same holds for Ctrl-C, which reaches the run in progress too): the finished runs stay, re-running resumes."""
    exp_dir = tmp_path / "exp"
    result = run_cli("compare", "boom=schedule=single_pass,train.lr=1.0e4,train.clip_grad=null", "single_pass",
                     *COMMON, "seeds=1", "budget.tokens=12000", f"dir={exp_dir}", timeout=300)
    assert result.returncode == 2 and "compare: boom seed 0 failed" in result.stderr, result.stderr[-2000:]
    assert not (exp_dir / "runs" / "single_pass").exists()

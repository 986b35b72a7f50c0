"""`sleeptrain compare` / `report`: equal budgets, paired statistics, a report, and resumable experiments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY_RUN, run_cli
from sleeptrain.compare import parse_args, split_overrides
from sleeptrain.errors import ConfigError
from sleeptrain.report import paired_comparison

COMMON = [w for w in TINY_RUN if not w.startswith("train.eval_every")] + ["train.eval_every=8", "run.plot=false"]
ARMS = ["single_pass", "strict=schedule=sleep_strict,schedule.n_cycles=2,schedule.sleep_wake_ratio=0.5"]


def test_split_overrides_keeps_lists_together():
    assert split_overrides("schedule=sleep,sleep.ops=[replay,downscale],train.lr=1e-3") == [
        "schedule=sleep", "sleep.ops=[replay,downscale]", "train.lr=1e-3"]


def test_parse_args_sorts_arms_common_and_settings():
    exp = parse_args(["epochs", "strict=schedule=sleep_strict,replay.ratio=0.1", "model=tiny", "train.lr=1e-3",
                      "seeds=2", "budget.tokens=5000"])
    assert [a.name for a in exp.arms] == ["epochs", "strict"]
    assert exp.arms[1].overrides == ["schedule=sleep_strict", "replay.ratio=0.1"]
    assert exp.common == ["model=tiny", "train.lr=1e-3"] and exp.seeds == 2 and exp.budget_tokens == 5000


@pytest.mark.parametrize("words,expected", [
    (["epochs"], "at least two arms"),
    (["epochs", "nap"], "not a schedule preset"),
    (["epochs", "x=replay.ratio=2"], "replay.ratio"),
    (["epochs", "sleep", "seeds=0"], "seeds"),
])
def test_compare_errors(words, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_args(words)


def test_paired_comparison_verdicts():
    base = [3.0, 3.1, 2.9, 3.05]
    assert paired_comparison([b - 0.2 for b in base], base, higher_is_better=False)["verdict"] == "better"
    assert paired_comparison([b + 0.2 for b in base], base, higher_is_better=False)["verdict"] == "worse"
    noisy = paired_comparison([3.1, 2.9, 3.0, 3.05], base, higher_is_better=False)
    assert noisy["verdict"] == "no detectable difference at this budget"
    assert noisy["ci95"][0] < 0 < noisy["ci95"][1] and 0 <= noisy["p_value"] <= 1


def test_compare_two_arms_two_seeds_killed_resumed_and_skipped(tmp_path):
    exp_dir = tmp_path / "exp"
    words = [*ARMS, *COMMON, "seeds=2", "budget.tokens=12000", f"dir={exp_dir}"]
    first_run = exp_dir / "runs" / "single_pass" / "seed0" / "summary.json"
    proc = subprocess.Popen([sys.executable, "-m", "sleeptrain", "compare", *words], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 300
    while not first_run.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the compare and the training it had started
    proc.wait()
    first_mtime = first_run.stat().st_mtime

    finished = run_cli("compare", *words, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "single_pass seed 0: finished earlier, skipped" in finished.stdout
    assert first_run.stat().st_mtime == first_mtime

    summary = json.loads((exp_dir / "summary.json").read_text())
    assert set(summary["arms"]) == {"single_pass", "strict"} and summary["paired_seeds"] == [0, 1]
    positions = [summary["arms"][a]["positions"]["mean"] for a in summary["arms"]]
    assert abs(positions[0] - positions[1]) <= 16 * 32  # equal budgets within one batch
    strict = summary["arms"]["strict"]
    for key in ("final_val_loss", "best_val_loss", "blimp_overall"):
        assert {"mean", "sd", "n"} <= set(strict[key]) and strict[key]["n"] == 2
        cmp = strict["vs_baseline"][key]
        assert {"mean_diff", "ci95", "p_value", "verdict"} <= set(cmp)
    report = (exp_dir / "report.md").read_text()
    assert "| strict | final val loss |" in report and "![loss](loss.png)" in report
    assert (exp_dir / "loss.png").exists() and (exp_dir / "blimp_by_phenomenon.png").exists()

    again = run_cli("compare", *words, timeout=600)
    assert again.returncode == 0 and again.stdout.count("skipped") >= 4
    assert "0 run, 4 skipped" in again.stdout

    (exp_dir / "report.md").unlink()
    regenerated = run_cli("report", str(exp_dir))
    assert regenerated.returncode == 0 and (exp_dir / "report.md").read_text() == report

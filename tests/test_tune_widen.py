"""`tune.widen` (experiments/tuning.py): a choice on the grid's edge extends that key's geometric grid beyond the
edge, one rule for every arm, the added trials numbered after the given ones; scripted scores, no training."""

from __future__ import annotations

from pathlib import Path

import pytest

from sleeptrain.errors import ConfigError
from sleeptrain.experiments import compare
from sleeptrain.experiments.compare import Arm, Experiment, continuation_conflict, parse_args
from sleeptrain.experiments.tuning import TuneSpec, arm_trials, choose, tuning_section
from sleeptrain.grids import next_value
from test_compare import ARMS, COMMON


def scripted(exp_dir: Path, finished: dict):
    """record_of for choose(): a trial run's record once `finished` holds its folder."""
    return lambda run_dir: finished.get(run_dir.relative_to(exp_dir))


def finish(exp_dir: Path, spec: TuneSpec, arm: str, loss_of, finished: dict, record_of) -> None:
    rows, _, _ = arm_trials(exp_dir, spec, arm, record_of)
    for i, values in enumerate(rows):
        for seed in spec.seeds:
            finished[Path("tuning", arm, f"t{i:02d}", f"seed{seed}")] = {"final_val_loss": loss_of(values)}


def test_next_value_continues_a_positive_monotone_grid_only():
    assert next_value([3e-3, 6e-3, 1.2e-2], low=True) == 1.5e-3
    assert next_value([3e-3, 6e-3, 1.2e-2], low=False) == 2.4e-2
    assert next_value([1, 2, 4], low=False) == 8 and next_value([2, 3, 4], low=True) == 1
    assert next_value([0.3, 0.1, 0.03], low=False) == 0.009  # descending grids continue too
    assert next_value([1, 2, 3], low=True) is None           # 0.5 rounds to 0: not a positive value
    assert next_value([0.0, 1.0, 2.0], low=True) is None     # not positive
    assert next_value([1.0, 4.0, 2.0], low=True) is None     # not monotone
    assert next_value(["a", "b", "c"], low=True) is None


def test_an_edge_choice_widens_until_the_choice_is_inside_or_the_budget_is_spent(tmp_path):
    spec = TuneSpec(keys={"train.lr": [3e-3, 6e-3, 1.2e-2]}, seeds=[100], widen=2)
    finished: dict = {}
    record_of = scripted(tmp_path, finished)
    best_at = {"low": 1.5e-3, "far": 1e-4}

    def loss(target):
        return lambda values: abs(values["train.lr"] - target)

    # before any trial finished: the given grid only, unfinished
    rows, _, done = arm_trials(tmp_path, spec, "a", record_of)
    assert [r["train.lr"] for r in rows] == [3e-3, 6e-3, 1.2e-2] and not done and choose(tmp_path, spec, "a",
                                                                                          record_of) is None
    # optimum at 1.5e-3: one widening, then the choice (1.5e-3) is the new edge and a second widening adds 7.5e-4
    for _ in range(3):
        finish(tmp_path, spec, "a", loss(best_at["low"]), finished, record_of)
    t = choose(tmp_path, spec, "a", record_of)
    assert [r["values"]["train.lr"] for r in t["trials"]] == [3e-3, 6e-3, 1.2e-2, 1.5e-3, 7.5e-4]
    assert t["chosen"] == {"train.lr": 1.5e-3} and t["chosen_trial"] == "t03" and t["on_edge"] == []
    assert t["widened"] == {"train.lr": [7.5e-4, 1.5e-3]} and t["grid"]["train.lr"][0] == 7.5e-4
    assert t["runs"] == 5
    # an optimum far below: the budget of 2 widenings is spent and the edge is still flagged
    finished.clear()
    for _ in range(3):
        finish(tmp_path, spec, "b", loss(best_at["far"]), finished, record_of)
    t = choose(tmp_path, spec, "b", record_of)
    assert t["chosen"] == {"train.lr": 7.5e-4} and t["on_edge"] == ["train.lr"]
    assert "still, after widening" in "\n".join(tuning_section({"b": t}, spec.record()))
    # an interior choice: nothing added, and widen=0 leaves an edge choice flagged only
    finished.clear()
    finish(tmp_path, spec, "c", loss(6e-3), finished, record_of)
    assert choose(tmp_path, spec, "c", record_of)["widened"] == {}
    flat = TuneSpec(keys={"train.lr": [3e-3, 6e-3, 1.2e-2]}, seeds=[100])
    finished.clear()
    finish(tmp_path, flat, "d", loss(1e-4), finished, record_of)
    t = choose(tmp_path, flat, "d", record_of)
    assert t["on_edge"] == ["train.lr"] and t["runs"] == 3 and "widen it" in "\n".join(tuning_section({"d": t}, {}))


def test_a_two_key_grid_widens_the_edge_key_across_the_other_keys_values(tmp_path):
    spec = TuneSpec(keys={"train.lr": [1e-3, 2e-3, 4e-3], "train.weight_decay": [0.0, 0.1]}, seeds=[0, 1],
                    widen=1)
    finished: dict = {}
    record_of = scripted(tmp_path, finished)
    loss = lambda v: v["train.lr"] + v["train.weight_decay"]  # noqa: E731 - best at the lowest lr
    for _ in range(2):
        finish(tmp_path, spec, "a", loss, finished, record_of)
    t = choose(tmp_path, spec, "a", record_of)
    added = [r["values"] for r in t["trials"][6:]]
    assert added == [{"train.lr": 5e-4, "train.weight_decay": 0.0}, {"train.lr": 5e-4, "train.weight_decay": 0.1}]
    assert t["runs"] == 8 * 2 and t["chosen"] == {"train.lr": 5e-4, "train.weight_decay": 0.0}


def test_run_tuning_runs_the_added_trials_after_the_grid_and_a_study_may_gain_widen(tmp_path, monkeypatch):
    spec = TuneSpec(keys={"train.lr": [3e-3, 6e-3, 1.2e-2]}, seeds=[100], widen=1)
    exp = Experiment([Arm("epochs", []), Arm("sleep", [])], [], tune=spec, dir=tmp_path)
    finished: dict = {}
    best = {"epochs": 6e-3, "sleep": 1e-3}
    rounds, overrides = [], {}

    def fake_jobs(exp_, exp_dir, jobs, budgets, log, recorded, on_finished, curves=True):
        rounds.append([arm.name for arm, _, _ in jobs])
        overrides.update({arm.name: arm.overrides for arm, _, _ in jobs})
        for arm, seed, run_dir in jobs:
            name = arm.name.split("/")[0]
            lr = float(next(w for w in arm.overrides if w.startswith("train.lr=")).split("=")[1])
            finished[run_dir.relative_to(exp_dir)] = {"final_val_loss": abs(lr - best[name])}
        return [{"status": "finished"} for _ in jobs]

    monkeypatch.setattr(compare, "run_jobs", fake_jobs)
    monkeypatch.setattr(compare, "arm_budgets", lambda e: {"arms": {}, "budget_positions": 1000})
    compare.run_tuning(exp, tmp_path, {"budget_positions": 1000}, lambda *_: None,
                       record_of=scripted(tmp_path, finished))
    assert rounds == [[f"{a}/t0{i}" for a in ("epochs", "sleep") for i in range(3)], ["sleep/t03"]]
    assert overrides["sleep/t03"] == ["train.lr=0.0015"]   # 3e-3 was its edge choice: the next value below it
    # the study identity ignores `widen`: a tuning that gains it continues; other keys do not
    before = {"common": [], "tune": TuneSpec(keys=spec.keys, seeds=[100]).record(), "arms": {}}
    assert continuation_conflict(before, {"common": [], "tune": spec.record(), "arms": {}}) is None
    other = TuneSpec(keys={"train.lr": [1e-3]}, seeds=[100], widen=1).record()
    assert "other tuning" in continuation_conflict(before, {"common": [], "tune": other, "arms": {}})
    assert TuneSpec.from_record(spec.record()) == spec


def test_widen_is_checked_as_one_line():
    assert parse_args([*ARMS, *COMMON, "tune.train.lr=[1e-3,2e-3,4e-3]", "tune.widen=2"]).tune.widen == 2
    for bad in ("-1", "six", "9"):
        with pytest.raises(ConfigError, match="tune.widen: expected a whole number from 0 to 5"):
            parse_args([*ARMS, *COMMON, "tune.train.lr=[1e-3,2e-3,4e-3]", f"tune.widen={bad}"])

"""`sleeptrain compare` / `report`: equal budgets, paired statistics, a report, and resumable experiments."""

from __future__ import annotations

import json

import pytest

from conftest import COMPARE_COMMON as COMMON, run_cli
from sleeptrain.experiments.compare import parse_args, split_overrides
from sleeptrain.errors import ConfigError
from sleeptrain.experiments.report import paired_comparison

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
    base = [3.0, 3.1, 2.9, 3.05, 3.02]
    shift = [0.21, 0.19, 0.2, 0.22, 0.18]
    assert paired_comparison([b - d for b, d in zip(base, shift)], base, higher_is_better=False)["verdict"] == "better"
    assert paired_comparison([b + d for b, d in zip(base, shift)], base, higher_is_better=False)["verdict"] == "worse"
    noisy = paired_comparison([3.1, 2.9, 3.0, 3.05, 3.0], base, higher_is_better=False)
    assert noisy["verdict"].startswith("no detectable difference (could miss |diff| < ")
    assert noisy["ci95"][0] < 0 < noisy["ci95"][1] and 0 <= noisy["p_value"] <= 1 and noisy["ci_method"] == "bootstrap"
    four = paired_comparison(base[:4], [b + 0.2 for b in base[:4]], higher_is_better=False)
    assert four["verdict"].startswith("underpowered: 4 seed pairs") and four["ci_method"] == "t"


def test_compare_killed_resumed_and_skipped(compare_experiment):
    """The shared experiment (conftest): killed after its first run, the re-run skips it, finishes, and reports on
    test with Holm and the MDE; a third run trains nothing; `report` regenerates the same page."""
    exp = compare_experiment
    exp_dir = exp.dir
    assert "single_pass/t00 seed 0: finished earlier, skipped" in exp.resumed.stdout
    assert exp.first.stat().st_mtime == exp.first_mtime

    summary = json.loads((exp_dir / "summary.json").read_text())
    assert set(summary["arms"]) == {"single_pass", "nap"} and summary["paired_seeds"] == [0, 1]
    budget = json.loads((exp_dir / "experiment.json").read_text())["budget"]
    for arm in ("single_pass", "nap"):   # each arm ran the positions its budget gave it, to within one batch
        assert abs(summary["arms"][arm]["positions"]["mean"] - budget["arms"][arm]["budget_positions"]) <= 16 * 32
    nap = summary["arms"]["nap"]
    for key in ("final_val_loss", "best_val_loss", "test_loss", "blimp_overall"):
        assert {"mean", "sd", "n"} <= set(nap[key]) and nap[key]["n"] == 2
    assert summary["verdict"] == {"split": "test", "model": "final", "metrics": ["test_loss", "blimp_overall"]}
    assert set(nap["vs_baseline"]) == {"test_loss", "blimp_overall"}
    assert summary["multiple_comparisons"] == {"method": "holm", "alpha": 0.05, "family_size": 2}
    for cmp in nap["vs_baseline"].values():
        assert {"mean_diff", "ci95", "p_value", "p_holm", "mde_family", "verdict"} <= set(cmp)
    assert set(nap["per_seed"]["0"]) >= {"dev", "test"} and nap["per_seed"]["0"]["test"]["test_loss"] > 0
    report = (exp_dir / "report.md").read_text()
    assert "| nap | test loss | 2 |" in report and "![loss](loss.png)" in report
    assert "underpowered: 2 seed pairs" in report and "on the **test** split" in report
    # the generated corpus's own agreement pairs are not BLiMP, and the report does not call them that
    assert summary["pairs_label"] == "agreement pairs (generated)" and "BLiMP overall" not in report
    assert "| nap | agreement pairs (generated) | 2 |" in report
    assert (exp_dir / "loss.png").exists() and (exp_dir / "blimp_by_phenomenon.png").exists()

    assert exp.again.returncode == 0 and "0 run, 8 skipped" in exp.again.stdout

    (exp_dir / "report.md").unlink()
    regenerated = run_cli("report", str(exp_dir))
    assert regenerated.returncode == 0 and (exp_dir / "report.md").read_text() == report


def test_grid_covers_every_combination_and_random_is_seeded(tmp_path):
    from sleeptrain.experiments.sweep import load_space, trial_settings

    space = tmp_path / "space.yaml"
    space.write_text("method: grid\nspace:\n  train.lr: [0.001, 0.003]\n  replay.strategy: [weighted, strict]\n")
    grid = trial_settings(load_space(space, []))
    assert len(grid) == 4 and {(t["train.lr"], t["replay.strategy"]) for t in grid} == {
        (0.001, "weighted"), (0.001, "strict"), (0.003, "weighted"), (0.003, "strict")}
    space.write_text("method: random\ntrials: 5\nspace:\n  train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n")
    a, b = (trial_settings(load_space(space, [])) for _ in range(2))
    assert a == b and all(1e-4 <= t["train.lr"] <= 1e-2 for t in a)
    space.write_text("method: grid\nspace:\n  train.lr: {low: 1.0e-4, high: 1.0e-2}\n")
    with pytest.raises(ConfigError, match="space.train.lr"):
        load_space(space, [])
    space.write_text("method: random\ntrails: 5\nspace:\n  train.lr: [0.001]\n")  # misspelt: not 10 trials silently
    with pytest.raises(ConfigError, match=r"unknown keys \['trails'\]; a search-space file holds method, objective"):
        load_space(space, [])
    space.write_text("method: random\nspace:\n  train.lr: {low: 1.0e-4, high: 1.0e-2, log_scale: true}\n")
    with pytest.raises(ConfigError, match=r"space.train.lr: unknown keys \['log_scale'\]"):
        load_space(space, [])
    space.write_text("space:\n  train.lr: [0.001]\n")
    with pytest.raises(ConfigError, match="sweep.seed: expected a whole number, got 'x'"):
        load_space(space, ["seed=x"])


def test_random_sweep_writes_table_best_preset_and_importance(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("method: random\ntrials: 3\nobjective: final_val_loss\n"
                     "space:\n  train.lr: {low: 1.0e-3, high: 1.0e-2, log: true}\n  train.warmup_steps: [0, 5]\n")
    out = tmp_path / "sweep"
    result = run_cli("sweep", str(space), *COMMON, "schedule=single_pass", "train.max_steps=12", "eval.final=false",
                     f"dir={out}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "sweep.json").read_text())
    assert len(data["trials"]) == 3 and data["best"]["objective"] == min(t["objective"] for t in data["trials"])
    assert "| trial-" in (out / "sweep.md").read_text() and (out / "importance.png").exists()
    best = (out / "best.yaml").read_text()
    assert "lr:" in best and "max_steps: 12" in best
    again = run_cli("sweep", str(space), *COMMON, "schedule=single_pass", "train.max_steps=12", "eval.final=false",
                    f"dir={out}", timeout=600)
    assert again.returncode == 0 and again.stdout.count("skipped") == 3


def test_two_pairs_get_a_t_interval_and_no_verdict():
    two = paired_comparison([2.0, 2.5], [3.0, 3.1], higher_is_better=False)
    assert two["ci_method"] == "t" and "underpowered: 2 seed pairs" in two["verdict"] and two["n"] == 2
    # differences -1.0, -0.6: mean -0.8, sd 0.2828; t(1, 0.975) = 12.706 -> half-width 12.706 * 0.2828 / sqrt(2)
    assert two["ci95"] == pytest.approx([-0.8 - 2.5412, -0.8 + 2.5412], abs=1e-3)
    assert 0 <= two["p_value"] <= 1


def test_the_budget_note_says_what_a_cut_schedule_loses():
    from sleeptrain.experiments.compare import arm_budgets

    budget = arm_budgets(parse_args([*ARMS, *COMMON, "seeds=1"]))
    strict = budget["arms"]["strict"]
    assert strict["natural_steps"] > strict["steps"]
    assert strict["truncated"]["cycles_completed"] < strict["truncated"]["cycles_planned"]
    assert "the budget cuts its schedule short" in strict["note"] and "of its planned training data seen" in strict["note"]
    assert "note" not in budget["arms"]["single_pass"]


def test_a_natural_arm_keeps_its_length_and_the_budget_comes_from_the_next_arm():
    from sleeptrain.experiments.compare import arm_budgets

    words = ["single_pass", "two=schedule=epochs,schedule.epochs=2", *COMMON, "seeds=1", "budget.natural=single_pass"]
    budget = arm_budgets(parse_args(words))
    floor, two = budget["arms"]["single_pass"], budget["arms"]["two"]
    assert budget["budget_positions"] == two["natural_positions"] == 2 * floor["natural_positions"]
    assert floor["budget_positions"] == floor["natural_positions"] and floor["budget_overrides"] == []
    assert "kept off the budget" in floor["note"]
    assert two["budget_overrides"] == [f"train.max_steps={two['natural_steps']}"]
    # without budget.natural the first arm (the floor) sets the budget
    plain = arm_budgets(parse_args(words[:-1]))
    assert plain["budget_positions"] == floor["natural_positions"]


def test_priority_arms_run_every_seed_first_and_names_are_checked(tmp_path):
    from sleeptrain.experiments.compare import job_order

    spec = tmp_path / "spec.yaml"
    spec.write_text("arms:\n  a: [schedule=epochs]\n  b: [schedule=single_pass]\n  c: [schedule=sleep_strict]\n"
                    "seeds: 2\npriority: [c, a]\nbudget:\n  natural: [b]\n")
    exp = parse_args([str(spec), *COMMON])
    assert exp.priority == ["c", "a"] and exp.natural == ["b"]
    order = [(arm.name, seed) for arm, seed in job_order(exp)]
    assert order == [("a", 0), ("c", 0), ("a", 1), ("c", 1), ("b", 0), ("b", 1)]
    with pytest.raises(ConfigError, match="priority: \\['x'\\] are not arms"):
        parse_args([str(spec), *COMMON, "priority=x"])
    with pytest.raises(ConfigError, match="budget.natural: at least one arm"):
        parse_args(["epochs", "single_pass", *COMMON, "budget.natural=epochs,single_pass"])


def test_an_experiment_folder_takes_added_arms_but_refuses_changed_ones(tmp_path):
    from sleeptrain.experiments.compare import added_arms

    before = {"arms": {"a": ["schedule=epochs"], "b": ["schedule=single_pass"]}, "common": ["model=tiny"]}
    same = {"arms": dict(before["arms"]), "common": ["model=tiny"]}
    assert added_arms(before, same, tmp_path) == []
    more = {"arms": {**before["arms"], "c": ["schedule=sleep"]}, "common": ["model=tiny"]}
    assert added_arms(before, more, tmp_path) == ["c"]
    with pytest.raises(ConfigError, match="arm\\(s\\) b missing or with other overrides"):
        added_arms(before, {"arms": {"a": ["schedule=epochs"], "b": ["schedule=sleep"]}, "common": ["model=tiny"]},
                   tmp_path)
    with pytest.raises(ConfigError, match="arm\\(s\\) b missing"):
        added_arms(before, {"arms": {"a": ["schedule=epochs"]}, "common": ["model=tiny"]}, tmp_path)
    with pytest.raises(ConfigError, match="other common settings"):
        added_arms(before, {**more, "common": ["model=small"]}, tmp_path)
    budgeted = {**before, "budget": {"budget_positions": 1000}}
    with pytest.raises(ConfigError, match="dir: .* \\(budget 1,000 token positions, now 2,000\\); finished runs would"):
        added_arms(budgeted, {**budgeted, "budget": {"budget_positions": 2000}}, tmp_path)


def test_the_continuation_rule_lets_a_ledger_leave_arms_out_but_never_change_one():
    from sleeptrain.experiments.compare import continuation_conflict

    before = {"arms": {"a": ["schedule=epochs"], "b": ["schedule=sleep"]}, "common": ["model=tiny"],
              "budget": {"budget_positions": 10}}
    fewer = {**before, "arms": {"a": ["schedule=epochs"]}}
    assert continuation_conflict(before, fewer) == "arm(s) b missing or with other overrides; arms may only be added"
    assert continuation_conflict(before, fewer, arms_may_drop=True) is None
    assert continuation_conflict(before, {**fewer, "arms": {"a": ["x"]}}, arms_may_drop=True) == \
        "arm(s) a with other overrides; arms may only be added"
    assert continuation_conflict(before, {**before, "common": []}) == "other common settings (no longer model=tiny)"
    assert continuation_conflict(before, {**before, "common": ["model=small"]}) == \
        "other common settings (now model=small; no longer model=tiny)"


def test_runs_the_caller_recorded_elsewhere_are_skipped_and_each_finished_run_is_handed_back(tmp_path):
    from sleeptrain.experiments.compare import run_compare

    exp = parse_args([*ARMS, *COMMON, "seeds=2", "budget.tokens=12000", f"dir={tmp_path / 'exp'}"])
    # a study that keeps its own records (tools/lm_study.py) on a fresh clone: 3 of 4 runs finished elsewhere
    recorded = frozenset(f"runs/{arm.name}/seed{seed}" for arm in exp.arms for seed in range(2)) - {"runs/strict/seed1"}
    logged, handed, started = [], [], []
    run_compare(exp, log=logged.append, recorded=recorded, on_start=started.append,
                on_finished=lambda arm, seed, run_dir: handed.append((arm, seed, (run_dir / "summary.json").is_file())))
    assert handed == [("strict", 1, True)]
    assert [sorted(r["arms"]) for r in started] == [sorted(a.name for a in exp.arms)]
    assert started[0]["budget"]["budget_positions"] == 12000 and started[0]["seeds"] == 2

    def refuse(record):
        raise ConfigError("--results: another study")
    with pytest.raises(ConfigError, match="another study"):  # a refusal trains nothing
        run_compare(parse_args([*ARMS, *COMMON, "seeds=1", f"dir={tmp_path / 'other'}"]), log=logged.append,
                    on_start=refuse)
    assert not (tmp_path / "other" / "runs").exists()
    assert not (tmp_path / "exp" / "runs" / "single_pass").exists()
    assert sum("(kept in the caller's records), skipped" in line for line in logged) == 3


def test_auto_precision_is_pinned_once_and_a_machine_that_resolves_otherwise_cannot_continue(monkeypatch, tmp_path):
    import sleeptrain.lm.precision as precision
    from sleeptrain.experiments.compare import added_arms, pin_precision

    monkeypatch.setattr(precision, "resolve_precision", lambda requested, on_cuda: ("bf16", "auto -> bf16 (probe)"))
    logged = []
    exp = parse_args(["epochs", "own=schedule=single_pass,train.precision=fp32", "model=tiny"])
    pinned = pin_precision(exp, logged.append)
    assert pinned.common == ["model=tiny", "train.precision=bf16"] and exp.common == ["model=tiny"]
    assert pinned.arms[1].overrides[-1] == "train.precision=fp32"  # an arm's own precision stays its own
    assert "pinned as train.precision=bf16 for every run" in logged[0]
    assert pin_precision(pinned, logged.append) is pinned and len(logged) == 1  # pinned already: nothing to do
    elsewhere = {"arms": {}, "common": ["model=tiny", "train.precision=fp32"]}  # the same words, an fp32 machine
    with pytest.raises(ConfigError, match="now train.precision=bf16; no longer train.precision=fp32"):
        added_arms(elsewhere, {"arms": {}, "common": pinned.common}, tmp_path)
    with pytest.raises(ConfigError, match="train.precision: arm\\(s\\) auto set auto"):
        pin_precision(parse_args(["epochs", "auto=schedule=single_pass,train.precision=auto"]), logged.append)

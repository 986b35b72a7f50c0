"""tools/lm_study.py (issue 19): the study's summary.json layout, paired tests against the best baseline, verdicts,
and a report of a partial study — on a fabricated experiment folder (the training itself is `sleeptrain compare`,
tested in test_compare.py)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("lm_study", REPO / "tools" / "lm_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# arm -> per-seed (BLiMP, final val loss); None = not finished
RUNS = {"single_pass": [(0.510, 4.60), (0.512, 4.61), (0.508, 4.62)],
        "epochs": [(0.540, 4.30), (0.545, 4.31), (0.538, 4.29)],
        "sleep": [(0.560, 4.25), (0.566, 4.27), None]}


def _fake_experiment(exp_dir: Path) -> None:
    budget = {"budget_positions": 4096 * 300, "arms": {
        "single_pass": {"budget_positions": 4096 * 100, "note": "natural length, kept off the budget"},
        "epochs": {"budget_positions": 4096 * 300}, "sleep": {"budget_positions": 4096 * 300}}}
    (exp_dir).mkdir(parents=True)
    (exp_dir / "experiment.json").write_text(json.dumps(
        {"arms": {a: [f"schedule={a}"] for a in RUNS}, "common": ["model=tiny"], "seeds": 3, "budget": budget}))
    for arm, rows in RUNS.items():
        for seed, row in enumerate(rows):
            if row is None:
                continue
            run = exp_dir / "runs" / arm / f"seed{seed}"
            (run / "final" / "eval").mkdir(parents=True)
            steps = budget["arms"][arm]["budget_positions"] // 4096
            (run / "summary.json").write_text(json.dumps(
                {"final_val_loss": row[1], "steps": steps, "tokens": steps * 4000, "seconds": 60.0,
                 "blimp_overall": row[0]}))
            (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
                {"event": "start", "parameters": 1000, "non_embedding_parameters": 500, "vocab_size": 64,
                 "train_tokens": 12345, "dev_tokens": 99},
                {"event": "train", "step": 1, "tokens": 4096, "loss": 5.0},
                {"event": "eval", "step": steps, "tokens": steps * 4096, "val_loss": row[1]}]) + "\n")
            (run / "config.yaml").write_text(yaml.safe_dump(
                {"train": {"batch_size": 32}, "data": {"seq_len": 128, "path": "/data/corpus-mini"},
                 "model": {"arch": "llama", "num_layers": 4, "hidden_size": 128},
                 "eval": {"blimp_path": "/data/blimp", "final_max_pairs": None}}))
            (run / "final" / "eval" / "results.json").write_text(json.dumps(
                {"blimp": {"by_phenomenon": {"binding": {"accuracy": row[0] + 0.1}}}}))


def _summary(tool, exp_dir: Path, spec: dict) -> dict:
    """The study's summary as main() makes it: the finished runs recorded, then summarised from the records."""
    ledger = exp_dir.parent / "records"
    tool.sync_ledger(ledger, exp_dir)
    return tool.study_summary(*tool.read_ledger(ledger), spec)


def test_study_summary_has_the_issue_layout_and_tests_against_the_best_baseline(tmp_path):
    tool = _tool()
    exp_dir = tmp_path / "exp"
    _fake_experiment(exp_dir)
    spec = {"baselines": ["single_pass", "epochs"], "systems": {"CLIMB-Sleep": ["sleep"], "FORGETTER": ["forgetter"]},
            "published": {"CLIMB-Sleep baseline": 59.40}}
    summary = _summary(tool, exp_dir, spec)
    sleep = summary["arms"]["sleep"]
    assert sleep["seeds"] == [0, 1] and sleep["blimp"] == [0.560, 0.566] and sleep["val_loss"] == [4.25, 4.27]
    assert summary["arms"]["epochs"]["tokens"] == 32 * 128 * 300  # steps x batch x seq_len of the runs
    assert summary["arms"]["single_pass"]["tokens"] == 4096 * 100
    assert summary["off_budget"] == {"single_pass": pytest.approx(-2 / 3)}  # not declared natural: flagged
    experiment = json.loads((exp_dir / "experiment.json").read_text())
    (exp_dir / "experiment.json").write_text(json.dumps({**experiment, "natural": ["single_pass"]}))
    assert _summary(tool, exp_dir, spec)["off_budget"] == {}
    assert summary["model"]["parameters"] == 1000 and summary["data"]["train_tokens"] == 12345
    assert summary["model"]["objective"] == "causal LM"
    assert summary["data"]["blimp_scoring"] == "sentence log-probability"
    assert summary["best_baseline"] == "epochs"  # the higher mean BLiMP of the two baselines
    more = _summary(tool, exp_dir, {**spec, "baselines": ["single_pass", "epochs", "sleep"]})
    assert more["best_baseline"] == "epochs"  # sleep's BLiMP is higher, but on 2 seeds of 3
    cmp = summary["vs_best_baseline"]["sleep"]["blimp"]
    assert cmp["seeds"] == [0, 1] and cmp["mean_diff"] == pytest.approx(((0.560 - 0.540) + (0.566 - 0.545)) / 2)
    assert cmp["effect_size_dz"] is not None and cmp["effect_size_dz"] > 0
    floor = summary["vs_best_baseline"]["single_pass"]["blimp"]
    assert floor["n"] == 3 and floor["verdict"].startswith("underpowered: 3 seed pairs")  # clear, but 3 pairs
    assert floor["p_holm"] >= floor["p_value"] and summary["family_size"] >= 2
    assert "2 seed pairs" in summary["verdicts"]["CLIMB-Sleep"]["sleep"]
    assert summary["verdicts"]["CLIMB-Sleep"]["sleep"].startswith("BLiMP +0.0205 [")  # the number and its interval
    assert ", p (Holm) " in summary["verdicts"]["CLIMB-Sleep"]["sleep"]
    assert summary["verdicts"]["FORGETTER"]["forgetter"] == "not measured yet"
    report = tool.write_study_report(summary, tmp_path, "tools/lm_study.py spec.yaml")
    text = report.read_text()
    assert "| sleep | [0, 1] | 0.5630 ± 0.0042" in text and "Against the best baseline (epochs" in text
    assert "## Verdict per seed system (at this scale: 1.0k-parameter causal LM; " in text
    assert "12.3k training tokens; " in text
    assert "| sleep | 0.560 / 4.250 / 1.20M | 0.566 / 4.270 / 1.20M | — |" in text  # per seed, the missing one marked
    assert "59.4" in text and "| binding |" in text and "scored by sentence log-probability" in text
    tested = {**summary, "arms": {arm: {**row, "test_loss": [v + 0.1 for v in row["val_loss"]]}
                                  for arm, row in summary["arms"].items()}}    # a study judged on test: its column
    lines = "\n".join(tool.per_seed_lines(tested))
    assert "dev) / test loss /" in lines and "| sleep | 0.560 / 4.250 / 4.350 / 1.20M | 0.566 / 4.270 / 4.370" in lines


def test_wall_time_of_runs_resumed_before_it_summed_their_sessions_is_left_out(tmp_path):
    from sleeptrain.experiments.report import run_record

    exp_dir = tmp_path / "exp"
    _fake_experiment(exp_dir)
    run = exp_dir / "runs" / "epochs" / "seed1"
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "resumed_from": "ckpt"}))  # the last session only
    assert run_record(run)["seconds"] is None
    for complete in (True, False):
        (run / "summary.json").write_text(json.dumps({**summary, "resumed_from": "ckpt", "session_seconds": 20.0,
                                                      "seconds_complete": complete}))
        # complete: all sessions (train() adds the checkpoint's seconds); not: the checkpoint did not keep them
        assert run_record(run)["seconds"] == (60.0 if complete else None)
    assert run_record(exp_dir / "runs" / "epochs" / "seed0")["seconds"] == 60.0  # never resumed


def test_a_masked_lm_study_says_its_objective_and_pll_scoring(tmp_path):
    tool = _tool()
    exp_dir = tmp_path / "exp"
    _fake_experiment(exp_dir)
    for config in exp_dir.glob("runs/*/seed*/config.yaml"):
        cfg = yaml.safe_load(config.read_text())
        cfg["model"]["arch"], cfg["eval"]["method"] = "roberta", "pll"
        config.write_text(yaml.safe_dump(cfg))
    summary = _summary(tool, exp_dir, {"baselines": ["epochs"]})
    assert summary["model"]["objective"].startswith("masked LM")
    assert summary["data"]["blimp_scoring"] == "pseudo-log-likelihood (pll)"
    text = tool.write_study_report(summary, tmp_path, "cmd").read_text()
    assert "masked LM" in text and "scored by pseudo-log-likelihood (pll)" in text


def test_effect_size_is_the_mean_over_the_sd_of_the_differences():
    tool = _tool()
    assert tool.effect_size([1.0, 2.0, 4.0], [0.0, 0.0, 0.0]) == pytest.approx((7 / 3) / 1.5275252, rel=1e-6)
    assert tool.effect_size([1.0], [0.0]) is None and tool.effect_size([1.0, 1.0], [0.0, 0.0]) is None


# committed spec (under docs/results) -> the arms its issue requires in it (19: the first study; 37: the fair one)
FAIR_ARMS = {"single_pass", "epochs", "climb_sleep", "climb_sleep_no_shrink", "climb_sleep_sh_fisher",
             "climb_baseline_like", "forgetter", "forgetter_scaled"}
FIRST_ARMS = {"single_pass", "epochs", "forgetter", "climb_sleep", "climb_sleep_sh_fisher"}
SPECS = {"lm-study/2026-11-29/spec.yaml": FIRST_ARMS, "lm-study/2026-11-29/gpu/spec.yaml": FIRST_ARMS,
         "lm-study/mlm/spec.yaml": {"single_pass", "epochs", "climb_sleep", "climb_sleep_strict", "climb_baseline_like"},
         "lm-study/spec.yaml": FAIR_ARMS, "lm-study/gpu/spec.yaml": FAIR_ARMS}
FAIR = {"lm-study/spec.yaml", "lm-study/gpu/spec.yaml"}
SUPERSEDED = {"lm-study/2026-11-29/spec.yaml", "lm-study/2026-11-29/gpu/spec.yaml"}  # history: only epochs was tuned


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_committed_specs_parse_as_compare_experiments(name, tmp_path):
    from sleeptrain.experiments.compare import parse_args
    from sleeptrain.presets import load_config

    spec_file = REPO / "docs" / "results" / name
    exp = parse_args([str(spec_file)], extra_file_keys=_tool().SPEC_KEYS)
    spec = yaml.safe_load(spec_file.read_text())
    names = [a.name for a in exp.arms]
    assert SPECS[name] <= set(names) and len(names) >= 5 and exp.seeds >= 5
    for arm in exp.arms:  # every arm resolves to a valid config (data.path swapped for a folder that exists)
        words = [w for w in exp.common if not w.startswith("data.path=")] + [f"data.path={tmp_path}"] + arm.overrides
        cfg = load_config(words).config
        assert cfg.model.is_masked_lm == ("/mlm/" in name), arm.name
    assert exp.natural == ["single_pass"] and set(spec["baselines"]) <= set(names)
    assert all(arm in names for arms in spec["systems"].values() for arm in arms)
    if name in FAIR:
        assert spec["title"].endswith("(issue 37)")
    if name not in SUPERSEDED:  # issue 37: one grid for every arm but the floor, widened alike
        assert exp.tune.skip == ["single_pass"] and len(exp.tune.keys["train.lr"]) >= 3 and exp.tune.widen >= 1


def test_an_arms_file_with_an_unknown_key_is_refused_naming_it(tmp_path):
    from sleeptrain.errors import ConfigError
    from sleeptrain.experiments.compare import parse_args

    spec = tmp_path / "spec.yaml"
    spec.write_text("arms:\n  a: [schedule=epochs]\n  b: [schedule=single_pass]\nsed: 3\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['sed'\]; an arms file holds arms, common, tune, seeds"):
        parse_args([str(spec)])
    spec.write_text("arms:\n  a: [schedule=epochs]\n  b: [schedule=single_pass]\nbudget:\n  natral: [b]\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['natral'\] under budget; allowed: tokens, natural"):
        parse_args([str(spec)])
    spec.write_text("arms:\n  a: [schedule=epochs]\n  b: [schedule=single_pass]\nsystems: {x: [a]}\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['systems'\]"):
        parse_args([str(spec)])  # a study key is compare's error, and the study tool's to allow
    assert [a.name for a in parse_args([str(spec)], extra_file_keys=("systems",)).arms] == ["a", "b"]


def test_the_gpu_studys_tuning_sweep_parses_and_its_trials_are_valid_configs(tmp_path):
    from sleeptrain.experiments.sweep import load_space
    from sleeptrain.presets import load_config

    space = load_space(REPO / "docs" / "results" / "lm-study" / "2026-11-29" / "gpu" / "tune.yaml", [f"dir={tmp_path}"])
    assert space["method"] == "grid" and space["objective"] == "final_val_loss"
    common = [w for w in space["common"] if not w.startswith("data.path=")] + [f"data.path={tmp_path}"]
    for lr in space["space"]["train.lr"]:
        cfg = load_config([*common, f"train.lr={lr}"]).config
        assert cfg.schedule.epochs == 3 and cfg.model.hidden_size == 256 and cfg.train.lr == lr


def test_the_loss_plot_has_a_panel_per_arm_with_finished_runs(tmp_path):
    import matplotlib.image

    from sleeptrain.experiments.report import plot_experiment

    exp_dir = tmp_path / "exp"
    _fake_experiment(exp_dir)
    paths = plot_experiment(exp_dir, [*RUNS, "not_started"])
    height = matplotlib.image.imread(paths[0]).shape[0]
    assert height == round(2.6 * len(RUNS) * 100)  # 3 panels of 2.6 in at 100 dpi; none for the arm without runs
    assert paths[1].name == "blimp_by_phenomenon.png" and paths[1].is_file()


def test_the_records_outlive_the_run_folders_and_a_fresh_clone_reports_from_them(tmp_path):
    import shutil
    import subprocess
    import sys

    tool = _tool()
    exp_dir, results = tmp_path / "exp", tmp_path / "results"
    _fake_experiment(exp_dir)
    tool.sync_ledger(results / "records", exp_dir)
    record = json.loads((results / "records" / "sleep" / "seed1.json").read_text())
    assert record["blimp_overall"] == 0.566 and record["by_phenomenon"] == {"binding": pytest.approx(0.666)}
    assert record["model"]["parameters"] == 1000 and record["curve"]["train"] == [[4096, 5.0]]
    assert not (results / "records" / "sleep" / "seed2.json").exists()  # unfinished: no record
    before = tool.study_summary(*tool.read_ledger(results / "records"), {"baselines": ["epochs"]})
    shutil.rmtree(exp_dir)  # a new clone: the records are committed, the run folders are not
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"arms": {a: [f"schedule={a}"] for a in RUNS}, "baselines": ["epochs"]}))
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "lm_study.py"), str(spec), "--results", str(results),
                           "--report-only"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((results / "summary.json").read_text())["arms"] == json.loads(json.dumps(before["arms"]))
    assert (results / "loss.png").is_file() and "| sleep | [0, 1] |" in (results / "report.md").read_text()
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "lm_study.py"), str(spec), "--results",
                           str(tmp_path / "empty")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == "lm_study: --dir: needed to train (the folder for the run " \
                                                           "folders, e.g. experiments/lm-study)"


def test_records_of_another_study_are_refused_and_added_arms_extend_them(tmp_path):
    from sleeptrain.errors import ConfigError

    tool = _tool()
    ledger = tmp_path / "records"
    study = {"arms": {"a": ["schedule=epochs"]}, "common": ["model=tiny"], "seeds": 2,
             "budget": {"budget_positions": 100, "arms": {"a": {"budget_positions": 100}}}}
    tool.open_ledger(ledger, study)
    extended = tool.open_ledger(ledger, {**study, "arms": {**study["arms"], "b": ["schedule=sleep"]}, "seeds": 5,
                                         "budget": {"budget_positions": 100, "arms": {"b": {"budget_positions": 100}}}})
    assert list(extended["arms"]) == ["a", "b"] and extended["seeds"] == 5 and set(extended["budget"]["arms"]) == {"a", "b"}
    assert tool.open_ledger(ledger, study)["arms"] == extended["arms"]  # a subset of the arms takes the records too
    with pytest.raises(ConfigError, match="--results: .* another study \\(other common settings \\(now model=small"):
        tool.open_ledger(ledger, {**study, "common": ["model=small"]})
    with pytest.raises(ConfigError, match="budget 100 token positions, now 200"):
        tool.open_ledger(ledger, {**study, "budget": {"budget_positions": 200, "arms": {}}})
    with pytest.raises(ConfigError, match="arm\\(s\\) a with other overrides"):
        tool.open_ledger(ledger, {**study, "arms": {"a": ["schedule=sleep"]}})


def test_a_record_keeps_a_thinned_loss_curve_with_its_last_point_and_sleep_phases(tmp_path):
    from sleeptrain.experiments.plot import run_curve

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"event": "train", "step": i, "tokens": 10 * i, "loss": 5 - i / 1000} for i in range(1, 1001)]
    rows[400:400] = [{"event": "sleep_start", "tokens": 4000}, {"event": "sleep_end", "tokens": 4500}]
    rows.append({"event": "eval", "step": 1000, "tokens": 10000, "val_loss": 4.1})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    curve = run_curve(run, points=300)
    assert 250 <= len(curve["train"]) <= 301 and curve["train"][0] == [10, 4.999] and curve["train"][-1] == [10000, 4.0]
    assert curve["sleep"] == [[4000, 4500]] and curve["eval"] == [[1000, 10000, 4.1]]
    assert len(run_curve(run)["train"]) == 1000


@pytest.fixture(scope="module")
def tuned_study(tmp_path_factory):
    """The fair study's shape (issue 37) at test scale, run once through the tool: a floor and a 2-epoch arm, both
    tuned on one LR grid (seed 100), 2 seeds at each arm's choice, one word milestone, verdicts on test."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from conftest import TINY_RUN

    root = tmp_path_factory.mktemp("lm_study")
    spec = root / "spec.yaml"
    common = [w for w in TINY_RUN if not w.startswith("train.eval_every")] + [
        "train.eval_every=0", "run.plot=false", "checkpoint.words=[3000]"]
    spec.write_text(yaml.safe_dump({"arms": {"single_pass": ["schedule=single_pass"],
                                             "epochs": ["schedule=epochs", "schedule.epochs=2"]},
                                    "tune": {"keys": {"train.lr": [0.001, 0.01]}, "seeds": [100]},
                                    "common": common, "seeds": 2, "budget": {"natural": ["single_pass"]},
                                    "baselines": ["single_pass"]}))

    def tool(spec_path=spec, exp_dir=root / "exp", results=root / "results"):
        return subprocess.run([sys.executable, str(REPO / "tools" / "lm_study.py"), str(spec_path), "--dir",
                               str(exp_dir), "--results", str(results)], capture_output=True, text=True, cwd=root)

    first = tool()
    assert first.returncode == 0, first.stderr[-3000:]
    return SimpleNamespace(root=root, spec=spec, exp_dir=root / "exp", results=root / "results", tool=tool)


def test_the_tool_trains_and_records_each_run_and_its_tuning(tuned_study):
    results, exp_dir = tuned_study.results, tuned_study.exp_dir
    ledger = results / "records"
    study = json.loads((ledger / "study.json").read_text())
    assert set(study["arms"]) == {"single_pass", "epochs"} and study["budget"]["budget_positions"] > 0
    assert {p.parent.name for p in ledger.glob("*/seed1.json")} == {"single_pass", "epochs"}
    assert len(list((ledger / "tuning").glob("*/t*/seed100.json"))) == 4
    record = json.loads((ledger / "epochs" / "seed1.json").read_text())
    assert record["test_loss"] > 0 and [p["point"] for p in record["milestones"]][0] == "chck_3K"
    summary = json.loads((results / "summary.json").read_text())
    assert summary["arms"]["epochs"]["tokens"] == 2 * summary["arms"]["single_pass"]["tokens"]
    assert summary["verdict_split"] == "test" and set(summary["vs_best_baseline"]["epochs"]) == {"blimp", "test_loss"}
    chosen = json.loads((exp_dir / "tuning.json").read_text())["epochs"]["chosen"]
    assert summary["tuning"]["epochs"]["chosen"] == chosen
    assert summary["curves"]["epochs"][0]["point"] == "chck_3K"
    gaps = summary["curve_gaps"]["epochs"]  # against the floor, point by point, paired over both seeds
    assert [r["point"] for r in gaps["points"]][0] == "chck_3K" and gaps["points"][0]["seeds"] == [0, 1]
    assert set(gaps["leads"]) == {"test_loss", "blimp"} and " at 3K" in gaps["leads"]["test_loss"]
    report = (results / "report.md").read_text()
    assert "## Tuning (every arm alike)" in report and "## Learning curves" in report
    assert "### Against single_pass, point by point" in report and "- `epochs` — test loss: " in report
    assert (results / "curves.png").exists()


def test_a_rerun_trains_nothing_and_a_fresh_clone_reports_from_the_records(tuned_study):
    """With the run folders, every run is skipped as finished; on a fresh clone (the records only, no --dir folders)
    every run is skipped as recorded, each arm's choice is still known and the verdicts are the same."""
    again = tuned_study.tool()
    assert again.returncode == 0 and again.stdout.count("finished earlier, skipped") == 8, again.stdout + again.stderr
    clone = tuned_study.root / "clone-results"
    shutil.copytree(tuned_study.results, clone)
    fresh = tuned_study.tool(exp_dir=tuned_study.root / "clone-exp", results=clone)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert fresh.stdout.count("(kept in the caller's records), skipped") == 8, fresh.stdout
    first, now = (json.loads((r / "summary.json").read_text()) for r in (tuned_study.results, clone))
    assert now["tuning"] == first["tuning"] and now["vs_best_baseline"] == first["vs_best_baseline"]


def test_a_changed_arm_is_refused_by_the_run_folders_and_by_the_records(tuned_study):
    changed = tuned_study.root / "changed.yaml"
    changed.write_text(tuned_study.spec.read_text().replace("schedule.epochs=2",
                                                            "schedule.epochs=2\n  - train.lr=0.002"))
    assert yaml.safe_load(changed.read_text())["arms"]["epochs"][-1] == "train.lr=0.002"
    proc = tuned_study.tool(spec_path=changed)
    assert proc.returncode == 2 and proc.stderr.startswith("lm_study: dir: ") and "arm(s) epochs" in proc.stderr
    other = tuned_study.root / "exp2"
    proc = tuned_study.tool(spec_path=changed, exp_dir=other)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("lm_study: --results: ") and "(arm(s) epochs with other overrides" in proc.stderr
    assert not (other / "runs").exists() and not (other / "experiment.json").exists()


def test_sync_records_a_tuning_trial_and_passes_over_its_log(tmp_path):
    """A tuning trial's folder sits beside its `seedK.log` (compare's per-run log): syncing the records takes the
    finished trial and leaves the log alone (the first fair study's restart stopped on `seed100.log`)."""
    tool = _tool()
    exp_dir = tmp_path / "exp"
    _fake_experiment(exp_dir)
    trial = exp_dir / "tuning" / "epochs" / "t00" / "seed100"
    shutil.copytree(exp_dir / "runs" / "epochs" / "seed0", trial)
    (trial.parent / "seed100.log").write_text("training ...\n")
    ledger = tmp_path / "records"
    tool.sync_ledger(ledger, exp_dir)
    record = json.loads((ledger / "tuning" / "epochs" / "t00" / "seed100.json").read_text())
    assert record["arm"] == "epochs/t00" and record["seed"] == 100
    assert "tuning/epochs/t00/seed100" in tool.recorded_runs(ledger) and "runs/epochs/seed0" in tool.recorded_runs(ledger)


def test_the_end_ops_own_cost_is_paired_within_the_arm_and_reported_beside_the_pre_end_scores(tmp_path):
    tool = _tool()
    pre = [{"val_loss": 4.00, "test_loss": 4.10, "blimp_overall": 0.55}, None,
           {"val_loss": 4.02, "test_loss": 4.14, "blimp_overall": 0.56}]
    arms = {"shrinks": {"val_loss": [4.03, 4.50, 4.06], "test_loss": [4.12, 4.60, 4.17], "blimp": [0.54, 0.50, 0.56],
                        "pre_end_ops": pre},
            "plain": {"val_loss": [4.0], "test_loss": [4.1], "blimp": [0.55], "pre_end_ops": [None]}}
    costs = tool.end_op_costs(arms)
    assert set(costs) == {"shrinks"}  # an arm without end ops has no cost
    test = costs["shrinks"]["test_loss"]
    assert test["n"] == 2 and test["mean_diff"] == pytest.approx(((4.12 - 4.10) + (4.17 - 4.14)) / 2)  # seed 1 dropped
    assert costs["shrinks"]["blimp"]["mean_diff"] == pytest.approx(-0.005)
    summary = {"arms": {name: {**row, "seeds": [0, 1, 2][:len(row["blimp"])]} for name, row in arms.items()},
               "end_op_cost": costs}
    lines = tool.pre_end_lines(summary)
    row = next(line for line in lines if line.startswith("| shrinks |"))
    assert row.startswith("| shrinks | 2 | 4.0100 ± 0.0141 | 4.1200 ± 0.0283 | 0.5550 ± 0.0071 | +0.0250 [")
    assert not any(line.startswith("| plain |") for line in lines)


def test_an_ablation_s_contrast_is_paired_and_joins_the_holm_family(tmp_path):
    """`contrasts: {LABEL: [ARM, REFERENCE]}`: the ablation's own effect (climb_sleep − climb_sleep_no_shrink is the
    shrink), paired by seed, Holm-adjusted with the comparisons against the best baseline, in the report."""
    tool = _tool()
    exp_dir = tmp_path / "exp"
    _fake_experiment(exp_dir)
    spec = {"baselines": ["epochs"], "contrasts": {"sleep minus one pass": ["sleep", "single_pass"]}}
    summary = _summary(tool, exp_dir, spec)
    row = summary["contrasts"]["sleep minus one pass"]
    assert row["arm"] == "sleep" and row["reference"] == "single_pass"
    assert row["blimp"]["seeds"] == [0, 1] and row["blimp"]["mean_diff"] == pytest.approx((0.050 + 0.054) / 2)
    plain = _summary(tool, exp_dir, {"baselines": ["epochs"]})
    assert summary["family_size"] == plain["family_size"] + 2          # its two metrics joined the family
    assert "p_holm" in row["blimp"] and row["blimp"]["p_holm"] >= row["blimp"]["p_value"]
    text = tool.write_study_report(summary, tmp_path, "tools/lm_study.py spec.yaml").read_text()
    assert "## Ablations: paired contrasts" in text and "| sleep minus one pass | sleep − single_pass | blimp | 2 |" in text
    with pytest.raises(tool.ConfigError, match=r"contrasts: 'bad' must be \[ARM, REFERENCE\], two of the study's arms"):
        _summary(tool, exp_dir, {"baselines": ["epochs"], "contrasts": {"bad": ["sleep", "nonesuch"]}})


def test_the_committed_fair_study_summary_is_what_its_records_give():
    """docs/results/lm-study/summary.json is regenerated, to the byte, from the committed records alone (the
    documented `--report-only`, as on a fresh clone): nothing in it was typed in or left from an older layout."""
    lm_study, study = _tool(), REPO / "docs" / "results" / "lm-study"
    spec = lm_study.load_yaml(study / "spec.yaml", "spec")
    meta, runs = lm_study.read_ledger(study / "records")
    summary = lm_study.study_summary(meta, runs, spec, study / "records")
    assert json.dumps(summary, indent=1) == (study / "summary.json").read_text()

"""Where verdicts come from (experiments/report.py): selection reads dev, verdicts read test, the model before the
last end ops is reported beside the final one, and a folder written before test losses existed still gets a report
that says its verdicts are on the dev split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sleeptrain.errors import ConfigError
from sleeptrain.experiments.report import METRICS, collect, write_report

SEEDS = 5


def fake_run(run_dir: Path, dev: float, test: float | None, blimp: float, pre: dict | None = None) -> None:
    """A finished run folder as `train` leaves it, with chosen figures."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("train:\n  batch_size: 4\ndata:\n  seq_len: 8\n")
    (run_dir / "metrics.jsonl").write_text(json.dumps({"event": "eval", "step": 10, "tokens": 320, "val_loss": dev})
                                           + "\n")
    summary = {"steps": 10, "tokens": 300, "seconds": 1.0, "seconds_complete": True, "final_val_loss": dev,
               "blimp_overall": blimp}
    if test is not None:
        summary["final_test_loss"] = test
    if pre is not None:
        summary["pre_end_ops"] = pre
    (run_dir / "summary.json").write_text(json.dumps(summary))


def experiment(tmp_path: Path, runs: dict[str, list[tuple]], verdict_model: str | None = None) -> Path:
    exp = tmp_path / "exp"
    record = {"arms": {arm: [] for arm in runs}, "common": [], "seeds": SEEDS,
              "budget": {"budget_positions": 320, "arms": {arm: {} for arm in runs}}}
    if verdict_model:
        record["verdict"] = {"model": verdict_model}
    exp.mkdir(parents=True)
    (exp / "experiment.json").write_text(json.dumps(record))
    for arm, per_seed in runs.items():
        for seed, figures in enumerate(per_seed):
            fake_run(exp / "runs" / arm / f"seed{seed}", *figures)
    return exp


def test_the_verdict_follows_test_where_dev_and_test_disagree(tmp_path):
    """The sleep arm is better on dev by 0.2 every seed and worse on test by 0.2: the verdict is 'worse'."""
    base = [(3.0 + 0.01 * s, 3.1 + 0.01 * s, 0.6) for s in range(SEEDS)]
    sleep = [(2.8 + 0.011 * s, 3.3 + 0.009 * s, 0.6) for s in range(SEEDS)]
    exp = experiment(tmp_path, {"baseline": base, "sleep": sleep})
    summary = collect(exp)
    assert summary["verdict"]["split"] == "test" and summary["verdict"]["metrics"] == ["test_loss", "blimp_overall"]
    cmp = summary["arms"]["sleep"]["vs_baseline"]
    assert cmp["test_loss"]["verdict"] == "worse" and cmp["test_loss"]["mean_diff"] == pytest.approx(0.2, abs=0.01)
    assert "final_val_loss" not in cmp                       # dev is reported, never judged on
    assert summary["arms"]["sleep"]["final_val_loss"]["mean"] < summary["arms"]["baseline"]["final_val_loss"]["mean"]
    per_seed = summary["arms"]["sleep"]["per_seed"]["0"]
    assert per_seed["dev"]["final_val_loss"] == pytest.approx(2.8) and per_seed["test"]["test_loss"] == pytest.approx(3.3)
    report = write_report(exp).read_text()
    assert "| sleep | test loss | 5 | +0.19" in report and "no difference in any seed pair" in report and "on the **test** split (nothing selected on it)" in report


def test_selection_can_never_read_the_test_split():
    """Sweep objectives (and every other selection) choose among the dev-side figures only."""
    from sleeptrain.experiments.sweep import load_space

    assert "test_loss" not in METRICS
    space = Path(__file__).parent / "_space.yaml"
    space.write_text("method: grid\nobjective: test_loss\nspace:\n  train.lr: [0.001, 0.002]\n")
    try:
        with pytest.raises(ConfigError, match="objective"):
            load_space(space, [])
    finally:
        space.unlink()


def test_a_folder_without_test_losses_gets_dev_verdicts_and_says_so(tmp_path):
    base = [(3.0 + 0.01 * s, None, 0.6) for s in range(SEEDS)]
    sleep = [(3.3 + 0.012 * s, None, 0.6) for s in range(SEEDS)]
    exp = experiment(tmp_path, {"baseline": base, "sleep": sleep})
    summary = collect(exp)
    assert summary["verdict"]["split"] == "dev"
    assert summary["arms"]["sleep"]["vs_baseline"]["final_val_loss"]["verdict"] == "worse"
    report = write_report(exp).read_text()
    assert "on the **dev** split — the runs have no test-split loss" in report


def test_the_pre_end_ops_model_is_reported_and_can_be_the_one_judged(tmp_path):
    """The final shrink costs the sleep arm 0.1 test loss: judged on the final model it is worse, on the model
    before the end ops level with the baseline; both are in summary.json."""
    base = [(3.0 + 0.01 * s, 3.1 + 0.01 * s, 0.6) for s in range(SEEDS)]
    sleep = [(3.1 + 0.01 * s, 3.2 + 0.012 * s, 0.6,
              {"val_loss": 3.0 + 0.01 * s, "test_loss": 3.1 + 0.01 * s + 0.001 * (-1) ** s, "blimp_overall": 0.6,
               "step": 9}) for s in range(SEEDS)]
    final = collect(experiment(tmp_path / "a", {"baseline": base, "sleep": sleep}))
    assert final["arms"]["sleep"]["vs_baseline"]["test_loss"]["verdict"] == "worse"
    assert final["arms"]["sleep"]["pre_end_ops"]["test_loss"]["mean"] == pytest.approx(3.12, abs=1e-3)
    before = collect(experiment(tmp_path / "b", {"baseline": base, "sleep": sleep}, verdict_model="pre_end_ops"))
    assert before["verdict"]["model"] == "pre_end_ops"
    assert before["arms"]["sleep"]["vs_baseline"]["test_loss"]["verdict"].startswith("no detectable difference")
    assert "Just before the last sleep's end ops" in write_report(tmp_path / "b" / "exp").read_text()


def test_tuning_chooses_on_dev_even_where_test_prefers_another_value(tmp_path):
    """Trial t00 has the lower dev loss, t01 the lower test loss: the arm's choice is t00."""
    from sleeptrain.experiments.tuning import TuneSpec, choose, trial_dir

    spec = TuneSpec(keys={"train.lr": [0.001, 0.002]}, seeds=[0, 1])
    for seed in (0, 1):
        fake_run(trial_dir(tmp_path, "arm", 0, seed), dev=3.0 + 0.01 * seed, test=3.5, blimp=0.5)
        fake_run(trial_dir(tmp_path, "arm", 1, seed), dev=3.2 + 0.01 * seed, test=3.1, blimp=0.7)
    chosen = choose(tmp_path, spec, "arm")
    assert chosen["chosen"] == {"train.lr": 0.001} and chosen["trials"][0]["mean"] == pytest.approx(3.005)
    assert chosen["on_edge"] == []                            # two values: no edge to speak of
    blimp = choose(tmp_path, TuneSpec(keys=spec.keys, seeds=[0, 1], objective="blimp_overall"), "arm")
    assert blimp["chosen"] == {"train.lr": 0.002}            # asked for: BLiMP, higher is better
    assert choose(tmp_path, TuneSpec(keys={"train.lr": [0.001, 0.002, 0.004]}), "arm") is None  # t02 not run yet

"""Experiment statistics and `report.md` for `sleeptrain compare` (and `sleeptrain report EXP_DIR`).

Per arm: mean ± sd over seeds of the dev figures (final and best validation loss: what selection may read), the
test figures (test-split loss: what verdicts read), BLiMP overall and by phenomenon, the same figures of the model
just before the last sleep's end ops where a run has one, token positions, real tokens and wall time. Each arm
against the first (the baseline), paired by seed, on the *verdict metrics* — test loss and BLiMP; dev loss and BLiMP
for folders whose runs have no test-split loss (written before 2026-12-02, or data without a test split), which the
report then says — with the statistics of `experiments/paired.py`: Holm–Bonferroni over every comparison of the
report, t intervals and "underpowered" below 5 seed pairs, the minimum detectable effect beside every "no
detectable difference". `verdict.model` (experiment.json; default `final`) picks which model of a run the verdicts
score: `final` (after the last ops, as the run saved it) or `pre_end_ops` (before them; runs without end ops: final).
"""

from __future__ import annotations

import json
from pathlib import Path

from sleeptrain.errors import DataError
from sleeptrain.experiments.paired import (ALPHA, MIN_VERDICT_PAIRS, adjust_family, paired_comparison,  # noqa: F401
                                           table_cells)
from sleeptrain.experiments.records import (DEV_VERDICT_METRICS, METRICS, TEST_METRICS, VERDICT_MODELS,  # noqa: F401
                                            pairs_label, run_record)
from sleeptrain.experiments.tuning import tuning_section
from sleeptrain.stats import mean_sd

def verdict_value(record: dict, key: str, model: str) -> float | None:
    """A run's figure for a verdict: of the model `verdict.model` names (pre_end_ops falls back to the final model
    for a run without end ops; its val_loss stands for final_val_loss)."""
    pre = record.get("pre_end_ops")
    if model == "pre_end_ops" and pre:
        return pre.get("val_loss" if key == "final_val_loss" else key)
    return record.get(key)


def collect(exp_dir: Path) -> dict:
    exp_file = exp_dir / "experiment.json"
    if not exp_file.is_file():
        raise DataError(f"EXP_DIR: {str(exp_dir)!r} is not a sleeptrain compare folder (no experiment.json)")
    exp = json.loads(exp_file.read_text())
    arms = list(exp["arms"])
    runs = {arm: {} for arm in arms}
    for arm in arms:
        for seed in range(exp["seeds"]):
            record = run_record(exp_dir / "runs" / arm / f"seed{seed}")
            if record is not None:
                runs[arm][seed] = record
    seeds = sorted(set.intersection(*(set(r) for r in runs.values()))) if runs else []
    finished = [r for by_seed in runs.values() for r in by_seed.values()]
    on_test = bool(finished) and all(r["test_loss"] is not None for r in finished)
    model = exp.get("verdict", {}).get("model", "final")
    summary = {"arms": {}, "baseline": arms[0], "paired_seeds": seeds, "budget": exp["budget"],
               "pairs_label": pairs_label(finished),
               "verdict": {"split": "test" if on_test else "dev", "model": model,
                           "metrics": list(TEST_METRICS if on_test else DEV_VERDICT_METRICS)},
               "accounting": "positions = optimizer steps x batch x seq_len (wake and replay, padding included); "
                             "tokens = real tokens among them"}
    for arm in arms:
        summary["arms"][arm] = arm_row(runs[arm])
    family = []
    for arm in arms[1:]:
        rows = {}
        for key in summary["verdict"]["metrics"]:
            higher = {**METRICS, **TEST_METRICS}[key][1]
            rows[key] = paired_comparison([verdict_value(runs[arm][s], key, model) for s in seeds],
                                          [verdict_value(runs[arms[0]][s], key, model) for s in seeds], higher)
            family.append(rows[key])
        summary["arms"][arm]["vs_baseline"] = rows
    summary["multiple_comparisons"] = {"method": "holm", "alpha": ALPHA, "family_size": adjust_family(family)}
    tuning = exp_dir / "tuning.json"
    if tuning.is_file():
        choices = json.loads(tuning.read_text())
        summary["tuning"] = {"spec": exp.get("tune", {}), "arms": {
            arm: {**{k: c[k] for k in ("grid", "chosen", "on_edge", "extra_keys", "runs")},
                  "widened": c.get("widened", {})} if c else {"not_tuned": True}  # widened: absent before tune.widen
            for arm, c in choices.items()}}
    return summary


def arm_row(by_seed: dict[int, dict]) -> dict:
    """Mean ± sd of an arm's figures, and each seed's dev and test figures apart."""
    records = list(by_seed.values())
    row = {"runs": len(records)}
    for key in (*METRICS, "test_loss", "positions", "tokens", "seconds"):
        row[key] = mean_sd([r[key] for r in records])
    pre = [r["pre_end_ops"] for r in records if r["pre_end_ops"]]
    if pre:
        row["pre_end_ops"] = {key: mean_sd([p[key] for p in pre]) for key in ("val_loss", "test_loss",
                                                                               "blimp_overall")}
    phenomena = sorted({p for r in records for p in r["by_phenomenon"]})
    row["blimp_by_phenomenon"] = {p: mean_sd([r["by_phenomenon"].get(p) for r in records]) for p in phenomena}
    row["per_seed"] = {str(seed): {"dev": {"final_val_loss": r["final_val_loss"], "best_val_loss": r["best_val_loss"]},
                                   "test": {"test_loss": r["test_loss"]}, "blimp_overall": r["blimp_overall"],
                                   "pre_end_ops": r["pre_end_ops"]} for seed, r in by_seed.items()}
    return row


def _fmt(ms: dict | None, digits: int = 4) -> str:
    if not ms or ms.get("mean") is None:
        return "—"
    return f"{ms['mean']:.{digits}f} ± {ms['sd']:.{digits}f}"


def write_report(exp_dir: Path) -> Path:
    exp_dir = Path(exp_dir)
    summary = collect(exp_dir)
    arms = list(summary["arms"])
    plots = plot_experiment(exp_dir, arms)
    from sleeptrain.experiments.curve_gaps import gaps_against
    from sleeptrain.experiments.curves import aggregate, read_curves

    curves, unscored = read_curves(exp_dir, arms)
    summary["curves"] = aggregate({arm: list(by_seed.values()) for arm, by_seed in curves.items()})
    summary["curves_unscored"] = unscored
    summary["curve_gaps"] = gaps_against(curves, summary["baseline"])
    (exp_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    lines = [f"# Experiment {exp_dir.name}", "",
             f"Arms: {', '.join(arms)} (baseline: **{summary['baseline']}**). Seeds paired across arms: "
             f"{summary['paired_seeds']}. Budget: {summary['budget']['budget_positions']:,} token positions per run "
             f"({summary['accounting']}).", "", *arms_table(summary)]
    notes = [f"- {arm}: {info['note']}" for arm, info in summary["budget"]["arms"].items() if info.get("note")]
    if notes:
        lines += ["", "Budget notes:", *notes]
    if (exp_dir / "tuning.json").is_file():
        lines += ["", *tuning_section(json.loads((exp_dir / "tuning.json").read_text()),
                                      summary["tuning"]["spec"])]
    lines += ["", *verdict_section(summary), *curves_section(exp_dir, summary, arms, plots),
              "", "## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots]]
    out = exp_dir / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def curves_section(exp_dir: Path, summary: dict, arms: list[str], plots: list[Path]) -> list[str]:
    """The learning curves (word-count checkpoints) as a plot and a table per point; nothing without them."""
    from sleeptrain.experiments.curve_gaps import gap_lines
    from sleeptrain.experiments.curves import MILESTONE_PAIRS, milestone_table, plot_curves

    waiting = ["", f"Learning-curve points of {', '.join(summary['curves_unscored'])} are not scored yet (re-run the "
               "`compare` command: it scores them and keeps what is scored)."] if summary["curves_unscored"] else []
    if not summary["curves"]:
        return waiting
    plots.append(plot_curves(summary["curves"], arms, exp_dir / "curves.png"))
    return ["", "## Learning curves (by words seen)", "",
            f"Each word-count checkpoint (`chck_*`), the model before the last end ops and the final model, scored on "
            f"test loss and the first {MILESTONE_PAIRS} minimal pairs of each paradigm (the same subset at every "
            "point; the final model's full score is in the tables above); cells: BLiMP / test loss, mean ± sd over "
            "seeds.",
            "", *milestone_table(summary["curves"], arms),
            *gap_lines(summary.get("curve_gaps") or {}, summary["baseline"]), *waiting]


def arms_table(summary: dict) -> list[str]:
    pairs = summary.get("pairs_label", "BLiMP overall")
    lines = [f"| arm | runs | final val loss (dev) | best val loss (dev) | test loss | {pairs} | positions | "
             "real tokens | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for arm, row in summary["arms"].items():
        lines.append(f"| {arm} | {row['runs']} | {_fmt(row['final_val_loss'])} | {_fmt(row['best_val_loss'])} | "
                     f"{_fmt(row['test_loss'])} | {_fmt(row['blimp_overall'])} | {_fmt(row['positions'], 0)} | "
                     f"{_fmt(row['tokens'], 0)} | {_fmt(row['seconds'], 0)} |")
    pre = {arm: row["pre_end_ops"] for arm, row in summary["arms"].items() if row.get("pre_end_ops")}
    if pre:
        lines += ["", "Just before the last sleep's end ops (a final shrink or reset has no training after it to "
                  "recover), against the final model above:", "",
                  f"| arm | val loss (dev) before | test loss before | {pairs} before |", "|---|---|---|---|"]
        lines += [f"| {arm} | {_fmt(p['val_loss'])} | {_fmt(p['test_loss'])} | {_fmt(p['blimp_overall'])} |"
                  for arm, p in pre.items()]
    return lines


def verdict_section(summary: dict) -> list[str]:
    verdict, family = summary["verdict"], summary["multiple_comparisons"]["family_size"]
    split = ("the **test** split (nothing selected on it)" if verdict["split"] == "test" else
             "the **dev** split — the runs have no test-split loss (written before 2026-12-02, or data without a "
             "test split), so these verdicts are on the split selection reads")
    lines = [f"## Against the baseline ({summary['baseline']}), paired by seed", "",
             f"Verdict metrics: {', '.join(verdict['metrics'])}, on {split}; model: {verdict['model']}. Difference = "
             f"arm − baseline; p from the two-sided paired t-test, Holm-adjusted over all {family} comparisons of "
             f"this report (verdicts on the adjusted p < {ALPHA}); 95 % interval: t-based below "
             f"{MIN_VERDICT_PAIRS} seed pairs, bootstrap from there on; MDE: the smallest |difference| the test "
             "detects with 80 % power at the family's Bonferroni level (below it, \"no detectable difference\" "
             "is not \"equal\").", "",
             "| arm | metric | pairs | mean diff | 95 % CI | p | p (Holm) | MDE | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    labels = {**METRICS, **TEST_METRICS, "blimp_overall": (summary.get("pairs_label", "BLiMP overall"), True)}
    for arm, row in summary["arms"].items():
        for key, cmp in row.get("vs_baseline", {}).items():
            if cmp.get("n", 0) == 0:
                continue
            c = table_cells(cmp)
            lines.append(f"| {arm} | {labels[key][0]} | {cmp['n']} | {cmp['mean_diff']:+.4f} | {c['ci']} | {c['p']} | "
                         f"{c['p_holm']} | {c['mde']} | {cmp['verdict']} |")
    return lines


def plot_experiment(exp_dir: Path, arms: list[str]) -> list[Path]:
    """loss.png (a panel per arm with finished runs) and blimp_by_phenomenon.png from the finished runs' folders."""
    from sleeptrain.experiments.plot import plot_arms, run_curve

    curves: dict[str, list[dict]] = {arm: [] for arm in arms}
    phenomena: dict[str, dict[str, list[float]]] = {}
    for arm in arms:
        for run_dir in sorted((exp_dir / "runs" / arm).glob("seed*")):
            record = run_record(run_dir)
            if record is None:
                continue
            curves[arm].append(run_curve(run_dir))
            for p, acc in record["by_phenomenon"].items():
                phenomena.setdefault(arm, {}).setdefault(p, []).append(acc)
    return plot_arms(curves, phenomena, arms, exp_dir)

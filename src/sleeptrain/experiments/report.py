"""Experiment statistics and `report.md` for `sleeptrain compare` (and `sleeptrain report EXP_DIR`).

Per arm: mean ± sd over seeds of final and best validation loss, BLiMP overall and by phenomenon, token positions,
real tokens and wall time. Each arm against the first (the baseline), paired by seed: mean difference, a 95 %
bootstrap confidence interval (10,000 resamples of the seed pairs, percentile method) and the two-sided paired
t-test p-value. Verdict: "better" / "worse" only when the interval excludes 0 *and* p < 0.05, else "no detectable
difference at this budget" (with 2-3 seeds only large effects are detectable — that is the honest answer).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sleeptrain.errors import DataError
from sleeptrain.stats import mean_sd
from sleeptrain.lm.metrics_log import read_metrics

# metric -> (label, higher is better)
METRICS = {"final_val_loss": ("final val loss", False), "best_val_loss": ("best val loss", False),
           "blimp_overall": ("BLiMP overall", True)}


def run_record(run_dir: Path) -> dict | None:
    """The figures of one finished run, or None while it is unfinished."""
    summary_file = run_dir / "summary.json"
    if not summary_file.is_file():
        return None
    summary = json.loads(summary_file.read_text())
    records = read_metrics(run_dir / "metrics.jsonl")
    evals = [r["val_loss"] for r in records if r.get("event") == "eval" and r.get("val_loss") is not None]
    config = (run_dir / "config.yaml").read_text()
    import yaml

    cfg = yaml.safe_load(config)
    positions = summary["steps"] * cfg["train"]["batch_size"] * cfg["data"]["seq_len"]
    # a run resumed from a checkpoint that did not keep the elapsed time recorded its last session only
    whole_time = summary.get("seconds_complete", not summary.get("resumed_from"))
    out = {"final_val_loss": summary["final_val_loss"], "best_val_loss": min(evals) if evals else None,
           "blimp_overall": summary.get("blimp_overall"), "positions": positions, "tokens": summary["tokens"],
           "seconds": summary["seconds"] if whole_time else None, "steps": summary["steps"], "by_phenomenon": {}}
    results = run_dir / "final" / "eval" / "results.json"
    if results.is_file():
        blimp = json.loads(results.read_text()).get("blimp") or {}
        out["by_phenomenon"] = {k: v["accuracy"] for k, v in blimp.get("by_phenomenon", {}).items()}
    return out


MIN_PAIRS = 3  # seed pairs needed for a bootstrap CI and a verdict


def paired_comparison(arm: list[float], base: list[float], higher_is_better: bool, seed: int = 0) -> dict:
    """Arm minus baseline, paired by seed: mean, 95 % bootstrap CI, paired t-test p, verdict."""
    from scipy import stats

    pairs = [(a, b) for a, b in zip(arm, base) if a is not None and b is not None]
    if not pairs:
        return {"n": 0, "verdict": "not measured"}
    d = np.asarray([a - b for a, b in pairs], dtype=float)
    out = {"n": int(d.size), "mean_diff": float(d.mean())}
    if d.size < 2:
        return {**out, "ci95": None, "p_value": None, "verdict": "one seed: no test possible"}
    if d.size < MIN_PAIRS:  # a bootstrap over 2 pairs has 3 distinct means: no interval worth printing
        p = float(stats.ttest_rel([a for a, _ in pairs], [b for _, b in pairs]).pvalue) if d.std() > 0 else None
        return {**out, "ci95": None, "p_value": p, "test": "paired t-test (two-sided)",
                "verdict": f"too few seed pairs for a verdict ({d.size}; run seeds >= {MIN_PAIRS})"}
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, d.size, size=(10_000, d.size))].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    p = float(stats.ttest_rel([a for a, _ in pairs], [b for _, b in pairs]).pvalue) if d.std() > 0 else \
        (0.0 if d.mean() != 0 else 1.0)
    out.update(ci95=[float(lo), float(hi)], p_value=p, test="paired t-test (two-sided)")
    if (lo > 0 or hi < 0) and p < 0.05:
        better = (d.mean() > 0) == higher_is_better
        out["verdict"] = "better" if better else "worse"
    else:
        out["verdict"] = "no detectable difference at this budget"
    return out


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
    summary = {"arms": {}, "baseline": arms[0], "paired_seeds": seeds, "budget": exp["budget"],
               "accounting": "positions = optimizer steps x batch x seq_len (wake and replay, padding included); "
                             "tokens = real tokens among them"}
    for arm in arms:
        row = {"runs": len(runs[arm])}
        for key in (*METRICS, "positions", "tokens", "seconds"):
            row[key] = mean_sd([r[key] for r in runs[arm].values()])
        phenomena = sorted({p for r in runs[arm].values() for p in r["by_phenomenon"]})
        row["blimp_by_phenomenon"] = {p: mean_sd([r["by_phenomenon"].get(p) for r in runs[arm].values()])
                                      for p in phenomena}
        if arm != arms[0]:
            row["vs_baseline"] = {key: paired_comparison([runs[arm][s][key] for s in seeds],
                                                         [runs[arms[0]][s][key] for s in seeds], higher)
                                  for key, (_, higher) in METRICS.items()}
        summary["arms"][arm] = row
    return summary


def _fmt(ms: dict, digits: int = 4) -> str:
    if ms.get("mean") is None:
        return "—"
    return f"{ms['mean']:.{digits}f} ± {ms['sd']:.{digits}f}"


def write_report(exp_dir: Path) -> Path:
    exp_dir = Path(exp_dir)
    summary = collect(exp_dir)
    (exp_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    arms = list(summary["arms"])
    plots = plot_experiment(exp_dir, arms)
    base = summary["baseline"]
    lines = [f"# Experiment {exp_dir.name}", "",
             f"Arms: {', '.join(arms)} (baseline: **{base}**). Seeds paired across arms: "
             f"{summary['paired_seeds']}. Budget: {summary['budget']['budget_positions']:,} token positions per run "
             f"({summary['accounting']}).", "",
             "| arm | runs | final val loss | best val loss | BLiMP overall | positions | real tokens | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for arm, row in summary["arms"].items():
        lines.append(f"| {arm} | {row['runs']} | {_fmt(row['final_val_loss'])} | {_fmt(row['best_val_loss'])} | "
                     f"{_fmt(row['blimp_overall'])} | {_fmt(row['positions'], 0)} | {_fmt(row['tokens'], 0)} | "
                     f"{_fmt(row['seconds'], 0)} |")
    notes = [f"- {arm}: {info['note']}" for arm, info in summary["budget"]["arms"].items() if info.get("note")]
    if notes:
        lines += ["", "Budget notes:", *notes]
    lines += ["", f"## Against the baseline ({base}), paired by seed", "",
              "Difference = arm − baseline; 95 % CI by bootstrap over seed pairs; p from the two-sided paired "
              "t-test. A verdict needs both the CI excluding 0 and p < 0.05.", "",
              "| arm | metric | mean diff | 95 % CI | p | verdict |", "|---|---|---|---|---|---|"]
    for arm, row in summary["arms"].items():
        for key, cmp in row.get("vs_baseline", {}).items():
            if cmp.get("n", 0) == 0:
                continue
            ci = f"[{cmp['ci95'][0]:+.4f}, {cmp['ci95'][1]:+.4f}]" if cmp.get("ci95") else "—"
            p = f"{cmp['p_value']:.3f}" if cmp.get("p_value") is not None else "—"
            lines.append(f"| {arm} | {METRICS[key][0]} | {cmp['mean_diff']:+.4f} | {ci} | {p} | {cmp['verdict']} |")
    if any(0 < cmp.get("n", 0) < MIN_PAIRS for row in summary["arms"].values()
           for cmp in row.get("vs_baseline", {}).values()):
        lines += ["", f"With fewer than {MIN_PAIRS} seed pairs there is no confidence interval and no verdict: a "
                      f"bootstrap over 2 pairs has only 3 possible means. Run seeds={MIN_PAIRS} or more."]
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    out = exp_dir / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out


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

"""Learning curves against a baseline, milestone by milestone: does an arm lead early, and where do the curves cross?

Each run's milestone points (`experiments/curves.score_run`: test loss and BLiMP on a fixed pair subset at every
word milestone, then before the last end ops and at the end) are paired by seed with the baseline's at the same
point; the gap is the arm − baseline difference with its 95 % interval (`experiments/paired.paired_comparison`).
The gaps are descriptive — one comparison per point, outside a study's verdict family — and the lead summary says
so: "ahead at 250K–500K (1 of 2 with the 95 % interval clear of 0), then behind at 1M–final (…)" (words seen).
"""

from __future__ import annotations

import itertools

from sleeptrain.experiments.curves import point_order
from sleeptrain.experiments.paired import paired_comparison, table_cells

METRICS = {"test_loss": False, "blimp": True}  # metric -> higher is better
ENDS = ("pre_end_ops", "final")


def curve_gaps(arm_runs: dict[int, list[dict]], base_runs: dict[int, list[dict]]) -> list[dict]:
    """seed -> milestone points, for an arm and its baseline: per point both have on a common seed, the words
    (the arm's mean) and the paired gap on each metric."""
    seeds = sorted(set(arm_runs) & set(base_runs))
    arm_at = {s: {p["point"]: p for p in arm_runs[s]} for s in seeds}
    base_at = {s: {p["point"]: p for p in base_runs[s]} for s in seeds}
    rows = []
    for name in point_order([p["point"] for s in seeds for p in arm_runs[s]]):
        paired = [s for s in seeds if name in arm_at[s] and name in base_at[s]]
        if not paired:
            continue
        row = {"point": name, "words": sum(arm_at[s][name]["words"] for s in paired) / len(paired), "seeds": paired}
        for metric, higher_is_better in METRICS.items():
            row[metric] = paired_comparison([arm_at[s][name][metric] for s in paired],
                                            [base_at[s][name][metric] for s in paired], higher_is_better)
        rows.append(row)
    return rows


def lead_summary(rows: list[dict], metric: str) -> str:
    """Where the arm is ahead of and behind the baseline on `metric`, as runs of consecutive points."""
    higher_is_better = METRICS[metric]
    rows = [r for r in rows if r[metric].get("mean_diff") is not None]
    if not rows:
        return "no paired points"
    parts = []
    for state, run in itertools.groupby(rows, key=lambda r: _state(r[metric]["mean_diff"], higher_is_better)):
        run = list(run)
        clear = sum(1 for r in run if _clear_of_zero(r[metric]))
        span = _where(run[0]) + ("" if len(run) == 1 else f"–{_where(run[-1])}")
        parts.append(f"{state} at {span} ({clear} of {len(run)} with the 95 % interval clear of 0)")
    return ", then ".join(parts)


def _state(diff: float, higher_is_better: bool) -> str:
    if abs(diff) < 1e-12:
        return "level"
    return "ahead" if (diff > 0) == higher_is_better else "behind"


def _clear_of_zero(cmp: dict) -> bool:
    ci = cmp.get("ci95")
    return bool(ci) and (ci[0] > 0 or ci[1] < 0)


def _where(row: dict) -> str:
    if row["point"] in ENDS:
        return {"pre_end_ops": "before the end ops", "final": "final"}[row["point"]]
    words = row["words"]
    return f"{words / 1e6:g}M" if words >= 10 ** 6 else f"{words / 1e3:g}K"


def gaps_against(curves: dict[str, dict[int, list[dict]]], base: str) -> dict:
    """arm -> seed -> points, for every arm: each arm but `base` against it, {"points": curve_gaps rows, "leads":
    metric -> lead_summary}; arms without points, or a baseline without them, give nothing."""
    if not curves.get(base):
        return {}
    out = {}
    for arm, by_seed in curves.items():
        if arm != base and by_seed:
            rows = curve_gaps(by_seed, curves[base])
            out[arm] = {"points": rows, "leads": {m: lead_summary(rows, m) for m in METRICS}}
    return out


def gap_lines(gaps: dict, base: str) -> list[str]:
    """The report's section: a test-loss gap table (arm × point, with 95 % intervals) and one lead line per arm."""
    if not gaps:
        return []
    names: list[str] = []
    for g in gaps.values():
        names += [r["point"] for r in g["points"] if r["point"] not in names]
    lines = ["", f"### Against {base}, point by point (paired by seed; descriptive, outside the verdicts' Holm "
             "family)", "", "Test-loss gap (arm − baseline; negative: the arm is ahead) with its 95 % interval at each "
             "point; then where each arm is ahead and behind on test loss and on BLiMP (the points' pair subset).", "",
             "| arm | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for arm, g in gaps.items():
        at = {r["point"]: r["test_loss"] for r in g["points"]}
        lines.append(f"| {arm} | " + " | ".join(diff_cell(at.get(n)) for n in names) + " |")
    return lines + ["", *(f"- `{arm}` — test loss: {g['leads']['test_loss']}; BLiMP: {g['leads']['blimp']}"
                          for arm, g in gaps.items())]


def diff_cell(cmp: dict | None) -> str:
    """A paired difference as a table cell: "+0.0250 [+0.0100, +0.0400]", "—" without one."""
    if not cmp or cmp.get("mean_diff") is None:
        return "—"
    return f"{cmp['mean_diff']:+.4f} {table_cells(cmp, with_method=False)['ci']}"

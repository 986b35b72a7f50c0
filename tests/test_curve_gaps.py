"""experiments/curve_gaps.py: the gaps to a baseline milestone by milestone, paired by seed, and where they cross."""
import pytest

from sleeptrain.experiments.curve_gaps import curve_gaps, lead_summary
from sleeptrain.experiments.curves import point_order


def _points(losses: list[float], blimps: list[float], words=(250_000, 500_000, 1_000_000), end_words=1_200_000):
    names = [f"chck_{w // 1000}K" for w in words] + ["final"]
    at = [*words, end_words]
    return [{"point": n, "words": w, "positions": w * 1.5, "test_loss": t, "blimp": b}
            for n, w, t, b in zip(names, at, losses, blimps)]


def test_an_arm_that_leads_early_and_falls_behind_is_said_so_with_its_intervals():
    # the arm's test loss is 0.1 lower at 250K and 500K on every seed (+-0.01), then 0.05 higher from 1M on
    base = {s: _points([5.0 + s * 0.01, 4.6, 4.3, 4.1], [0.51, 0.52, 0.54, 0.55]) for s in range(3)}
    arm = {s: _points([4.9 + s * 0.01 + (0.01 if s == 1 else 0), 4.5 - 0.01 * s, 4.35 + 0.002 * s, 4.15 + 0.003 * s],
                      [0.52, 0.53, 0.53, 0.54]) for s in range(3)}
    arm[3] = _points([4.0, 4.0, 4.0, 4.0], [0.6, 0.6, 0.6, 0.6])  # a seed the baseline lacks: not paired
    rows = curve_gaps(arm, base)
    assert [r["point"] for r in rows] == ["chck_250K", "chck_500K", "chck_1000K", "final"]
    assert all(r["seeds"] == [0, 1, 2] for r in rows)
    first = rows[0]["test_loss"]
    assert first["n"] == 3 and first["mean_diff"] == pytest.approx((-0.1 - 0.09 - 0.1) / 3)
    assert first["ci95"][1] < 0  # clearly ahead at 250K
    assert rows[3]["words"] == 1_200_000
    said = lead_summary(rows, "test_loss")
    assert said.startswith("ahead at 250K–500K (2 of 2 with the 95 % interval clear of 0), then behind at 1M–final (")
    assert lead_summary(rows, "blimp").startswith("ahead at 250K–500K") and "then behind at 1M–final" in said


def test_points_are_ordered_by_words_with_the_end_points_last_and_unpaired_points_dropped():
    names = ["final", "chck_2M", "pre_end_ops", "chck_250K", "chck_1M", "chck_1M"]
    assert point_order(names) == ["chck_250K", "chck_1M", "chck_2M", "pre_end_ops", "final"]
    base = {0: _points([5.0, 4.6, 4.3, 4.1], [0.5] * 4, words=(250_000, 500_000, 2_000_000))}
    arm = {0: _points([5.0, 4.6, 4.3, 4.1], [0.5] * 4)}
    rows = curve_gaps(arm, base)
    assert [r["point"] for r in rows] == ["chck_250K", "chck_500K", "final"]  # 1M: the baseline has no such point
    assert rows[0]["test_loss"]["verdict"] == "one seed: no test possible"
    assert lead_summary(rows, "test_loss") == "level at 250K–final (0 of 3 with the 95 % interval clear of 0)"
    assert curve_gaps(arm, {}) == [] and lead_summary([], "blimp") == "no paired points"


def test_the_report_section_tables_each_arms_gap_with_its_interval_and_says_where_it_leads():
    from sleeptrain.experiments.curve_gaps import gap_lines, gaps_against

    base = {s: _points([5.0, 4.6, 4.3, 4.1], [0.5, 0.5, 0.5, 0.5]) for s in range(2)}
    early = {s: _points([4.9 - 0.01 * s, 4.6, 4.4, 4.2 + 0.01 * s], [0.5, 0.5, 0.5, 0.5]) for s in range(2)}
    gaps = gaps_against({"base": base, "early": early, "none": {}}, "base")
    assert set(gaps) == {"early"}  # the baseline itself and an arm without points are not rows
    lines = gap_lines(gaps, "base")
    assert lines[1].startswith("### Against base, point by point (paired by seed; descriptive")
    assert "| arm | chck_250K | chck_500K | chck_1000K | final |" in lines
    row = next(line for line in lines if line.startswith("| early |"))
    assert row.startswith("| early | -0.1050 [") and row.endswith(" |")
    assert lines[-1].startswith("- `early` — test loss: ahead at 250K (") and "then level at 500K" in lines[-1]
    assert gap_lines({}, "base") == [] and gaps_against({"early": early}, "base") == {}

"""The statistics of a verdict (experiments/paired.py, stats.py) against scipy and values computed by hand:
Holm's step-down adjustment, t intervals, the minimum detectable effect of a paired t-test, and verdicts taken
on the adjusted p."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sleeptrain.experiments.paired import adjust_family, paired_comparison
from sleeptrain.stats import detectable_dz, holm, minimum_detectable_effect, t_interval


def test_holm_by_hand():
    # sorted p 0.01, 0.03, 0.04 (m = 3): 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04) -> 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([None]) == [None] and holm([]) == []


def test_t_interval_matches_scipy():
    d = [0.3, -0.1, 0.4, 0.2]
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=np.mean(d), scale=stats.sem(d))
    assert t_interval(d) == pytest.approx([lo, hi])
    assert t_interval([1.0]) is None


@pytest.mark.parametrize("n,expected", [(2, 11.5499), (3, 3.2640), (5, 1.6820), (10, 0.9960), (30, 0.5292)])
def test_detectable_dz_matches_the_paired_t_power(n, expected):
    """statsmodels' TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8) gives these (checked outside the repo)."""
    assert detectable_dz(n) == pytest.approx(expected, abs=2e-4)
    dz = detectable_dz(n)
    crit = stats.t.ppf(0.975, n - 1)
    power = stats.nct.sf(crit, n - 1, dz * np.sqrt(n)) + stats.nct.cdf(-crit, n - 1, dz * np.sqrt(n))
    assert np.nan_to_num(power, nan=0.8) == pytest.approx(0.8, abs=1e-6)
    assert detectable_dz(1) is None


def test_minimum_detectable_effect_is_in_the_metrics_units():
    d = [0.01, 0.03, -0.01, 0.02, 0.0]
    assert minimum_detectable_effect(d) == pytest.approx(1.6820 * np.std(d, ddof=1), rel=1e-4)


def test_verdicts_follow_the_holm_adjusted_p():
    """Raw p 0.030 and 0.034 each pass 0.05 alone; Holm over the two makes them 0.060 and 0.060 (2 x 0.030, then
    max(0.060, 1 x 0.034)): no verdict survives, and each says how large a difference it could have missed."""
    base = [3.0, 3.1, 2.9, 3.05, 3.02]
    a = paired_comparison([b + d for b, d in zip(base, [0.05, 0.01, 0.06, 0.01, 0.04])], base, higher_is_better=False)
    b = paired_comparison([b + d for b, d in zip(base, [0.05, 0.0, 0.06, 0.02, 0.04])], base, higher_is_better=False)
    assert a["p_value"] == pytest.approx(0.029867, abs=1e-5) and b["p_value"] == pytest.approx(0.034289, abs=1e-5)
    assert a["verdict"] == b["verdict"] == "worse"
    assert adjust_family([a, b, {"n": 1, "verdict": "one seed: no test possible"}]) == 2
    assert a["p_holm"] == pytest.approx(2 * 0.029867, abs=1e-5) and b["p_holm"] == pytest.approx(a["p_holm"])
    for cmp in (a, b):
        assert cmp["verdict"] == f"no detectable difference (could miss |diff| < {cmp['mde_family']:.3g} at 80% power)"
        # the family's MDE: the paired t-test's d_z at alpha 0.05 / 2, times the sd of the differences
        assert cmp["mde_family"] == pytest.approx(detectable_dz(5, 0.025) * cmp["sd_diff"])
        assert cmp["mde_family"] > cmp["mde"]


def test_the_pairs_label_says_what_blimp_overall_measured():
    from sleeptrain.experiments.records import GENERATED_PAIRS_LABEL, pairs_label

    assert pairs_label([{"generated_pairs": True}] * 2) == GENERATED_PAIRS_LABEL
    assert pairs_label([{"generated_pairs": False}, {}]) == "BLiMP overall"  # records written before the field
    assert "mixed" in pairs_label([{"generated_pairs": True}, {"generated_pairs": False}])

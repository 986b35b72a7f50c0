"""Summary statistics shared by the experiment reports and the continual-learning results."""

from __future__ import annotations

import numpy as np


def mean_sd(values: list[float | None]) -> dict:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count of the values that are not None."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values of one family of tests (None: not tested, left out of the family): the
    i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)) (Holm 1979); rejecting where the
    adjusted p < alpha controls the family-wise error rate at alpha."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m, out, running = len(tested), list(p_values), 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def t_interval(differences: list[float], level: float = 0.95) -> list[float] | None:
    """The t-based confidence interval of the mean of paired differences: mean ± t_{n-1} sd / sqrt(n)."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if d.size < 2:
        return None
    half = float(stats.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return [float(d.mean()) - half, float(d.mean()) + half]


def detectable_dz(n: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest standardized effect d_z = mean / sd of the differences that a two-sided paired t-test on `n`
    pairs detects with probability `power` at level `alpha` (exact, from the noncentral t distribution; Cohen's
    paired-samples power). None below 2 pairs."""
    from scipy import optimize, stats

    if n < 2:
        return None
    df, crit = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)

    def shortfall(dz: float) -> float:
        nc = dz * np.sqrt(n)
        upper, lower = stats.nct.sf(crit, df, nc), stats.nct.cdf(-crit, df, nc)  # lower: the wrong-sign tail
        # scipy's noncentral t returns NaN deep in a tail, where that tail's mass is ~0 (the wrong-sign tail) or the
        # power is ~1
        return float(np.nan_to_num(upper, nan=1.0) + np.nan_to_num(lower, nan=0.0)) - power

    high = 1.0
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 1e-6, high))


def minimum_detectable_effect(differences: list[float], alpha: float = 0.05, power: float = 0.8) -> float | None:
    """`detectable_dz` in the metric's units: d_z times the observed sd of the paired differences."""
    d = np.asarray(differences, dtype=float)
    dz = detectable_dz(int(d.size), alpha, power)
    return None if dz is None else dz * float(d.std(ddof=1))

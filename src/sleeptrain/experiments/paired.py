"""Paired comparisons of an arm against a baseline over seeds, and the verdicts a reviewer accepts.

For each comparison (one arm, one metric), over the seeds both ran:
- mean difference (arm − baseline), sd of the differences, d_z = mean / sd;
- the two-sided paired t-test p-value;
- a 95 % interval: t-based below `MIN_VERDICT_PAIRS` pairs (a percentile bootstrap over 3 pairs is just their
  [min, max]), the percentile bootstrap of the mean (10,000 resamples of the pairs) from there on;
- the minimum detectable effect (MDE): the smallest |mean difference| the test finds with 80 % power at its level,
  d_z* × sd of the differences (`stats.detectable_dz`: exact, from the noncentral t).

`adjust_family` then applies Holm–Bonferroni over all comparisons of a report (arms × verdict metrics): each gets
`p_holm` beside its raw `p_value`, and its verdict is taken on `p_holm` — "better" / "worse" when p_holm < 0.05,
else "no detectable difference", which always says how large a difference it could have missed (the MDE at the
Bonferroni level 0.05 / m, an upper bound of what Holm's steps need). With fewer than `MIN_VERDICT_PAIRS` pairs the
verdict is "underpowered", with the same MDE: there the numbers are descriptive only.
"""

from __future__ import annotations

import numpy as np

from sleeptrain.stats import detectable_dz, holm, t_interval

ALPHA = 0.05
POWER = 0.8
MIN_VERDICT_PAIRS = 5  # fewer seed pairs: a t interval, "underpowered", no verdict (d_z* at 5 pairs is already 1.68)


def paired_comparison(arm: list[float | None], base: list[float | None], higher_is_better: bool,
                      seed: int = 0) -> dict:
    """Arm minus baseline, paired by position (seed); None entries drop their pair. A verdict at the unadjusted
    level; `adjust_family` re-takes it on the Holm-adjusted p of the report's family."""
    from scipy import stats

    pairs = [(a, b) for a, b in zip(arm, base) if a is not None and b is not None]
    if not pairs:
        return {"n": 0, "verdict": "not measured"}
    d = np.asarray([a - b for a, b in pairs], dtype=float)
    out = {"n": int(d.size), "mean_diff": float(d.mean()), "higher_is_better": higher_is_better}
    if d.size < 2:
        return {**out, "ci95": None, "p_value": None, "verdict": "one seed: no test possible"}
    sd = float(d.std(ddof=1))
    if sd > 0:
        p = float(stats.ttest_rel([a for a, _ in pairs], [b for _, b in pairs]).pvalue)
    else:  # identical differences: certain if non-zero, nothing if zero
        p = 0.0 if d.mean() != 0 else 1.0
    if d.size < MIN_VERDICT_PAIRS:
        ci, how = t_interval(d.tolist()), "t"
    else:
        boot = d[np.random.default_rng(seed).integers(0, d.size, size=(10_000, d.size))].mean(axis=1)
        ci, how = [float(x) for x in np.percentile(boot, [2.5, 97.5])], "bootstrap"
    out.update(sd_diff=sd, d_z=float(d.mean() / sd) if sd > 0 else None, ci95=ci, ci_method=how, p_value=p,
               test="paired t-test (two-sided)", mde=detectable_dz(int(d.size), ALPHA, POWER) * sd)
    out["verdict"] = verdict(out, p, out["mde"])
    return out


def verdict(cmp: dict, p: float, mde: float) -> str:
    if cmp["n"] < MIN_VERDICT_PAIRS:
        return (f"underpowered: {cmp['n']} seed pairs (a verdict needs >= {MIN_VERDICT_PAIRS}); a difference "
                f"below {mde:.3g} would likely go unseen")
    if p < ALPHA:
        return "better" if (cmp["mean_diff"] > 0) == cmp["higher_is_better"] else "worse"
    if cmp["sd_diff"] == 0:  # every pair equal: no spread to test against
        return "no difference in any seed pair"
    return f"no detectable difference (could miss |diff| < {mde:.3g} at {POWER:.0%} power)"


def adjust_family(comparisons: list[dict]) -> int:
    """Holm–Bonferroni over `comparisons` (in place): `p_holm`, `family_size`, `mde_family` and the verdict on
    `p_holm`. Comparisons without a p-value stay as they are. Returns the family size m."""
    tested = [c for c in comparisons if c.get("p_value") is not None]
    m = len(tested)
    for cmp, adjusted in zip(tested, holm([c["p_value"] for c in tested])):
        mde = detectable_dz(cmp["n"], ALPHA / m, POWER) * cmp["sd_diff"]
        cmp.update(p_holm=adjusted, family_size=m, mde_family=mde)
        cmp["verdict"] = verdict(cmp, adjusted, mde)
    return m



def table_cells(cmp: dict, with_method: bool = True) -> dict[str, str]:
    """A comparison's figures as table cells: ci (with how it was computed), p, p_holm, mde ("—" where absent)."""
    def num(key: str, fmt: str) -> str:
        return format(cmp[key], fmt) if cmp.get(key) is not None else "—"

    ci = "—"
    if cmp.get("ci95"):
        ci = f"[{cmp['ci95'][0]:+.4f}, {cmp['ci95'][1]:+.4f}]" + (f" ({cmp['ci_method']})" if with_method else "")
    return {"ci": ci, "p": num("p_value", ".3f"), "p_holm": num("p_holm", ".3f"), "mde": num("mde_family", ".4f")}

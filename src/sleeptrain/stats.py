"""Summary statistics shared by the experiment reports and the continual-learning results."""

from __future__ import annotations

import numpy as np


def mean_sd(values: list[float | None]) -> dict:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count of the values that are not None."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}

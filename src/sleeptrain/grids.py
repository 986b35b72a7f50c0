"""One rule for widening a tuning grid past the edge its choice landed on, shared by `sleeptrain compare`'s
`tune.widen` (experiments/tuning.py) and `sleeptrain continual`'s `tune_widen` (continual/tuning.py).

A key's values continue their geometric progression beyond the edge: 3e-3, 6e-3, 1.2e-2 chosen at 3e-3 gains
1.5e-3. Only grids of positive numbers in strictly monotone order have one; integer grids are rounded, and a value
that lands on the grid (or rounds to 0) is not added. A grid of vectors (OWM's α, the code's vector scaled by 0.01
… 10) continues coordinate by coordinate, where every coordinate is such a grid running the same way.
"""

from __future__ import annotations

import itertools
from typing import Any


def _next_number(values: list, low: bool) -> float | int | None:
    if len(values) < 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
        return None
    steps = [b / a for a, b in zip(values, values[1:])]
    if not (all(r > 1 for r in steps) or all(r < 1 for r in steps)):
        return None
    value = values[0] ** 2 / values[1] if low else values[-1] ** 2 / values[-2]
    value = round(value) if all(isinstance(v, int) for v in values) else float(f"{value:.6g}")
    return None if value in values or value <= 0 else value


def next_value(values: list, low: bool) -> Any:
    """The value beyond the low (or high) edge of `values` (None where the grid has no such continuation)."""
    if values and all(isinstance(v, (list, tuple)) for v in values):
        if len({len(v) for v in values}) != 1 or not values[0]:
            return None
        columns = [[v[i] for v in values] for i in range(len(values[0]))]
        rising = {c[1] > c[0] for c in columns}
        coords = [_next_number(c, low) for c in columns]
        if len(rising) != 1 or None in coords or coords in [list(v) for v in values]:
            return None          # every coordinate must run the same way (a scaled vector), each a progression
        return coords
    return _next_number(values, low)


def widen_grid(grid: dict[str, list], chosen: dict, edge_keys: list[str]) -> list[dict]:
    """Extend `grid` in place past the edge `chosen` sits on, for each of `edge_keys` whose values continue
    (`next_value`); returns the new points — each new value with every combination of the other keys' values — in
    the order they are to run (empty: nothing to widen)."""
    points = []
    for key in edge_keys:
        low = chosen[key] == grid[key][0]
        value = next_value(grid[key], low)
        if value is None:
            continue
        grid[key] = [value, *grid[key]] if low else [*grid[key], value]
        others = [k for k in grid if k != key]
        for combo in itertools.product(*(grid[k] for k in others)):
            point = dict(zip(others, combo))
            points.append({k: (value if k == key else point[k]) for k in grid})
    return points

"""`tune_widen`: a continual method whose choice sits on its grid's edge gets the grid extended by one rule
(sleeptrain/grids.py, shared with `sleeptrain compare`'s `tune.widen`), then chooses again."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from sleeptrain.continual.runner import load_continual_config
from sleeptrain.continual.tuning import default_grid, tune
from sleeptrain.errors import ConfigError
from sleeptrain.grids import next_value

FAST = ["benchmark=split_digits", "net.hidden=[32,32]", "sgd.epochs=1", "validation=5"]


def scripted(score_of, calls):
    """A method whose validation accuracy is score_of(cfg): no training, the tuning loop alone."""
    def fake_method(bench, method, cfg, seed, evaluate_on):
        assert evaluate_on == "validation"
        calls.append((cfg.ewc_strength, seed))
        return SimpleNamespace(matrix=np.full((2, 2), score_of(cfg)))
    return fake_method


def peaked(cfg):   # best at λ = 1000, lower on both sides
    return 0.9 - 0.1 * abs(math.log10(cfg.ewc_strength) - 3)


def test_an_edge_choice_widens_until_it_is_inside_the_grid():
    cfg = load_continual_config([*FAST, "method=ewc", "tune=ewc_strength:[1,10,100]", "tune_widen=3",
                                 "tune_seeds=[7,8]"])
    calls = []
    chosen, record = tune(cfg, lambda c, seed: None, scripted(peaked, calls))
    assert record["choice"] == {"ewc_strength": 1000.0} and chosen.ewc_strength == 1000.0
    assert record["grid"] == {"ewc_strength": [1.0, 10.0, 100.0, 1000.0, 10000.0]}
    assert record["widened"] == {"ewc_strength": [1000.0, 10000.0]} and record["widen"] == 3
    assert record["choice_on_edge"] == []                      # 10000 scored lower: the widening stopped there
    assert len(calls) == 5 * 2 and {s for _, s in calls} == {7, 8}  # each new point on the same tuning seeds


def test_without_tune_widen_the_edge_is_only_flagged_and_the_record_is_unchanged():
    cfg = load_continual_config([*FAST, "method=ewc", "tune=ewc_strength:[1,10,100]"])
    calls = []
    _, record = tune(cfg, lambda c, seed: None, scripted(peaked, calls))
    assert record["choice"] == {"ewc_strength": 100.0} and record["choice_on_edge"] == ["ewc_strength"]
    assert "widened" not in record and "widen" not in record and len(calls) == 3


def test_a_grid_without_a_progression_is_not_widened():
    cfg = load_continual_config([*FAST, "method=ewc", "tune=ewc_strength:[1,100,10]", "tune_widen=2"])
    calls = []
    _, record = tune(cfg, lambda c, seed: None, scripted(lambda c: 1.0 if c.ewc_strength == 10 else 0.5, calls))
    assert record["choice"] == {"ewc_strength": 10.0} and record["widened"] == {} and len(calls) == 3


def test_owm_vectors_continue_coordinate_by_coordinate():
    cfg = load_continual_config([*FAST, "method=owm", "validation=5"])
    grid = default_grid(cfg)["owm_alphas"]                     # the code's vector × 0.01, 0.1, 1, 10
    low, high = next_value(grid, low=True), next_value(grid, low=False)
    assert low == pytest.approx([a / 10 for a in grid[0]]) and high == pytest.approx([a * 10 for a in grid[-1]])
    assert next_value([[1.0, 2.0], [2.0, 1.0]], low=True) is None      # a coordinate not monotone the same way
    assert next_value([[1.0], [2.0, 4.0]], low=True) is None          # vectors of different lengths


def test_tune_widen_errors_are_one_line():
    with pytest.raises(ConfigError, match=r"tune_widen: expected a whole number from 0 to 5"):
        load_continual_config([*FAST, "method=ewc", "tune=ewc_strength:[1,10]", "tune_widen=9"])
    with pytest.raises(ConfigError, match=r"tune_widen: widens a grid; give one with tune="):
        load_continual_config([*FAST, "method=ewc", "tune_widen=1"])
    assert load_continual_config([*FAST, "method=ewc", "tune=default", "tune_widen=1"]).tune_widen == 1


@pytest.mark.parametrize("method, key", [("ewc", "ewc_strength"), ("si", "si_strength"), ("rehearsal", "sgd.lr"),
                                         ("owm", "owm_alphas")])
def test_tune_points_gives_every_method_as_many_trials_through_its_own_setting(method, key):
    documented = default_grid(load_continual_config([*FAST, f"method={method}", "tune=default"]))[key]
    cfg = load_continual_config([*FAST, f"method={method}", "tune=default", "tune_points=10"])
    grid = cfg.tune[key]
    firsts = [v[0] if isinstance(v, list) else v for v in grid]
    assert len(grid) == 10 and grid[0] == documented[0] and grid[-1] == documented[-1]   # the documented ends
    assert all(b / a > 1.2 for a, b in zip(firsts, firsts[1:]))                            # rising, no duplicates
    own = {"ewc": cfg.ewc_strength, "si": cfg.si_strength, "rehearsal": cfg.sgd.lr, "owm": [0.9, 0.6, 0.6]}
    assert own[method] in grid           # the untuned setting is one of the trials (OWM: the code's vector × 1)


def test_a_respaced_grid_runs_its_points_and_widens_by_its_own_ratio():
    cfg = load_continual_config([*FAST, "method=ewc", "tune=default", "tune_points=4", "tune_widen=1"])
    assert cfg.tune == {"ewc_strength": [1.0, 21.5, 100.0, 10000.0]}     # 1 … 1e4 in 4, 464 replaced by 100
    calls = []
    _, record = tune(cfg, lambda c, seed: None, scripted(lambda c: c.ewc_strength, calls))   # best: the largest
    assert record["widened"] == {"ewc_strength": [1e6]} and len(calls) == 5


def test_tune_points_errors_are_one_line():
    with pytest.raises(ConfigError, match=r"tune_points: respaces the documented grid; give tune=default"):
        load_continual_config([*FAST, "method=ewc", "tune=ewc_strength:[1,10]", "tune_points=5"])
    with pytest.raises(ConfigError, match=r"tune_points: expected 0 \(the documented grid\) or a whole number from 2"):
        load_continual_config([*FAST, "method=ewc", "tune=default", "tune_points=1"])
